/*
 * comm: the stall watchdog (contract in odyssey/comm.h).
 *
 * Every rank's ody_wait_record sits in a node shared-memory window (its
 * board), so the watchdog of a waiting rank reads its peers' meeting
 * counts, progress beats and pids directly: no message, nothing for MPI's
 * progress engine, and it works while the main thread sleeps in a futex or
 * inside MPI. The thread wakes a few times per bound (at most once a
 * second), which costs nothing measurable.
 */
#define _GNU_SOURCE
#include "comm/comm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ody_stall {
    ody_ctx *ctx;
    double seconds;
    MPI_Win win;             /* the board: one record per node rank (MPI_WIN_NULL: only our own) */
    ody_wait_record **peers; /* (node_size) records, NULL without a board */
    int *behind;             /* (node_size) scratch: node ranks that have not arrived */
    char host[64];
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

/* A process's state from /proc/PID/stat, in words. */
static const char *process_state(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return "state unknown";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close = strrchr(buf, ')'); /* the command name may hold spaces */
    switch (close && close[1] == ' ' ? close[2] : '?') {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "in uninterruptible I/O";
    case 'T': return "stopped";
    case 't': return "stopped by a debugger";
    case 'Z': return "exited";
    default: return "state unknown";
    }
}

static bool process_gone(int pid) { return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH; }

/* One line to stderr in one write (the main thread may be anywhere). */
static void say(const ody_stall *s, const char *line)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s%s\n", s->ctx->line_active ? "\r\033[K" : "", line);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    ssize_t rc = write(STDERR_FILENO, buf, (size_t)n);
    (void)rc;
}

/* "rank 0 (host h) has waited 4.0 s in WHAT at step N" */
static void describe_wait(const ody_stall *s, const ody_wait_record *me, double waited, char *buf,
                          size_t len)
{
    long long step = atomic_load_explicit(&me->step, memory_order_relaxed);
    char at[48] = "";
    if (step > 0)
        snprintf(at, sizeof at, " at step %lld", step);
    snprintf(buf, len, "rank %d (host %s) has waited %.1f s in %s%s", s->ctx->rank, s->host, waited,
             ody_wait_kind_name(atomic_load(&me->kind)), at);
}

/* "for rank 1 (pid 4321, stopped), rank 3 (...)" or, nobody of this node
 * behind, the other nodes. */
static void describe_behind(const ody_stall *s, int nbehind, char *buf, size_t len)
{
    if (nbehind == 0) {
        snprintf(buf, len, "%s", s->ctx->node_size < s->ctx->size
                                     ? "for ranks on other nodes (every rank on this host has arrived)"
                                     : "for a rank that has not arrived");
        return;
    }
    size_t at = (size_t)snprintf(buf, len, "for ");
    for (int i = 0; i < nbehind && at < len; i++) {
        const ody_wait_record *w = s->peers[s->behind[i]];
        int pid = atomic_load(&w->pid);
        at += (size_t)snprintf(buf + at, len - at, "%srank %d (pid %d, %s)", i ? ", " : "",
                               atomic_load(&w->rank), pid, process_state(pid));
    }
}

/* Look at this rank's wait: warn, or end the process. */
static void check(ody_stall *s, long long *warned)
{
    const ody_ctx *ctx = s->ctx;
    const ody_wait_record *me = ctx->wait;
    long long since = atomic_load_explicit(&me->since_ns, memory_order_acquire);
    if (since == 0)
        return;
    long long meeting = atomic_load_explicit(&me->meetings, memory_order_relaxed);
    long long latest = since;
    int nbehind = 0;
    for (int r = 0; s->peers && r < ctx->node_size; r++) {
        const ody_wait_record *w = s->peers[r];
        if (r == ctx->node_rank || atomic_load_explicit(&w->meetings, memory_order_relaxed) >= meeting)
            continue;
        s->behind[nbehind++] = r;
        int pid = atomic_load(&w->pid);
        if (process_gone(pid)) {
            char line[1024];
            snprintf(line, sizeof line, "odyssey-dist: stalled: rank %d (host %s): rank %d (pid %d) "
                     "on this host has exited while this rank waited in %s; ending the job",
                     ctx->rank, s->host, atomic_load(&w->rank), pid,
                     ody_wait_kind_name(atomic_load(&me->kind)));
            say(s, line);
            _exit(1);
        }
        long long beat = atomic_load_explicit(&w->beat_ns, memory_order_relaxed);
        latest = beat > latest ? beat : latest;
    }
    /* checked again now: the wait may have ended while we looked */
    if (atomic_load_explicit(&me->since_ns, memory_order_acquire) != since)
        return;
    double waited = (double)(ody_now_ns() - latest) * 1e-9;
    bool final = waited >= s->seconds;
    if (!final && (waited < 0.5 * s->seconds || *warned == meeting))
        return;
    char head[320], who[1024], line[1600];
    describe_wait(s, me, waited, head, sizeof head);
    describe_behind(s, nbehind, who, sizeof who);
    if (final)
        snprintf(line, sizeof line, "odyssey-dist: stalled: %s %s; ending the job "
                 "(distributed.stall_seconds: %g)", head, who, s->seconds);
    else
        snprintf(line, sizeof line, "odyssey-dist: warning: %s %s; the job ends at %g s "
                 "(distributed.stall_seconds)", head, who, s->seconds);
    say(s, line);
    if (final)
        _exit(1);
    *warned = meeting;
}

static void *watch(void *arg)
{
    ody_stall *s = arg;
    double tick = s->seconds / 8 < 1.0 ? s->seconds / 8 : 1.0;
    long long warned = -1;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long long ns = until.tv_nsec + (long long)(tick * 1e9);
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        check(s, &warned);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The board: every rank's record in node shared memory. Collective; false
 * (on every rank) when any node could not have one. */
static bool open_board(ody_stall *s)
{
    ody_ctx *ctx = s->ctx;
    s->peers = calloc((size_t)ctx->node_size, sizeof *s->peers);
    s->behind = calloc((size_t)ctx->node_size, sizeof *s->behind);
    /* the window is collective: every rank makes it, whatever it has */
    bool window = ody_node_window(ctx, sizeof(ody_wait_record), &s->win);
    int good = s->peers && s->behind && window;
    for (int r = 0; good && r < ctx->node_size; r++)
        good = (s->peers[r] = (ody_wait_record *)ody_node_window_part(s->win, r)) != NULL;
    int all = 0;
    if (MPI_Allreduce(&good, &all, 1, MPI_INT, MPI_MIN, ctx->comm) != MPI_SUCCESS || !all) {
        ody_node_window_free(&s->win);
        free(s->peers);
        free(s->behind);
        s->peers = NULL;
        s->behind = NULL;
        return false;
    }
    ody_wait_record *mine = s->peers[ctx->node_rank];
    const ody_wait_record *own = &ctx->own_wait;
    atomic_store(&mine->meetings, atomic_load(&own->meetings));
    atomic_store(&mine->since_ns, 0);
    atomic_store(&mine->beat_ns, atomic_load(&own->beat_ns));
    atomic_store(&mine->step, atomic_load(&own->step));
    atomic_store(&mine->kind, atomic_load(&own->kind));
    atomic_store(&mine->pid, atomic_load(&own->pid));
    atomic_store(&mine->rank, ctx->rank);
    ctx->wait = mine;
    /* every record is written before anyone reads one */
    return MPI_Barrier(ctx->node_comm) == MPI_SUCCESS;
}

ody_status ody_stall_create(ody_ctx *ctx, double seconds, ody_stall **out)
{
    *out = NULL;
    ody_stall *s = calloc(1, sizeof *s);
    ody_status st = ody_comm_agree(
        ctx, s ? ODY_OK : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the stall watchdog"));
    if (st != ODY_OK) {
        free(s);
        return st;
    }
    if (seconds <= 0) {
        free(s);
        return ODY_OK;
    }
    s->ctx = ctx;
    s->seconds = seconds;
    s->win = MPI_WIN_NULL;
    if (gethostname(s->host, sizeof s->host) != 0)
        snprintf(s->host, sizeof s->host, "?");
    s->host[sizeof s->host - 1] = '\0';
    if (!open_board(s))
        ody_log(ctx, ODY_LOG_WARN, "stall watchdog: no board in node shared memory; a stall is "
                "reported without naming the ranks that have not arrived");
    pthread_mutex_init(&s->lock, NULL);
    /* watch() waits until a CLOCK_MONOTONIC time: the condition must measure
     * on that clock (on the default, CLOCK_REALTIME, every wait would end at
     * once and the thread would spin, taking a core from the rank) */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    int rc = pthread_create(&s->thread, NULL, watch, s);
    s->running = rc == 0;
    st = ody_comm_agree(ctx, rc == 0 ? ODY_OK
                                     : ody_fail(ctx, rc == EAGAIN ? ODY_ERR_NOMEM : ODY_ERR_INTERNAL,
                                                "cannot start the stall watchdog's thread: %s",
                                                strerror(rc)));
    if (st != ODY_OK) {
        ody_stall_destroy(s);
        return st;
    }
    *out = s;
    return ODY_OK;
}

void ody_stall_destroy(ody_stall *s)
{
    if (!s)
        return;
    if (s->running) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    ody_ctx *ctx = s->ctx;
    if (ctx->wait != &ctx->own_wait) {
        atomic_store(&ctx->own_wait.meetings, atomic_load(&ctx->wait->meetings));
        atomic_store(&ctx->own_wait.step, atomic_load(&ctx->wait->step));
        ctx->wait = &ctx->own_wait;
    }
    ody_node_window_free(&s->win);
    free(s->peers);
    free(s->behind);
    free(s);
}
