/* io: the live progress line on a terminal. */
#include "odyssey/io.h"

#include <string.h>
#include <unistd.h>

void ody_progress_init(ody_progress *p, ody_ctx *ctx, FILE *out, const char *mode)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->out = out;
    if (strcmp(mode, "always") == 0)
        p->active = true;
    else if (strcmp(mode, "auto") == 0)
        p->active = isatty(fileno(out)) == 1;
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
