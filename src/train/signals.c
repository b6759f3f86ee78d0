/* train: stop signals (SIGTERM, SIGUSR1) as a flag read at step boundaries. */
#include "odyssey/train.h"

#include <signal.h>
#include <string.h>

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
