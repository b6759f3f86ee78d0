/* io: Chrome traces (Trace Event Format, JSON array) of a rank's phases. */
#include "odyssey/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_CAPACITY 65536 /* events buffered between flushes */

typedef struct {
    const char *name; /* a static string (a phase key) */
    double start, dur;
} trace_event;

struct ody_trace {
    FILE *f;
    char path[1024];
    int pid;
    double t0;
    int n;
    trace_event events[TRACE_CAPACITY];
};

ody_status ody_trace_open(ody_ctx *ctx, const char *path, int pid, double t0, ody_trace **out)
{
    *out = NULL;
    ody_trace *t = malloc(sizeof *t);
    if (!t)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the trace buffer");
    t->f = fopen(path, "w");
    if (!t->f) {
        ody_status st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot open for writing: %s", path,
                                 strerror(errno));
        free(t);
        return st;
    }
    snprintf(t->path, sizeof t->path, "%s", path);
    t->pid = pid;
    t->t0 = t0;
    t->n = 0;
    /* The process name event labels the track in the viewer. */
    fprintf(t->f, "[{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
                  "\"args\": {\"name\": \"rank %d\"}}",
            pid, pid);
    *out = t;
    return ODY_OK;
}

static void write_events(ody_trace *t)
{
    for (int i = 0; i < t->n; i++) {
        const trace_event *e = &t->events[i];
        fprintf(t->f,
                ",\n{\"name\": \"%s\", \"cat\": \"step\", \"ph\": \"X\", \"pid\": %d, \"tid\": 0, "
                "\"ts\": %.1f, \"dur\": %.1f}",
                e->name, t->pid, (e->start - t->t0) * 1e6, e->dur * 1e6);
    }
    t->n = 0;
}

void ody_trace_event(ody_trace *t, const char *name, double start, double dur)
{
    if (t->n == TRACE_CAPACITY)
        write_events(t);
    t->events[t->n++] = (trace_event){name, start, dur};
}

ody_status ody_trace_flush(ody_ctx *ctx, ody_trace *t)
{
    write_events(t);
    if (fflush(t->f) != 0 || ferror(t->f))
        return ody_fail(ctx, ODY_ERR_IO, "%s: write failed: %s", t->path, strerror(errno));
    return ODY_OK;
}

void ody_trace_close(ody_ctx *ctx, ody_trace *t)
{
    if (!t)
        return;
    write_events(t);
    fputs("\n]\n", t->f);
    if (fclose(t->f) != 0)
        ody_log_all(ctx, ODY_LOG_WARN, "%s: write failed: %s", t->path, strerror(errno));
    free(t);
}
