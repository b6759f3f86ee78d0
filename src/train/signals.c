/* train: stop signals (SIGTERM, SIGUSR1) as a flag read at step boundaries;
 * the test knob that acts at a step (ODY_FAIL_*). */
#include "odyssey/train.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one piece of process-wide state: a signal handler can reach nothing else. */
static volatile sig_atomic_t stop_signals;

static void on_stop_signal(int sig)
{
    (void)sig;
    if (stop_signals < 1000)
        stop_signals++;
}

ody_status ody_stop_signals_install(ody_ctx *ctx)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "cannot install the SIGTERM/SIGUSR1 handlers");
    return ODY_OK;
}

int ody_stop_signals_received(void) { return stop_signals; }

/* ODY_FAIL_RANK: an integer in [0, 2^30]. */
static ody_status read_rank(ody_ctx *ctx, int *rank)
{
    const char *v = getenv("ODY_FAIL_RANK");
    if (!v || !*v)
        return ODY_OK;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < 0 || n > (1L << 30))
        return ody_fail(ctx, ODY_ERR_USAGE, "environment: ODY_FAIL_RANK=%s: expected a rank", v);
    *rank = (int)n;
    return ODY_OK;
}

/* ODY_FAIL_STEP: steps >= 1, separated by commas. */
static ody_status read_steps(ody_ctx *ctx, ody_fault_knob *knob)
{
    const char *v = getenv("ODY_FAIL_STEP");
    if (!v || !*v) {
        knob->steps[knob->nsteps++] = 1;
        return ODY_OK;
    }
    for (const char *p = v;;) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(p, &end, 10);
        if (errno || end == p || n < 1 || (*end && *end != ',') || knob->nsteps == ODY_FAULT_MAX_STEPS)
            return ody_fail(ctx, ODY_ERR_USAGE, "environment: ODY_FAIL_STEP=%s: expected up to %d "
                            "steps (>= 1) separated by commas", v, ODY_FAULT_MAX_STEPS);
        knob->steps[knob->nsteps++] = n;
        if (!*end)
            return ODY_OK;
        p = end + 1;
    }
}

ody_status ody_fault_knob_read(ody_ctx *ctx, ody_fault_knob *knob)
{
    static const char *const names[] = {[ODY_FAULT_TERM] = "term", [ODY_FAULT_USR1] = "usr1",
                                        [ODY_FAULT_KILL] = "kill", [ODY_FAULT_STOP] = "stop",
                                        [ODY_FAULT_STALL] = "stall", [ODY_FAULT_HOLD] = "hold",
                                        [ODY_FAULT_KERNEL] = "kernel"};
    memset(knob, 0, sizeof *knob);
    const char *action = getenv("ODY_FAIL_ACTION");
    if (!action || !*action)
        return ODY_OK;
    for (int a = ODY_FAULT_TERM; a <= ODY_FAULT_KERNEL; a++)
        if (strcmp(action, names[a]) == 0)
            knob->action = (ody_fault_action)a;
    if (knob->action == ODY_FAULT_NONE)
        return ody_fail(ctx, ODY_ERR_USAGE, "environment: ODY_FAIL_ACTION=%s: expected term, usr1, "
                        "kill, stop, stall, hold or kernel", action);
    ody_status st = read_rank(ctx, &knob->rank);
    return st == ODY_OK ? read_steps(ctx, knob) : st;
}

bool ody_fault_knob_fire(const ody_ctx *ctx, const ody_fault_knob *knob, int64_t step)
{
    static const int signals[] = {[ODY_FAULT_TERM] = SIGTERM, [ODY_FAULT_USR1] = SIGUSR1,
                                  [ODY_FAULT_KILL] = SIGKILL, [ODY_FAULT_STOP] = SIGSTOP};
    static const char *const what[] = {[ODY_FAULT_TERM] = "raises SIGTERM",
                                       [ODY_FAULT_USR1] = "raises SIGUSR1",
                                       [ODY_FAULT_KILL] = "raises SIGKILL",
                                       [ODY_FAULT_STOP] = "raises SIGSTOP",
                                       [ODY_FAULT_STALL] = "stalls",
                                       [ODY_FAULT_HOLD] = "holds until a stop signal",
                                       [ODY_FAULT_KERNEL] = "fails its first layer's kernels"};
    bool now = false;
    for (int i = 0; i < knob->nsteps; i++)
        now |= knob->steps[i] == step;
    if (knob->action == ODY_FAULT_NONE || ctx->rank != knob->rank || !now)
        return false;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    fprintf(stderr, "odyssey-dist: test knob: rank %d (pid %d) %s at step %lld, at %lld.%03ld\n",
            ctx->rank, (int)getpid(), what[knob->action], (long long)step, (long long)wall.tv_sec,
            wall.tv_nsec / 1000000);
    fflush(stderr);
    switch (knob->action) {
    case ODY_FAULT_STALL:
        for (;;) /* alive and stuck: a stop signal does not end it */
            pause();
    case ODY_FAULT_HOLD: {
        /* blocked while looking, so a signal cannot slip in before the sleep */
        sigset_t stops, before;
        sigemptyset(&stops);
        sigaddset(&stops, SIGTERM);
        sigaddset(&stops, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &stops, &before);
        int seen = stop_signals;
        while (stop_signals == seen)
            sigsuspend(&before);
        pthread_sigmask(SIG_SETMASK, &before, NULL);
        return false;
    }
    case ODY_FAULT_KERNEL:
        return true;
    default:
        raise(signals[knob->action]);
        return false;
    }
}
