/*
 * comm: exact sums through node shared memory (deterministic mode).
 *
 * The ranks of a node add their int64 values straight into one shared
 * buffer, under striped locks, as soon as each range is final: integer
 * addition is associative, so the sum has the bits an MPI_SUM would give,
 * in any order. A round ends with a barrier on a futex: the last rank to
 * arrive releases the others (on several nodes, the node's first rank sums
 * the node totals across nodes with MPI first). Nothing polls: a rank with
 * nothing to do sleeps in the kernel, which is what lets 8 ranks share 2
 * cores, and no message needs MPI's progress engine, which only moves when
 * a rank calls into MPI.
 *
 * Three buffers rotate over rounds. In round k every rank adds into buffer
 * k % 3 and, before it arrives, clears its own slice of buffer (k + 1) % 3:
 * every rank finished reading that buffer (round k - 2) before it arrived
 * in round k - 1, and nobody adds into it before round k's release.
 */
#define _GNU_SOURCE
#include "comm/comm_internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SHM_STRIPES 64 /* locks over equal ranges of the sum */
#define SHM_ALIGN 64
#define SHM_SPIN_SECONDS 50e-6 /* spin this long before sleeping, when ranks <= cores */

typedef struct {
    _Alignas(SHM_ALIGN) atomic_uint arrived; /* ranks of this node in the barrier */
    _Alignas(SHM_ALIGN) atomic_uint generation; /* bumped by each release (futex word) */
    atomic_int error;                        /* a release's MPI failed (stays set) */
    _Alignas(SHM_ALIGN) pthread_mutex_t small; /* maxima and counts */
    pthread_mutex_t stripe[SHM_STRIPES];
} shm_header;

struct ody_shm {
    ody_ctx *ctx;
    MPI_Win win;
    MPI_Comm leaders;     /* first rank of each node, on node rank 0 when there are several nodes */
    bool nodes;           /* several nodes: node rank 0 sums across them, then releases */
    shm_header *h;
    int64_t *sum[3];      /* (n) */
    float *max[3];        /* (nmax) */
    int64_t *count[3];    /* (ncount) */
    size_t n;
    int nmax, ncount;
    int round;            /* rounds completed */
    int cur;              /* buffer of the last completed round */
    bool sleepy;
};

static size_t align_up(size_t x) { return (x + SHM_ALIGN - 1) / SHM_ALIGN * SHM_ALIGN; }

static long futex(atomic_uint *word, int op, unsigned val)
{
    return syscall(SYS_futex, (unsigned *)word, op, val, NULL, NULL, 0);
}

static size_t segment_bytes(size_t n, int nmax, int ncount)
{
    return align_up(sizeof(shm_header)) +
           3 * (align_up(n * sizeof(int64_t)) + align_up((size_t)nmax * sizeof(float)) +
                align_up((size_t)ncount * sizeof(int64_t)));
}

bool ody_node_window(const ody_ctx *ctx, size_t bytes, MPI_Win *win)
{
    char *mine = NULL;
    size_t padded = bytes ? bytes + SHM_ALIGN : 0; /* room to align the part */
    if (MPI_Win_allocate_shared((MPI_Aint)padded, 1, MPI_INFO_NULL, ctx->node_comm, &mine, win) !=
        MPI_SUCCESS) {
        *win = MPI_WIN_NULL;
        return false;
    }
    return true;
}

/* A part's base is not cache-line aligned (Open MPI puts it 8-aligned
 * after its own header), so it is aligned here: at the same offset in
 * every process, since each maps the segment at a page boundary. */
char *ody_node_window_part(MPI_Win win, int node_rank)
{
    MPI_Aint size = 0;
    int unit = 0;
    char *p = NULL;
    if (win == MPI_WIN_NULL || MPI_Win_shared_query(win, node_rank, &size, &unit, &p) != MPI_SUCCESS ||
        size <= SHM_ALIGN)
        return NULL;
    return p + (SHM_ALIGN - (uintptr_t)p % SHM_ALIGN) % SHM_ALIGN;
}

void ody_node_window_free(MPI_Win *win)
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && *win != MPI_WIN_NULL)
        MPI_Win_free(win);
    *win = MPI_WIN_NULL;
}

/* Node rank 0: lay the segment out, zero it, make the locks shared. */
static int init_segment(char *base, size_t bytes)
{
    memset(base, 0, bytes); /* also commits every page now, not in a step */
    shm_header *h = (shm_header *)base;
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0 ||
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0)
        return -1;
    int rc = pthread_mutex_init(&h->small, &attr);
    for (int i = 0; i < SHM_STRIPES && rc == 0; i++)
        rc = pthread_mutex_init(&h->stripe[i], &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

static void carve(ody_shm *s, char *base)
{
    char *p = base + align_up(sizeof(shm_header));
    s->h = (shm_header *)base;
    for (int b = 0; b < 3; b++) {
        s->sum[b] = (int64_t *)p;
        p += align_up(s->n * sizeof(int64_t));
        s->max[b] = (float *)p;
        p += align_up((size_t)s->nmax * sizeof(float));
        s->count[b] = (int64_t *)p;
        p += align_up((size_t)s->ncount * sizeof(int64_t));
    }
}

/* Whether node rank 0 sees room for `bytes` in Open MPI's backing
 * directory (a tmpfs: a mapping past its size faults, so ask first). */
bool ody_shm_room_for(size_t bytes)
{
    struct statvfs v;
    if (statvfs("/dev/shm", &v) != 0)
        return true; /* no /dev/shm: Open MPI falls back to the session directory */
    return (double)v.f_bavail * (double)v.f_frsize > 1.25 * (double)bytes + (64 << 20);
}

/* Debug: on several nodes each node's leader names its node and the sum it
 * makes, so a log shows every node's part, not only rank 0's. */
static void log_node(const ody_shm *s)
{
    int nodes = 0;
    if (!s->nodes || s->ctx->node_rank != 0 || s->ctx->log_level < ODY_LOG_DEBUG ||
        MPI_Comm_size(s->leaders, &nodes) != MPI_SUCCESS)
        return;
    char host[256] = "?";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    ody_log_all(s->ctx, ODY_LOG_DEBUG, "node %s: its %d rank(s) add their gradients in its shared "
                "memory; this rank, its leader, sums the totals of the %d nodes with MPI_Allreduce",
                host, s->ctx->node_size, nodes);
}

ody_status ody_shm_create(ody_ctx *ctx, size_t n, int nmax, int ncount, ody_shm **out)
{
    *out = NULL;
    size_t bytes = segment_bytes(n, nmax, ncount);
    ody_shm *s = calloc(1, sizeof *s);
    /* Every rank must take the same path: agree on the decision, and on
     * every rank's allocation before the collective window. One rank per
     * node everywhere: nobody to share memory with. */
    int local[3] = {ctx->node_rank == 0 ? ody_shm_room_for(bytes) : 1, ctx->node_size == 1, !!s};
    int all[3];
    if (MPI_Allreduce(local, all, 3, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS) {
        free(s);
        return ody_fail(ctx, ODY_ERR_MPI, "shared-memory sum: agreeing on /dev/shm space failed");
    }
    if (all[1] || !all[0] || !all[2])
        free(s);
    if (all[1])
        return ODY_OK;
    if (!all[2])
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the shared-memory sum on some rank");
    if (!all[0]) {
        ody_log(ctx, ODY_LOG_INFO, "shared-memory gradient sum off: /dev/shm has less than %.0f MiB "
                "free on some node; summing with MPI", 1.25 * (double)bytes / 1048576.0);
        return ODY_OK;
    }
    s->ctx = ctx;
    s->n = n;
    s->nmax = nmax;
    s->ncount = ncount;
    s->leaders = MPI_COMM_NULL;
    s->win = MPI_WIN_NULL;
    s->sleepy = ody_ranks_outnumber_cores(ctx);
    /* node rank 0 holds the whole segment */
    char *base = ody_node_window(ctx, ctx->node_rank == 0 ? bytes : 0, &s->win)
                     ? ody_node_window_part(s->win, 0)
                     : NULL;
    int init = base && ctx->node_rank == 0 ? init_segment(base, bytes) : 0;
    /* Every rank learns whether every node's segment is ready. */
    int good = base && init == 0, all_good = 0;
    if (MPI_Allreduce(&good, &all_good, 1, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS || !all_good) {
        ody_shm_destroy(s);
        return ody_fail(ctx, ODY_ERR_MPI, "shared-memory sum: a %zu-byte node segment could not be "
                        "set up on some node (set distributed.shared_memory: false)", bytes);
    }
    carve(s, base);
    s->nodes = ctx->node_size < ctx->size; /* the same answer on every rank */
    if (s->nodes && MPI_Comm_split(ctx->comm, ctx->node_rank == 0 ? 0 : MPI_UNDEFINED, ctx->rank,
                                    &s->leaders) != MPI_SUCCESS) {
        ody_shm_destroy(s);
        return ody_fail(ctx, ODY_ERR_MPI, "shared-memory sum: node leader communicator failed");
    }
    ody_log(ctx, ODY_LOG_INFO, "gradient sums: exact, in node shared memory (%d rank(s) on this "
            "node%s)", ctx->node_size, s->nodes ? "; one rank per node sums across nodes with MPI" : "");
    log_node(s);
    *out = s;
    return ODY_OK;
}

void ody_shm_destroy(ody_shm *s)
{
    if (!s)
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && s->leaders != MPI_COMM_NULL)
        MPI_Comm_free(&s->leaders);
    ody_node_window_free(&s->win);
    free(s);
}

/*
 * dst += src over [0, n). Plain loops the compiler vectorises; on x86 an
 * AVX2 clone is picked at load time where the CPU has it (the build itself
 * assumes no more than x86-64).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void add_into(int64_t *restrict dst, const int64_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (int64_t)((uint64_t)dst[i] + (uint64_t)src[i]);
}

/* The stripe holding element i. */
static size_t stripe_of(const ody_shm *s, size_t i) { return i * SHM_STRIPES / s->n; }

/* Where stripe k begins (stripe_of's inverse, rounded up). */
static size_t stripe_begin(const ody_shm *s, size_t k)
{
    return (k * s->n + SHM_STRIPES - 1) / SHM_STRIPES;
}

/*
 * The ranks of a node finish the same buckets at about the same time, so
 * adding stripe after stripe in the same order they would queue on each
 * stripe's lock, one adding while the others sleep. Each rank starts
 * instead at its own place in the range (node rank / node size of the
 * way in), takes the free stripes first, and waits only for those left.
 */
void ody_shm_add(ody_shm *s, const int64_t *src, size_t begin, size_t end)
{
    int64_t *dst = s->sum[s->round % 3];
    if (end > s->n)
        end = s->n;
    if (begin >= end)
        return;
    size_t first = stripe_of(s, begin), count = stripe_of(s, end - 1) - first + 1;
    size_t start = count * (size_t)s->ctx->node_rank / (size_t)s->ctx->node_size;
    bool left[SHM_STRIPES] = {false}; /* busy at the first pass: added at the second */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < count; j++) {
            size_t k = first + (start + j) % count;
            if (pass && !left[k])
                continue;
            pthread_mutex_t *lock = &s->h->stripe[k];
            if (pass)
                pthread_mutex_lock(lock);
            else if (pthread_mutex_trylock(lock) != 0) {
                left[k] = true;
                continue;
            }
            size_t lo = stripe_begin(s, k), hi = stripe_begin(s, k + 1);
            lo = lo > begin ? lo : begin;
            hi = hi < end ? hi : end;
            add_into(dst + lo, src + lo, hi - lo);
            pthread_mutex_unlock(lock);
        }
    }
}

void ody_shm_merge(ody_shm *s, const float *max, const int64_t *count)
{
    float *m = s->max[s->round % 3];
    int64_t *c = s->count[s->round % 3];
    pthread_mutex_lock(&s->h->small);
    for (int i = 0; i < s->nmax; i++)
        m[i] = max[i] > m[i] ? max[i] : m[i];
    for (int i = 0; i < s->ncount && count; i++)
        c[i] += count[i];
    pthread_mutex_unlock(&s->h->small);
}

/* Sleep until *word differs from old; spin a little first when every rank
 * has a core (a release usually comes within microseconds then). */
static void wait_change(const ody_shm *s, atomic_uint *word, unsigned old)
{
    if (!s->sleepy) {
        double t0 = ody_now();
        for (int i = 1; atomic_load_explicit(word, memory_order_acquire) == old; i++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if (i % 256 == 0 && ody_now() - t0 > SHM_SPIN_SECONDS)
                break;
        }
    }
    while (atomic_load_explicit(word, memory_order_acquire) == old)
        futex(word, FUTEX_WAIT, old); /* EAGAIN (changed) or EINTR (a signal): look again */
}

static void release(shm_header *h)
{
    atomic_store_explicit(&h->arrived, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->generation, 1, memory_order_acq_rel);
    futex(&h->generation, FUTEX_WAKE, INT_MAX);
}

/* Node leader with several nodes: wait for the node, sum across nodes. */
static int sum_nodes(ody_shm *s, int b)
{
    shm_header *h = s->h;
    unsigned size = (unsigned)s->ctx->node_size, a;
    while ((a = atomic_load_explicit(&h->arrived, memory_order_acquire)) != size)
        futex(&h->arrived, FUTEX_WAIT, a);
    /* the node is in: from here the wait is for the other nodes */
    atomic_store_explicit(&s->ctx->wait->kind, ODY_WAIT_NODES, memory_order_relaxed);
    int rc = MPI_SUCCESS;
    /* MPI counts are int: go in pieces of at most 2^30 values */
    for (size_t at = 0; at < s->n && rc == MPI_SUCCESS; at += (size_t)1 << 30) {
        size_t k = s->n - at < ((size_t)1 << 30) ? s->n - at : (size_t)1 << 30;
        rc = MPI_Allreduce(MPI_IN_PLACE, s->sum[b] + at, (int)k, MPI_INT64_T, MPI_SUM, s->leaders);
    }
    if (rc == MPI_SUCCESS && s->nmax > 0)
        rc = MPI_Allreduce(MPI_IN_PLACE, s->max[b], s->nmax, MPI_FLOAT, MPI_MAX, s->leaders);
    if (rc == MPI_SUCCESS && s->ncount > 0)
        rc = MPI_Allreduce(MPI_IN_PLACE, s->count[b], s->ncount, MPI_INT64_T, MPI_SUM, s->leaders);
    return rc;
}

ody_status ody_shm_wait(ody_shm *s, ody_shm_busy busy, void *arg)
{
    shm_header *h = s->h;
    ody_ctx *ctx = s->ctx;
    int b = s->round % 3, next = (s->round + 1) % 3;
    /* my slice of the next round's buffer; the small arrays are node rank 0's */
    size_t lo = s->n * (size_t)ctx->node_rank / (size_t)ctx->node_size;
    size_t hi = s->n * ((size_t)ctx->node_rank + 1) / (size_t)ctx->node_size;
    memset(s->sum[next] + lo, 0, (hi - lo) * sizeof(int64_t));
    if (ctx->node_rank == 0) {
        memset(s->max[next], 0, (size_t)s->nmax * sizeof(float));
        memset(s->count[next], 0, (size_t)s->ncount * sizeof(int64_t));
    }
    ody_wait_begin(s->ctx, ODY_WAIT_NODE_SUM);
    unsigned gen = atomic_load_explicit(&h->generation, memory_order_acquire);
    unsigned arrived = atomic_fetch_add_explicit(&h->arrived, 1, memory_order_acq_rel) + 1;
    bool last = arrived == (unsigned)ctx->node_size;
    /* The rank that lets the others go (the last to arrive, or on several
     * nodes the leader once the node is in) does busy's work after it has;
     * any other does it first, in the time it would wait. */
    bool releases_now = last && (!s->nodes || ctx->node_rank == 0);
    if (s->nodes && last) /* the leader waits for the node in sum_nodes */
        futex(&h->arrived, FUTEX_WAKE, INT_MAX);
    if (busy && !releases_now)
        busy(arg);
    if (s->nodes) {
        /* Several nodes: the leader sums across them, then releases. */
        if (ctx->node_rank == 0) {
            if (sum_nodes(s, b) != MPI_SUCCESS)
                atomic_store_explicit(&h->error, 1, memory_order_relaxed);
            release(h);
        } else {
            wait_change(s, &h->generation, gen);
        }
    } else if (last) {
        release(h);
    } else {
        wait_change(s, &h->generation, gen);
    }
    ody_wait_end(s->ctx);
    if (busy && releases_now)
        busy(arg);
    s->cur = b;
    s->round++;
    if (atomic_load_explicit(&h->error, memory_order_relaxed))
        return ody_fail(s->ctx, ODY_ERR_MPI, "shared-memory sum: the sum across nodes failed");
    return ODY_OK;
}

const int64_t *ody_shm_sum(const ody_shm *s) { return s->sum[s->cur]; }
const float *ody_shm_max(const ody_shm *s) { return s->max[s->cur]; }
const int64_t *ody_shm_count(const ody_shm *s) { return s->count[s->cur]; }
