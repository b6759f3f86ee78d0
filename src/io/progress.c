/*
 * io: the live progress line on a terminal.
 *
 * Whether rank 0 sits at a terminal (logging.progress: auto) is not simply
 * isatty(): Open MPI's mpirun hands every rank a pseudo-terminal as stdout
 * even when mpirun's own output goes to a file, and a pipe as stderr even
 * when mpirun's stderr is the user's terminal. So under Open MPI the
 * question is asked of mpirun: the parent of a rank it started (rank 0's,
 * when mpirun runs on the first node, as in an allocation), through
 * /proc/<ppid>/fd/<fd>. Elsewhere (a singleton, srun, MPICH's hydra) the
 * rank's own stream tells. A launcher that knows better (srun hands ranks
 * pipes even from a terminal) passes ODY_PROGRESS=always or never.
 */
#include "odyssey/io.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether the path a /proc fd link names is a terminal device. */
static bool names_terminal(const char *target)
{
    return strncmp(target, "/dev/pts/", 9) == 0 || strncmp(target, "/dev/tty", 8) == 0 ||
           strcmp(target, "/dev/console") == 0;
}

/* Whether fd of process pid is a terminal (false when it cannot be seen). */
static bool process_fd_is_terminal(long pid, int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%ld/fd/%d", pid, fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return names_terminal(target);
}

bool ody_progress_terminal(FILE *out)
{
    int fd = fileno(out);
    if (fd < 0)
        return false;
    if (getenv("OMPI_COMM_WORLD_SIZE")) /* started by Open MPI's mpirun */
        return process_fd_is_terminal((long)getppid(), fd);
    return isatty(fd) == 1;
}

/* "auto", "always" or "never" from ODY_PROGRESS; "auto" when unset or bad. */
static const char *env_mode(ody_ctx *ctx)
{
    const char *env = getenv("ODY_PROGRESS");
    if (!env || !*env)
        return "auto";
    if (strcmp(env, "auto") == 0 || strcmp(env, "always") == 0 || strcmp(env, "never") == 0)
        return env;
    ody_log(ctx, ODY_LOG_WARN, "ODY_PROGRESS: '%s' is not auto, always or never; taken as auto",
            env);
    return "auto";
}

void ody_progress_init(ody_progress *p, ody_ctx *ctx, FILE *out, const char *mode)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->out = out;
    if (strcmp(mode, "auto") == 0)
        mode = env_mode(ctx);
    if (strcmp(mode, "always") == 0)
        p->active = true;
    else if (strcmp(mode, "auto") == 0)
        p->active = ody_progress_terminal(out);
    p->last_draw = -1.0;
}

void ody_progress_draw(ody_progress *p, bool force, const char *fmt, ...)
{
    if (!p->active)
        return;
    double now = ody_now();
    if (!force && now - p->last_draw < 0.2)
        return;
    p->last_draw = now;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Carriage return, the text, erase what an older, longer line left. */
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
    p->ctx->line_active = true;
}

void ody_progress_clear(ody_progress *p)
{
    if (!p->active || !p->ctx->line_active)
        return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->ctx->line_active = false;
}
