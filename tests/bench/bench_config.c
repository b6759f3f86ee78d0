/*
 * bench_config CONFIG [--steps N] [--warmup W] [--runs R] [--breakdown-steps K]
 *              [--breakdown-batch B] [--peak-gflops P] [--label NAME] [section.key=value ...]
 *
 * Training throughput of any config (issue 21), through the program's own
 * path: the config is resolved as odyssey-dist resolves it (a path or
 * "model/name"; the overrides after it, applied in order, the last one
 * given wins), the trainer is created and run for W + N optimizer steps,
 * and a callback times the N steps after the first W (so setup, the first
 * epoch's start and the warm-up are outside the figure). Run it under
 * mpirun for several ranks; rank 0 prints. It sets, before the caller's
 * overrides (which may change them): no validation, no checkpoints,
 * logging at warn with no progress line, CSV or plot, one BLAS thread per
 * rank, a run directory in a temporary directory (removed at the end),
 * and epochs enough for the steps; after them training.max_steps = W + N.
 *
 * Prints the model's FLOPs per image (the multiply-adds of its conv2d and
 * linear layers, x2; backward is twice forward but for the first layer
 * with parameters, which computes no input gradient), then one line per
 * run and
 *   RESULT bench_config name=NAME images_per_sec=X gflops=Y ... (median of R runs)
 *
 * Then, with K > 0 (one rank only), a per-layer breakdown: K more steps of
 * the trained model on its training set, each as the step makes it on one
 * rank (zero_grad; forward, loss and backward of each chunk of B rows, B =
 * distributed.chunk_size in deterministic mode, else the rank's batch; the
 * optimizer), with the model's per-step profile on: every step of layers
 * (a fused step as one row) with its forward and backward microseconds
 * per training step, its FLOPs and GFLOP/s, and its share of P, one
 * core's fp32 FMA peak (default: measured before the breakdown, the FMA
 * rate of the widest vectors the CPU has, fma_rate.h: 115 GFLOP/s on
 * 2026-12-07's Zen 4, ~200 on the Xeon before it; 200 where it cannot be
 * measured). The exact sum of deterministic mode and data loading are not
 * in it.
 *
 * A speed figure is never a failure: the exit status is 0 unless
 * something breaks (a bad config exits 2).
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "fma_rate.h"
#include "odyssey/io.h"
#include "odyssey/train.h"
#include "train/train_internal.h"

#define MAX_OVERRIDES 64
#define MAX_RUNS 64
#define OVERRIDE_LEN 600

typedef struct {
    const char *config, *label;
    int steps, warmup, runs, breakdown_steps, breakdown_batch;
    double peak_gflops;
    int noverrides;
    char *overrides[MAX_OVERRIDES];
} bench_options;

static void usage(void)
{
    fprintf(stderr, "usage: bench_config CONFIG [--steps N] [--warmup W] [--runs R] [--breakdown-steps K]\n"
                    "                    [--breakdown-batch B] [--peak-gflops P] [--label NAME] "
                    "[section.key=value ...]\n");
}

/* The int option argv[i] names, or NULL. */
static int *int_option(bench_options *o, const char *arg)
{
    return strcmp(arg, "--steps") == 0             ? &o->steps
           : strcmp(arg, "--warmup") == 0          ? &o->warmup
           : strcmp(arg, "--runs") == 0            ? &o->runs
           : strcmp(arg, "--breakdown-steps") == 0 ? &o->breakdown_steps
           : strcmp(arg, "--breakdown-batch") == 0 ? &o->breakdown_batch
                                                   : NULL;
}

static int parse_args(int argc, char **argv, bench_options *o)
{
    *o = (bench_options){.steps = 100, .warmup = 10, .runs = 1, .peak_gflops = 0.0 /* measured */};
    for (int i = 1; i < argc; i++) {
        int *target = int_option(o, argv[i]);
        bool has_value = i + 1 < argc;
        if (target && has_value && atoi(argv[i + 1]) >= 0) {
            *target = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--peak-gflops") == 0 && has_value && atof(argv[i + 1]) > 0) {
            o->peak_gflops = atof(argv[++i]);
        } else if (strcmp(argv[i], "--label") == 0 && has_value) {
            o->label = argv[++i];
        } else if (argv[i][0] != '-' && !o->config) {
            o->config = argv[i];
        } else if (argv[i][0] != '-' && strchr(argv[i], '=') && o->noverrides < MAX_OVERRIDES - 16) {
            o->overrides[o->noverrides++] = argv[i];
        } else {
            fprintf(stderr, "bench_config: bad argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (!o->config) {
        usage();
        return 2;
    }
    o->steps = o->steps > 0 ? o->steps : 1;
    o->runs = o->runs > 0 ? (o->runs < MAX_RUNS ? o->runs : MAX_RUNS) : 1;
    o->label = o->label ? o->label : o->config;
    return 0;
}

/* --------------------------------------------------------------- the config */

/*
 * The overrides of one run: the bench's settings, the caller's, then the
 * step count. Strings in buf (MAX_OVERRIDES x OVERRIDE_LEN), pointers in out.
 */
static int build_overrides(const bench_options *o, const char *dir, char (*buf)[OVERRIDE_LEN], char **out)
{
    static const char *const fixed[] = {
        "training.validate_interval=0", "training.save_checkpoints=false", "checkpoint.save_last=false",
        "checkpoint.save_best=false", "early_stopping.enabled=false", "logging.level=warn",
        "logging.progress=never", "logging.csv=false", "logging.plot=false", "logging.trace=false",
        "distributed.blas_threads=1", "training.epochs=1000000", "experiment.name=bench"};
    int n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        snprintf(buf[n++], OVERRIDE_LEN, "%s", fixed[i]);
    snprintf(buf[n++], OVERRIDE_LEN, "experiment.output_dir=\"%s\"", dir);
    for (int i = 0; i < o->noverrides; i++)
        snprintf(buf[n++], OVERRIDE_LEN, "%s", o->overrides[i]);
    snprintf(buf[n++], OVERRIDE_LEN, "training.max_steps=%d", o->warmup + o->steps);
    for (int i = 0; i < n; i++)
        out[i] = buf[i];
    return n;
}

/* ------------------------------------------------------------------- FLOPs */

/* Forward and backward FLOPs per sample of layer i (conv2d and linear only). */
static void layer_flops(const ody_model *m, int i, int first_with_params, double *fwd, double *bwd)
{
    const ody_layer *l = m->layers[i];
    double macs = 0;
    if (strcmp(l->ops->kind, "conv2d") == 0) /* weight (OC, C, KH, KW), out (OC, OH, OW) */
        macs = (double)ody_shape_numel(&l->params[0].shape) * l->out_shape.dims[1] * l->out_shape.dims[2];
    else if (strcmp(l->ops->kind, "linear") == 0) /* weight (OUT, IN) */
        macs = (double)ody_shape_numel(&l->params[0].shape);
    *fwd = 2 * macs;
    *bwd = (i == first_with_params ? 2 : 4) * macs; /* weight gradient, then input gradient */
}

static int first_with_params(const ody_model *m)
{
    int first = 0;
    while (first < m->nlayers && m->layers[first]->nparams == 0)
        first++;
    return first;
}

/* FLOPs per sample of the step starting at layer i (its span of layers). */
static void step_flops(const ody_model *m, int i, double *fwd, double *bwd)
{
    int first = first_with_params(m);
    *fwd = *bwd = 0;
    for (int j = i; j < i + (m->span[i] > 0 ? m->span[i] : 1); j++) {
        double f, b;
        layer_flops(m, j, first, &f, &b);
        *fwd += f;
        *bwd += b;
    }
}

static double model_flops(const ody_model *m, double *fwd_out)
{
    double fwd = 0, bwd = 0;
    for (int i = 0; i < m->nlayers; i++) {
        double f, b;
        layer_flops(m, i, first_with_params(m), &f, &b);
        fwd += f;
        bwd += b;
    }
    *fwd_out = fwd;
    return fwd + bwd;
}

/* --------------------------------------------------------------- the timer */

/* A callback that times the optimizer steps (warmup, warmup + steps]. */
typedef struct {
    int64_t warmup, steps;
    double t0, t1;
    int64_t samples0, samples1;
} step_timer;

static void timer_mark(step_timer *t, const ody_loop_state *s)
{
    if (s->global_step == t->warmup) {
        t->t0 = ody_now();
        t->samples0 = s->samples_seen;
    }
    if (s->global_step == t->warmup + t->steps) {
        t->t1 = ody_now();
        t->samples1 = s->samples_seen;
    }
}

static ody_status timer_train_begin(void *self, ody_training_loop *loop)
{
    timer_mark(self, ody_training_loop_state(loop));
    return ODY_OK;
}

static ody_status timer_batch_end(void *self, ody_training_loop *loop)
{
    timer_mark(self, ody_training_loop_state(loop));
    return ODY_OK;
}

static const ody_callback_ops timer_ops = {
    .name = "bench_timer", .on_train_begin = timer_train_begin, .on_batch_end = timer_batch_end,
    .destroy = free};

/* ---------------------------------------------------------------- breakdown */

typedef struct {
    double loss, optimizer, zero_grad;
} other_times;

typedef struct {
    float *x, *dlogits, *losses;
    int32_t *y;
    int64_t *ids;
} breakdown_buffers;

/* One training step of `rows` rows in chunks of `chunk`, with the model's profile as set. */
static ody_status timed_step(ody_ctx *ctx, ody_training_loop *loop, const breakdown_buffers *b, int64_t first_id,
                             int rows, int chunk, other_times *t)
{
    ody_model *m = loop->model;
    ody_dataset *ds = loop->data.train_set;
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    for (int i = 0; i < rows; i++)
        b->ids[i] = (first_id + i) % ds->n;
    if (ody_dataset_read(ds, ctx, b->ids, rows, b->x, b->y) != ODY_OK)
        return ODY_ERR_IO;
    double t0 = ody_now();
    ody_model_zero_grad(m);
    t->zero_grad += ody_now() - t0;
    for (int at = 0; at < rows; at += chunk) {
        int n = rows - at < chunk ? rows - at : chunk;
        const float *x = b->x + (size_t)at * numel;
        loop->step.fwd.sample_ids = b->ids + at;
        const float *logits = ody_model_forward(m, &loop->step.fwd, n, x);
        t0 = ody_now();
        double eps = loop->cfg->training.label_smoothing;
        ody_loss_forward(loop->loss_kind, eps, n, m->num_classes, logits, b->y + at, b->losses, NULL);
        ody_loss_backward(loop->loss_kind, eps, n, m->num_classes, logits, b->y + at, 1.0f / rows,
                          b->dlogits);
        t->loss += ody_now() - t0;
        ody_model_backward(m, &loop->step.fwd, n, x, b->dlogits, NULL, NULL);
    }
    t0 = ody_now();
    ody_optimizer_step(loop->optimizer, m->params.data, m->grads.data, 1e-4);
    t->optimizer += ody_now() - t0;
    return ODY_OK;
}

/* A step's name: its layers, "conv1+relu1+pool1" when fused. */
static void step_name(const ody_model *m, int i, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int j = i; j < i + m->span[i] && used < len; j++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", j > i ? "+" : "", m->layers[j]->name);
}

static void print_layer_row(const char *name, const char *kernel, const double sec[2], const double flops[2],
                            double steps, double rows, double total, double peak)
{
    double us = 1e6 / steps, gf[2];
    for (int k = 0; k < 2; k++)
        gf[k] = sec[k] > 0 ? flops[k] * rows * steps / sec[k] / 1e9 : 0;
    printf("  %-28s %9.1f %9.1f %6.1f%% %8.2f %8.2f", name, sec[0] * us, sec[1] * us,
           100 * (sec[0] + sec[1]) / total, flops[0] / 1e6, flops[1] / 1e6);
    if (flops[0] + flops[1] > 0)
        printf(" %7.1f %7.1f %5.1f%%", gf[0], gf[1],
               100 * (flops[0] + flops[1]) * rows * steps / (sec[0] + sec[1]) / 1e9 / peak);
    else
        printf(" %7s %7s %6s", "-", "-", "-");
    printf("  %s\n", kernel);
}

static void print_breakdown(const ody_model *m, const other_times *t, int steps, int rows, int chunk,
                            double peak)
{
    double total = t->loss + t->optimizer + t->zero_grad, flops_fwd, flops = model_flops(m, &flops_fwd);
    for (int i = 0; i < m->nlayers; i++)
        total += m->step_seconds[i][0] + m->step_seconds[i][1];
    printf("per-layer breakdown: %d steps of %d rows in chunks of %d (microseconds per step; MFLOP per "
           "image; GFLOP/s; share of %.0f GFLOP/s):\n",
           steps, rows, chunk, peak);
    printf("  %-28s %9s %9s %7s %8s %8s %7s %7s %6s  %s\n", "layers", "fwd us", "bwd us", "share", "fwd MF",
           "bwd MF", "fwd GF", "bwd GF", "peak", "kernel");
    char name[160];
    for (int i = 0; i < m->nlayers; i += m->span[i]) {
        step_name(m, i, name, sizeof name);
        double f[2];
        step_flops(m, i, &f[0], &f[1]);
        const ody_layer *l = m->layers[i];
        print_layer_row(name, l->ops->describe ? l->ops->describe(l) : "", m->step_seconds[i], f, steps, rows,
                        total, peak);
    }
    const double none[2] = {0, 0};
    print_layer_row("loss", "", (double[2]){t->loss, 0}, none, steps, rows, total, peak);
    print_layer_row("zero_grad", "", (double[2]){t->zero_grad, 0}, none, steps, rows, total, peak);
    print_layer_row("optimizer", "", (double[2]){t->optimizer, 0}, none, steps, rows, total, peak);
    double gflops = flops * rows * steps / total / 1e9;
    printf("  total %.1f us/step = %.0f images/s without data loading or the gradient sum; %.2f MFLOP "
           "per image: %.1f GFLOP/s, %.1f%% of %.0f\n",
           total * 1e6 / steps, rows * steps / total, flops / 1e6, gflops, 100 * gflops / peak, peak);
}

/* Time the trained model's layers over `steps` steps of its training set. */
static int breakdown(ody_ctx *ctx, ody_trainer *tr, const bench_options *o)
{
    ody_training_loop *loop = ody_trainer_loop(tr);
    const ody_config *cfg = loop->cfg;
    int rows = (int)loop->global_batch;
    int chunk = o->breakdown_batch > 0 ? o->breakdown_batch
                : cfg->distributed.deterministic ? (int)cfg->distributed.chunk_size
                                                  : rows;
    chunk = chunk < rows ? chunk : rows;
    ody_model *m = loop->model;
    size_t numel = (size_t)ody_shape_numel(&loop->data.train_set->sample_shape);
    breakdown_buffers b = {malloc((size_t)rows * numel * sizeof *b.x),
                           malloc((size_t)rows * m->num_classes * sizeof *b.dlogits),
                           malloc((size_t)rows * sizeof *b.losses), malloc((size_t)rows * sizeof *b.y),
                           malloc((size_t)rows * sizeof *b.ids)};
    other_times t = {0}, warm = {0};
    ody_status st = b.x && b.dlogits && b.losses && b.y && b.ids ? ODY_OK : ODY_ERR_NOMEM;
    if (st == ODY_OK && m->max_batch < chunk)
        st = ody_model_prepare(ctx, m, chunk);
    loop->step.fwd = (ody_forward_info){.training = true, .seed = 1};
    memset(m->step_seconds, 0, sizeof m->step_seconds);
    for (int s = -3; s < o->breakdown_steps && st == ODY_OK; s++) { /* 3 warm-up steps */
        m->profile = s >= 0;
        st = timed_step(ctx, loop, &b, (int64_t)(s + 3) * rows, rows, chunk, s < 0 ? &warm : &t);
    }
    m->profile = false;
    double peak = o->peak_gflops;
    if (st == ODY_OK && peak <= 0.0) { /* 3 x 20 ms */
        peak = fma_rate_widest(3, 5000000);
        printf("peak: %.1f GFLOP/s, this core's FMA rate at its widest vectors, measured (--peak-gflops to set)\n",
               peak);
        if (peak <= 0.0) {
            peak = 200.0;
            printf("peak: no AVX2 or AVX-512 FMA to measure; taking 200 GFLOP/s\n");
        }
    }
    if (st == ODY_OK)
        print_breakdown(m, &t, o->breakdown_steps, rows, chunk, peak);
    else
        fprintf(stderr, "bench_config: breakdown: %s\n", ody_ctx_error(ctx));
    free(b.x), free(b.dlogits), free(b.losses), free(b.y), free(b.ids);
    return st == ODY_OK ? 0 : 1;
}

/* ---------------------------------------------------------------- the runs */

/*
 * A trainer for the run from cfg (which the trainer keeps a pointer to), with
 * the timer added; *timer stays valid until the trainer is destroyed.
 */
static ody_status create_run(ody_ctx *ctx, const bench_options *o, const char *dir, ody_config *cfg,
                             ody_trainer **tr, step_timer **timer)
{
    static char buf[MAX_OVERRIDES][OVERRIDE_LEN];
    char *overrides[MAX_OVERRIDES];
    int n = build_overrides(o, dir, buf, overrides);
    ody_config_defaults(cfg);
    ody_status st = ody_config_resolve(ctx, o->config, n, overrides, cfg);
    if (st == ODY_OK)
        st = ody_trainer_create(ctx, cfg, NULL, tr);
    if (st != ODY_OK)
        return st;
    *timer = calloc(1, sizeof **timer);
    if (!*timer)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the step timer");
    **timer = (step_timer){.warmup = o->warmup, .steps = o->steps};
    return ody_training_loop_add_callback(ody_trainer_loop(*tr), &timer_ops, *timer);
}

static void print_model(const ody_ctx *ctx, ody_training_loop *loop)
{
    const ody_model *m = ody_training_loop_model(loop);
    double fwd, total = model_flops(m, &fwd);
    if (ctx->rank == 0)
        printf("model %s: %zu parameters; %.2f MFLOP per image forward, %.2f backward, %.2f in all\n", m->name,
               m->nparams, fwd / 1e6, (total - fwd) / 1e6, total / 1e6);
}

/*
 * One trainer run in dir, configured in *cfg; *rate gets this rank's
 * images/s over the timed steps. With keep, the trainer is handed back
 * rather than destroyed (cfg must outlive it).
 */
static int one_run(ody_ctx *ctx, const bench_options *o, const char *dir, int r, ody_config *cfg, double *rate,
                   ody_trainer **keep)
{
    ody_trainer *tr = NULL;
    step_timer *timer = NULL;
    ody_status st = create_run(ctx, o, dir, cfg, &tr, &timer);
    if (st == ODY_OK && r == 0)
        print_model(ctx, ody_trainer_loop(tr));
    if (st == ODY_OK)
        st = ody_trainer_run(tr);
    if (st == ODY_OK && timer->t1 <= timer->t0)
        st = ody_fail(ctx, ODY_ERR_INTERNAL, "the run ended before step %d", o->warmup + o->steps);
    if (st != ODY_OK) {
        if (ctx->rank == 0)
            fprintf(stderr, "bench_config: %s\n", ody_ctx_error(ctx));
        ody_trainer_destroy(tr);
        return st == ODY_ERR_CONFIG || st == ODY_ERR_USAGE ? 2 : 1;
    }
    *rate = (double)(timer->samples1 - timer->samples0) / (timer->t1 - timer->t0);
    if (ctx->rank == 0) {
        printf("run %d: %.1f images/s (steps %d..%d, global batch %lld, %d rank(s))\n", r + 1, *rate,
               o->warmup + 1, o->warmup + o->steps, (long long)ody_trainer_loop(tr)->global_batch, ctx->size);
        fflush(stdout);
    }
    if (keep)
        *keep = tr;
    else
        ody_trainer_destroy(tr);
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_result(const ody_ctx *ctx, const bench_options *o, ody_trainer *tr, double *rates)
{
    qsort(rates, (size_t)o->runs, sizeof rates[0], compare_doubles);
    double median = rates[o->runs / 2], fwd, flops = model_flops(ody_trainer_loop(tr)->model, &fwd);
    if (ctx->rank == 0)
        printf("RESULT bench_config name=%s images_per_sec=%.1f gflops=%.2f mflop_per_image=%.2f ranks=%d "
               "steps=%d warmup=%d (median of %d runs)\n",
               o->label, median, median * flops / 1e9, flops / 1e6, ctx->size, o->steps, o->warmup, o->runs);
}

static int run_all(ody_ctx *ctx, const bench_options *o, const char *dir)
{
    double rates[MAX_RUNS];
    int status = 0;
    ody_trainer *last = NULL;
    ody_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "bench_config: out of memory\n");
        return 1;
    }
    for (int r = 0; r < o->runs && status == 0; r++)
        status = one_run(ctx, o, dir, r, cfg, &rates[r], r == o->runs - 1 ? &last : NULL);
    if (status == 0)
        print_result(ctx, o, last, rates);
    if (status == 0 && o->breakdown_steps > 0 && ctx->size == 1)
        status = breakdown(ctx, last, o);
    else if (status == 0 && o->breakdown_steps > 0 && ctx->rank == 0)
        printf("bench_config: the breakdown runs on one rank only: skipped\n");
    ody_trainer_destroy(last);
    free(cfg);
    return status;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* A scratch directory made by rank 0 and named to every rank (dir holds 64 chars). */
static int make_dir(const ody_ctx *ctx, char *dir)
{
    int ok = 1;
    if (ctx->rank == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, 64, "%s/bench_config.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
        ok = mkdtemp(dir) != NULL;
        if (!ok)
            perror("bench_config: mkdtemp");
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, ctx->comm);
    MPI_Bcast(dir, 64, MPI_CHAR, 0, ctx->comm);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bench_options o;
    int status = parse_args(argc, argv, &o);
    ody_ctx *ctx = NULL;
    if (status == 0 && ody_ctx_create(&ctx, MPI_COMM_WORLD) != ODY_OK)
        status = 1;
    if (ctx) /* what the program does for logging.level: warn */
        ctx->log_level = ODY_LOG_WARN;
    char dir[64] = "";
    if (status == 0)
        status = make_dir(ctx, dir);
    if (status == 0) {
        status = run_all(ctx, &o, dir);
        MPI_Barrier(ctx->comm);
        if (ctx->rank == 0)
            nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
    ody_ctx_destroy(ctx);
    MPI_Finalize();
    return status;
}
