/* core: status codes, the context, errors, logging, allocation, hashing. */
#include "odyssey/core.h"

#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <time.h>
#include <unistd.h>

static const struct {
    const char *name;
    int exit_code;
} status_table[ODY_STATUS_COUNT] = {
    [ODY_OK] = {"ok", 0},
    [ODY_ERR_USAGE] = {"usage error", 2},
    [ODY_ERR_CONFIG] = {"config error", 2},
    [ODY_ERR_DATA] = {"data error", 3},
    [ODY_ERR_CHECKPOINT] = {"checkpoint error", 4},
    [ODY_ERR_NUMERIC] = {"numeric failure", 5},
    [ODY_ERR_NOMEM] = {"out of memory", 1},
    [ODY_ERR_IO] = {"i/o error", 1},
    [ODY_ERR_MPI] = {"MPI error", 1},
    [ODY_ERR_INTERNAL] = {"internal error", 1},
    [ODY_STOPPED] = {"stopped by signal", 75},
};

int ody_status_exit_code(ody_status st)
{
    if ((int)st < 0 || st >= ODY_STATUS_COUNT)
        return 1;
    return status_table[st].exit_code;
}

const char *ody_status_name(ody_status st)
{
    if ((int)st < 0 || st >= ODY_STATUS_COUNT)
        return "unknown status";
    return status_table[st].name;
}

ody_status ody_ctx_create(ody_ctx **out, MPI_Comm comm)
{
    *out = NULL;
    ody_ctx *ctx = calloc(1, sizeof *ctx);
    /* Collective from here: every rank goes on, or none. */
    int have = ctx != NULL, all = 0;
    if (MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS || !all) {
        free(ctx);
        return ODY_ERR_NOMEM;
    }
    if (MPI_Comm_dup(comm, &ctx->comm) != MPI_SUCCESS) {
        free(ctx);
        return ODY_ERR_MPI;
    }
    MPI_Comm_rank(ctx->comm, &ctx->rank);
    MPI_Comm_size(ctx->comm, &ctx->size);
    if (MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL,
                            &ctx->node_comm) != MPI_SUCCESS) {
        MPI_Comm_free(&ctx->comm);
        free(ctx);
        return ODY_ERR_MPI;
    }
    MPI_Comm_rank(ctx->node_comm, &ctx->node_rank);
    MPI_Comm_size(ctx->node_comm, &ctx->node_size);
    if (ody_node_cores(ctx->node_comm, &ctx->node_cores) != MPI_SUCCESS) {
        MPI_Comm_free(&ctx->node_comm);
        MPI_Comm_free(&ctx->comm);
        free(ctx);
        return ODY_ERR_MPI;
    }
    ctx->log_level = ODY_LOG_INFO;
    ctx->log_stream = stderr;
    ctx->wait = &ctx->own_wait;
    atomic_store(&ctx->own_wait.pid, (int)getpid());
    atomic_store(&ctx->own_wait.rank, ctx->rank);
    atomic_store(&ctx->own_wait.beat_ns, (long long)ody_now_ns());
    *out = ctx;
    return ODY_OK;
}

void ody_ctx_destroy(ody_ctx *ctx)
{
    if (!ctx)
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        MPI_Comm_free(&ctx->node_comm);
        MPI_Comm_free(&ctx->comm);
    }
    free(ctx);
}

ody_status ody_fail(ody_ctx *ctx, ody_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    ctx->err_status = st;
    return st;
}

void ody_error_prefix(ody_ctx *ctx, const char *fmt, ...)
{
    char prefix[ODY_ERRMSG_MAX], old[ODY_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->err, sizeof old);
    /* Truncation is fine here: the message is for a human. */
    size_t n = strlen(prefix);
    if (n > sizeof ctx->err - 3)
        n = sizeof ctx->err - 3;
    memcpy(ctx->err, prefix, n);
    memcpy(ctx->err + n, ": ", 2);
    size_t rest = sizeof ctx->err - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(ctx->err + n + 2, old, m);
    ctx->err[n + 2 + m] = '\0';
}

const char *ody_ctx_error(const ody_ctx *ctx) { return ctx->err; }

ody_status ody_mpi_check(ody_ctx *ctx, int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return ODY_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ody_fail(ctx, ODY_ERR_MPI, "%s failed: %s", what, msg);
}

void ody_ctx_clear_error(ody_ctx *ctx)
{
    ctx->err[0] = '\0';
    ctx->err_status = ODY_OK;
}

static const char *level_tag(ody_log_level lvl)
{
    switch (lvl) {
    case ODY_LOG_ERROR: return "error: ";
    case ODY_LOG_WARN: return "warning: ";
    default: return "";
    }
}

/* The local wall-clock time as ISO 8601 to the millisecond,
 * "2025-01-31T17:05:09.042", into out (at least 24 bytes). */
static void iso_time(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!localtime_r(&ts.tv_sec, &tm)) {
        snprintf(out, len, "%lld", (long long)ts.tv_sec);
        return;
    }
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ld", ts.tv_nsec / 1000000);
}

static void vlog(const ody_ctx *ctx, ody_log_level lvl, bool with_rank, const char *fmt,
                 va_list ap)
{
    if (lvl > ctx->log_level)
        return;
    char line[2048];
    iso_time(line, 32);
    int n = (int)strlen(line);
    line[n++] = ' ';
    if (with_rank && ctx->size > 1)
        n += snprintf(line + n, sizeof line - (size_t)n, "rank %d: ", ctx->rank);
    n += snprintf(line + n, sizeof line - (size_t)n, "%s", level_tag(lvl));
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    /* One write per line, so lines from several ranks do not interleave; a
     * live progress line is cleared first (carriage return, erase line). */
    fprintf(ctx->log_stream, "%s%s\n", ctx->line_active ? "\r\033[K" : "", line);
    fflush(ctx->log_stream);
}

void ody_log(const ody_ctx *ctx, ody_log_level lvl, const char *fmt, ...)
{
    if (ctx->rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, lvl, false, fmt, ap);
    va_end(ap);
}

void ody_log_all(const ody_ctx *ctx, ody_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, lvl, true, fmt, ap);
    va_end(ap);
}

ody_status ody_alloc(ody_ctx *ctx, size_t n, const char *what, void **out)
{
    *out = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = NULL;
    if (rounded == 0)
        rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0 || !p)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    memset(p, 0, rounded);
    ctx->bytes_allocated += n;
    if (ctx->bytes_allocated > ctx->bytes_peak)
        ctx->bytes_peak = ctx->bytes_allocated;
    *out = p;
    return ODY_OK;
}

void ody_free(ody_ctx *ctx, void *p, size_t n)
{
    if (!p)
        return;
    ctx->bytes_allocated -= n;
    free(p);
}

/* From /proc/self/status: VmRSS and VmHWM, in kB. */
void ody_rss(size_t *now, size_t *peak)
{
    *now = *peak = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long kb = 0;
        if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
            *now = (size_t)kb * 1024;
        else if (sscanf(line, "VmHWM: %lu kB", &kb) == 1)
            *peak = (size_t)kb * 1024;
    }
    fclose(f);
}

double ody_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int64_t ody_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ody_wait_begin(ody_ctx *ctx, ody_wait_kind kind)
{
    ody_wait_record *w = ctx->wait;
    /* a nested wait names itself (it is the more precise) but is part of
     * the outer meeting */
    if (ctx->wait_depth < ODY_WAIT_NESTING)
        ctx->wait_kinds[ctx->wait_depth] = kind;
    atomic_store_explicit(&w->kind, (int)kind, memory_order_relaxed);
    if (ctx->wait_depth++ > 0)
        return;
    atomic_fetch_add_explicit(&w->meetings, 1, memory_order_relaxed);
    atomic_store_explicit(&w->since_ns, (long long)ody_now_ns(), memory_order_release);
}

void ody_wait_end(ody_ctx *ctx)
{
    ody_wait_record *w = ctx->wait;
    if (ctx->wait_depth <= 0)
        return;
    if (--ctx->wait_depth > 0) {
        if (ctx->wait_depth <= ODY_WAIT_NESTING)
            atomic_store_explicit(&w->kind, (int)ctx->wait_kinds[ctx->wait_depth - 1],
                                  memory_order_relaxed);
        return;
    }
    long long now = (long long)ody_now_ns();
    atomic_store_explicit(&w->beat_ns, now, memory_order_relaxed);
    atomic_store_explicit(&w->since_ns, 0, memory_order_release);
}

void ody_heartbeat(ody_ctx *ctx)
{
    atomic_store_explicit(&ctx->wait->beat_ns, (long long)ody_now_ns(), memory_order_relaxed);
}

void ody_wait_set_step(ody_ctx *ctx, int64_t step)
{
    atomic_store_explicit(&ctx->wait->step, (long long)step, memory_order_relaxed);
    ody_heartbeat(ctx);
}

const char *ody_wait_kind_name(int kind)
{
    static const char *names[ODY_WAIT_KINDS] = {
        [ODY_WAIT_AGREE] = "an agreement of the ranks",
        [ODY_WAIT_BROADCAST] = "a broadcast from rank 0",
        [ODY_WAIT_VOTE] = "the step's vote",
        [ODY_WAIT_GRADIENTS] = "the gradient sum",
        [ODY_WAIT_NODE_SUM] = "the gradient sum in node shared memory",
        [ODY_WAIT_NODES] = "the sum across nodes",
        [ODY_WAIT_METRICS] = "the metric sums"};
    return kind >= 0 && kind < ODY_WAIT_KINDS ? names[kind] : "a collective";
}

const char *ody_phase_key(ody_phase p)
{
    static const char *keys[ODY_PHASE_COUNT] = {
        "time_data", "time_forward", "time_backward",
        "time_comm_wait", "time_optimizer", "time_checkpoint"};
    return (p < ODY_PHASE_COUNT) ? keys[p] : "time_unknown";
}

/* ------------------------------------------------------------- checksums */

uint64_t ody_checksum64(const void *data, size_t n) { return XXH3_64bits(data, n); }

/*
 * LEGACY: the checksum of format 2 checkpoints, kept only so that they still
 * load (src/io/ckpt_read.c picks it by the file's format version).
 * Nothing writes it any more: a flipped bit can leave it unchanged. When
 * the upper 32 bits of a block's first word (lane 0) are hi32(key 0) ^ 1
 * = 0xbe4ba422, the product term is lo32(d) ^ lo32(key 0), and flipping
 * bit 3 of the lower 32 bits moves d by +8 and that term by -8 (or the
 * reverse): the lane, and so the checksum, stays the same
 * (tests/unit/test_core.c holds that case).
 *
 * The formula, exactly, for reading old files: eight 64-bit lanes; each
 * 64-byte block adds, per lane, its little-endian word d and
 * lo32(d ^ k) * hi32(d ^ k) (k a per-lane constant), after rotating the
 * lane left by one bit. The last partial block is zero-padded; the lanes
 * and the length are folded with splitmix64's finalizer. AVX2 computes the
 * same value as the portable loop.
 */
/* splitmix64's finalizer: folds the checksum's lanes. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    return x ^ (x >> 33);
}

#define CHECKSUM_LANES 8
#define CHECKSUM_BLOCK (CHECKSUM_LANES * 8)

static const uint64_t lane_key[CHECKSUM_LANES] = {
    0xbe4ba423396cfeb8ULL, 0x1cad21f72c81017cULL, 0xdb979083e96dd4deULL, 0x1f67b3b7a4a44072ULL,
    0x78e5c0cc4ee679cbULL, 0x2172ffcc7dd05a82ULL, 0x8e2443f7744608b8ULL, 0x4c263a81e69035e0ULL,
};

static inline void block_portable(uint64_t acc[CHECKSUM_LANES], const unsigned char *p)
{
    for (int l = 0; l < CHECKSUM_LANES; l++) {
        uint64_t d;
        memcpy(&d, p + 8 * l, sizeof d);
        uint64_t dk = d ^ lane_key[l];
        acc[l] = ((acc[l] << 1) | (acc[l] >> 63)) + d + (dk & 0xffffffffULL) * (dk >> 32);
    }
}

static void legacy_update(uint64_t acc[CHECKSUM_LANES], uint64_t *total, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t whole = n / CHECKSUM_BLOCK * CHECKSUM_BLOCK, i = 0;
#ifdef __AVX2__
    __m256i a0 = _mm256_loadu_si256((const __m256i *)acc);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(acc + 4));
    const __m256i k0 = _mm256_loadu_si256((const __m256i *)lane_key);
    const __m256i k1 = _mm256_loadu_si256((const __m256i *)(lane_key + 4));
    for (; i < whole; i += CHECKSUM_BLOCK) {
        __m256i d0 = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        __m256i x0 = _mm256_xor_si256(d0, k0), x1 = _mm256_xor_si256(d1, k1);
        __m256i m0 = _mm256_mul_epu32(x0, _mm256_srli_epi64(x0, 32));
        __m256i m1 = _mm256_mul_epu32(x1, _mm256_srli_epi64(x1, 32));
        a0 = _mm256_or_si256(_mm256_slli_epi64(a0, 1), _mm256_srli_epi64(a0, 63));
        a1 = _mm256_or_si256(_mm256_slli_epi64(a1, 1), _mm256_srli_epi64(a1, 63));
        a0 = _mm256_add_epi64(a0, _mm256_add_epi64(d0, m0));
        a1 = _mm256_add_epi64(a1, _mm256_add_epi64(d1, m1));
    }
    _mm256_storeu_si256((__m256i *)acc, a0);
    _mm256_storeu_si256((__m256i *)(acc + 4), a1);
#endif
    for (; i < whole; i += CHECKSUM_BLOCK)
        block_portable(acc, p + i);
    if (i < n) {
        unsigned char last[CHECKSUM_BLOCK] = {0};
        memcpy(last, p + i, n - i);
        block_portable(acc, last);
    }
    *total += n;
}

static uint64_t legacy_final(const uint64_t acc[CHECKSUM_LANES], uint64_t total)
{
    uint64_t h = mix64(total ^ 0x9e3779b97f4a7c15ULL);
    for (int l = 0; l < CHECKSUM_LANES; l++)
        h = mix64(h ^ acc[l]);
    return h;
}

uint64_t ody_checksum64_legacy_v2(const void *data, size_t n)
{
    uint64_t acc[CHECKSUM_LANES] = {0}, total = 0;
    legacy_update(acc, &total, data, n);
    return legacy_final(acc, total);
}

/* ---------------------------------------------------- streamed checksums */

void ody_checksum64_init(ody_checksum *c, ody_checksum_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    if (kind == ODY_CHECKSUM_XXH3)
        XXH3_64bits_reset(&c->u.xxh3); /* fails only for a NULL state */
}

void ody_checksum64_update(ody_checksum *c, const void *data, size_t n)
{
    if (c->kind == ODY_CHECKSUM_XXH3)
        XXH3_64bits_update(&c->u.xxh3, data, n); /* fails only for NULL data with n > 0 */
    else
        legacy_update(c->u.legacy.acc, &c->u.legacy.n, data, n);
}

uint64_t ody_checksum64_final(const ody_checksum *c)
{
    if (c->kind == ODY_CHECKSUM_XXH3)
        return XXH3_64bits_digest(&c->u.xxh3);
    return legacy_final(c->u.legacy.acc, c->u.legacy.n);
}
