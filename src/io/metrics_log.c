/* io: the metrics log (metrics.jsonl) and small file-system helpers. */
#define _GNU_SOURCE /* memfd_create */
#include "odyssey/io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CSV_MAX_COLUMNS 64

struct ody_metrics_log {
    FILE *jsonl;
    char path[1024];
    FILE *csv;                            /* NULL unless enabled */
    char csv_path[1024];
    bool csv_has_header;
    int ncolumns;
    char columns[CSV_MAX_COLUMNS][32];    /* the first record's keys */
    /* stdio's buffers, given at open: a write during training allocates nothing */
    char jsonl_buffer[8192], csv_buffer[8192];
};

ody_status ody_metrics_log_open(ody_ctx *ctx, const char *dir, bool append, ody_metrics_log **out)
{
    return ody_metrics_log_open_named(ctx, dir, "metrics", append, out);
}

ody_status ody_metrics_log_open_named(ody_ctx *ctx, const char *dir, const char *name, bool append,
                                      ody_metrics_log **out)
{
    *out = NULL;
    ody_metrics_log *log = calloc(1, sizeof *log);
    if (!log)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the metrics log");
    if (snprintf(log->path, sizeof log->path, "%s/%s.jsonl", dir, name) >= (int)sizeof log->path) {
        free(log);
        return ody_fail(ctx, ODY_ERR_IO, "%s/%s.jsonl: path too long", dir, name);
    }
    log->jsonl = fopen(log->path, append ? "a" : "w");
    if (!log->jsonl) {
        ody_status st = ody_fail(ctx, ODY_ERR_IO, "%s: cannot open for writing: %s", log->path,
                                 strerror(errno));
        free(log);
        return st;
    }
    setvbuf(log->jsonl, log->jsonl_buffer, _IOFBF, sizeof log->jsonl_buffer);
    *out = log;
    return ODY_OK;
}

static void print_value(FILE *f, const ody_metric *m, const char *missing)
{
    if (!isfinite(m->value))
        fputs(missing, f);
    else if (m->integer)
        fprintf(f, "%lld", (long long)m->value);
    else
        fprintf(f, "%.9g", m->value);
}

ody_status ody_metrics_log_enable_csv(ody_ctx *ctx, ody_metrics_log *log, bool append)
{
    snprintf(log->csv_path, sizeof log->csv_path, "%.1000s.csv", log->path);
    /* metrics.jsonl.csv -> metrics.csv */
    char *dot = strstr(log->csv_path, ".jsonl.csv");
    if (dot)
        memmove(dot, ".csv", 5);
    log->csv = fopen(log->csv_path, append ? "a+" : "w");
    if (!log->csv)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot open for writing: %s", log->csv_path,
                        strerror(errno));
    setvbuf(log->csv, log->csv_buffer, _IOFBF, sizeof log->csv_buffer);
    /* A resumed run keeps the header and columns the file starts with. */
    char header[4096];
    rewind(log->csv);
    if (append && fgets(header, sizeof header, log->csv)) {
        log->csv_has_header = true;
        for (char *tok = strtok(header, ",\n"); tok && log->ncolumns < CSV_MAX_COLUMNS;
             tok = strtok(NULL, ",\n"))
            snprintf(log->columns[log->ncolumns++], sizeof log->columns[0], "%s", tok);
    }
    fseek(log->csv, 0, SEEK_END);
    return ODY_OK;
}

/* One CSV row: the columns of the header, by key; a missing key is an empty cell. */
static void write_csv(ody_metrics_log *log, const ody_metric *m, int n)
{
    FILE *f = log->csv;
    if (!log->csv_has_header) {
        for (int i = 0; i < n && log->ncolumns < CSV_MAX_COLUMNS; i++)
            snprintf(log->columns[log->ncolumns++], sizeof log->columns[0], "%s", m[i].key);
        for (int c = 0; c < log->ncolumns; c++)
            fprintf(f, "%s%s", c ? "," : "", log->columns[c]);
        fputc('\n', f);
        log->csv_has_header = true;
    }
    for (int c = 0; c < log->ncolumns; c++) {
        if (c)
            fputc(',', f);
        for (int i = 0; i < n; i++)
            if (strcmp(m[i].key, log->columns[c]) == 0)
                print_value(f, &m[i], "");
    }
    fputc('\n', f);
}

ody_status ody_metrics_log_write(ody_ctx *ctx, ody_metrics_log *log, const ody_metric *m, int n)
{
    FILE *f = log->jsonl;
    fputc('{', f);
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (m[i].optional && !isfinite(m[i].value))
            continue;
        fprintf(f, "%s\"%s\": ", first ? "" : ", ", m[i].key);
        print_value(f, &m[i], "null");
        first = false;
    }
    fputs("}\n", f);
    if (fflush(f) != 0 || ferror(f))
        return ody_fail(ctx, ODY_ERR_IO, "%s: write failed: %s", log->path, strerror(errno));
    if (log->csv) {
        write_csv(log, m, n);
        if (fflush(log->csv) != 0 || ferror(log->csv))
            return ody_fail(ctx, ODY_ERR_IO, "%s: write failed: %s", log->csv_path,
                            strerror(errno));
    }
    return ODY_OK;
}

/* Keep the first `lines` lines of path. */
static ody_status keep_lines(ody_ctx *ctx, const char *path, int64_t lines)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    long keep = 0;
    int64_t seen = 0;
    int c;
    while (seen < lines && (c = fgetc(in)) != EOF) {
        keep++;
        seen += (c == '\n');
    }
    fclose(in);
    if (truncate(path, keep) != 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot truncate: %s", path, strerror(errno));
    return ODY_OK;
}

/* The integer of column `column` (0-based) of a CSV line, or of `"key": `
 * in a JSON line (column < 0); false when the line has none. */
static bool line_value(const char *line, const char *key, int column, long long *out)
{
    const char *p = line;
    if (column >= 0) {
        for (int c = 0; c < column && p; c++)
            p = (p = strchr(p, ',')) ? p + 1 : NULL;
    } else {
        char pattern[48];
        snprintf(pattern, sizeof pattern, "\"%s\": ", key);
        p = strstr(line, pattern);
        p = p ? p + strlen(pattern) : NULL;
    }
    char *end = NULL;
    if (!p)
        return false;
    *out = strtoll(p, &end, 10);
    return end != p;
}

/* Keep path's lines (after `header` lines) until key's value exceeds max
 * or a line is incomplete. */
static ody_status keep_until(ody_ctx *ctx, const char *path, int header, const char *key,
                             int column, int64_t max)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    char line[4096];
    long keep = 0;
    long long v;
    for (int n = 0; fgets(line, sizeof line, in); n++) {
        if (!strchr(line, '\n')) /* a line cut short by a crash (or too long) */
            break;
        if (n >= header && line_value(line, key, column, &v) && v > max)
            break;
        keep = ftell(in);
    }
    fclose(in);
    if (truncate(path, keep) != 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: cannot truncate: %s", path, strerror(errno));
    return ODY_OK;
}

ody_status ody_metrics_log_truncate_after(ody_ctx *ctx, ody_metrics_log *log, const char *key,
                                          int64_t max)
{
    fflush(log->jsonl);
    ody_status st = keep_until(ctx, log->path, 0, key, -1, max);
    fseek(log->jsonl, 0, SEEK_END);
    if (st == ODY_OK && log->csv && log->csv_has_header) {
        int column = -1;
        for (int c = 0; c < log->ncolumns && column < 0; c++)
            if (strcmp(log->columns[c], key) == 0)
                column = c;
        fflush(log->csv);
        if (column >= 0)
            st = keep_until(ctx, log->csv_path, 1, key, column, max);
        fseek(log->csv, 0, SEEK_END);
    }
    return st;
}

ody_status ody_metrics_log_truncate(ody_ctx *ctx, ody_metrics_log *log, int64_t records)
{
    fflush(log->jsonl);
    ody_status st = keep_lines(ctx, log->path, records);
    fseek(log->jsonl, 0, SEEK_END);
    if (st == ODY_OK && log->csv) {
        fflush(log->csv);
        st = keep_lines(ctx, log->csv_path, records + (log->csv_has_header ? 1 : 0));
        fseek(log->csv, 0, SEEK_END);
    }
    return st;
}

/*
 * The gnuplot script of the plot. The CSV, the PNG and the run directory
 * come in as ARG1, ARG2 and ARG3 (gnuplot -c), never pasted into the text,
 * so an experiment name with a quote or a newline cannot break it; the
 * title is noenhanced, so '_' and '^' in it stay as they are. %ld: the x
 * tick step; %s: an x range for a run of one epoch, or nothing.
 */
static const char plot_script[] =
    "set terminal pngcairo size 1200,480 font ',11'\n"
    "set output ARG2\n"
    "set datafile separator ','\n"
    "set datafile columnheaders\n"
    "set grid\n"
    "set key top right\n"
    "set xlabel 'epoch'\n"
    "set xtics %ld\n"
    "%s"
    "set multiplot layout 1,2 title 'odyssey-dist: '.ARG3 noenhanced\n"
    "set ylabel 'loss (mean per sample)'\n"
    "plot ARG1 using 'epoch':'train_loss' with linespoints title 'train', \\\n"
    "     '' using 'epoch':'val_loss' with linespoints title 'validation'\n"
    "set ylabel 'accuracy (%%)'\n"
    "set key bottom right\n"
    "plot ARG1 using 'epoch':(100*column('train_accuracy')) with linespoints title 'train', \\\n"
    "     '' using 'epoch':(100*column('val_accuracy')) with linespoints title 'validation'\n"
    "unset multiplot\n";

/* Lines of a file (0 if it cannot be read). */
static long count_lines(const char *path)
{
    FILE *in = fopen(path, "r");
    long lines = 0;
    for (int c; in && (c = fgetc(in)) != EOF;)
        lines += (c == '\n');
    if (in)
        fclose(in);
    return lines;
}

/*
 * Run `gnuplot -c /dev/stdin ARGS...` with the script as its stdin (a
 * memfd: no pipe to break, no temporary file), its chatter to /dev/null;
 * no shell is involved. Returns its wait status, or -1 with errno set.
 */
static int run_gnuplot(const char *script, char *const argv[])
{
    int fd = memfd_create("odyssey-dist plot", MFD_CLOEXEC);
    size_t len = strlen(script);
    if (fd < 0)
        return -1;
    if (write(fd, script, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno ? errno : EIO;
        close(fd);
        errno = e;
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fd, STDIN_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fd);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

ody_status ody_metrics_plot(ody_ctx *ctx, const char *dir)
{
    char csv[1100], png[1100];
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(png, sizeof png, "%s/metrics.png", dir);
    if (access(csv, R_OK) != 0)
        return ody_fail(ctx, ODY_ERR_IO, "%s: no metrics to plot", csv);
    /* Whole epochs on the x axis, at most about 10 ticks. */
    long rows = count_lines(csv);
    long tick = rows > 11 ? (rows - 1 + 9) / 10 : 1;
    char script[sizeof plot_script + 64];
    snprintf(script, sizeof script, plot_script, tick,
             rows <= 2 ? "set xrange [0.5:1.5]\n" : "");
    char *argv[] = {"gnuplot", "-c", "/dev/stdin", csv, png, (char *)dir, NULL};
    int status = run_gnuplot(script, argv);
    if (status < 0)
        return ody_fail(ctx, ODY_ERR_IO,
                        "cannot run gnuplot: %s: is gnuplot installed (apt-get install "
                        "gnuplot-nox)?",
                        strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return ody_fail(ctx, ODY_ERR_IO, "gnuplot failed (%s %d) plotting %s",
                        WIFEXITED(status) ? "exit" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), csv);
    return ODY_OK;
}

void ody_metrics_log_close(ody_metrics_log *log)
{
    if (!log)
        return;
    if (log->csv)
        fclose(log->csv);
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
