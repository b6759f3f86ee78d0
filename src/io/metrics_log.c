/* io: the metrics log (metrics.jsonl) and small file-system helpers. */
#include "odyssey/io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ody_metrics_log {
    FILE *jsonl;
    char path[1024];
};

ody_status ody_metrics_log_open(ody_ctx *ctx, const char *dir, bool append, ody_metrics_log **out)
{
    *out = NULL;
    ody_metrics_log *log = calloc(1, sizeof *log);
    if (!log)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the metrics log");
    snprintf(log->path, sizeof log->path, "%s/metrics.jsonl", dir);
    log->jsonl = fopen(log->path, append ? "a" : "w");
    if (!log->jsonl) {
        ody_status st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot open for writing: %s", log->path,
                                 strerror(errno));
        free(log);
        return st;
    }
    *out = log;
    return ODY_OK;
}

ody_status ody_metrics_log_write(ody_ctx *ctx, ody_metrics_log *log, const ody_metric *m, int n)
{
    FILE *f = log->jsonl;
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", m[i].key);
        if (!isfinite(m[i].value))
            fputs("null", f);
        else if (m[i].integer)
            fprintf(f, "%lld", (long long)m[i].value);
        else
            fprintf(f, "%.9g", m[i].value);
    }
    fputs("}\n", f);
    if (fflush(f) != 0 || ferror(f))
        return ody_fail(ctx, ODY_ERR_IO, "%s: write failed: %s", log->path, strerror(errno));
    return ODY_OK;
}

ody_status ody_metrics_log_truncate(ody_ctx *ctx, ody_metrics_log *log, int64_t records)
{
    FILE *in = fopen(log->path, "r");
    if (!in)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot read: %s", log->path, strerror(errno));
    long keep = 0;
    int64_t lines = 0;
    int c;
    while (lines < records && (c = fgetc(in)) != EOF) {
        keep++;
        lines += (c == '\n');
    }
    fclose(in);
    fflush(log->jsonl);
    if (truncate(log->path, keep) != 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot truncate: %s", log->path, strerror(errno));
    fseek(log->jsonl, 0, SEEK_END);
    return ODY_OK;
}

void ody_metrics_log_close(ody_metrics_log *log)
{
    if (!log)
        return;
    fclose(log->jsonl);
    free(log);
}

ody_status ody_mkdirs(ody_ctx *ctx, const char *path)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ody_fail(ctx, ODY_ERR_IO, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        bool end = (*p == '\0');
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return ody_fail(ctx, ODY_ERR_IO, "cannot create directory %s: %s", buf,
                                strerror(errno));
            if (end)
                break;
            *p = '/';
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ody_fail(ctx, ODY_ERR_IO, "%s exists and is not a directory", path);
    return ODY_OK;
}

ody_status ody_write_file_atomic(ody_ctx *ctx, const char *path, const char *text, size_t len)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return ody_fail(ctx, ODY_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot flush: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ody_fail(ctx, ODY_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return ODY_OK;
}
