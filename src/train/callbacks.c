/* train: built-in callbacks: the console (live line or log lines) and the
 * metrics log (metrics.jsonl, metrics.csv, metrics.png per epoch;
 * steps.jsonl, steps.csv every training.log_interval steps). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* ------------------------------------------------------------- console */

typedef struct {
    ody_progress progress;    /* the live line, when rank 0 has a terminal */
    bool live;                /* the same on every rank: rank 0 decided */
} console_state;

/* "1m05s" or "12s". */
static void format_duration(double seconds, char *out, size_t len)
{
    long s = seconds > 0 && seconds < 1e8 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(out, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, len, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, len, "%lds", s);
}

/* The live line: rank 0's own view, no communication. Loss and accuracy
 * are rank 0's running means over the epoch so far (its share of the
 * samples); the epoch's line that follows gives every rank's. */
static void draw_live(console_state *c, ody_training_loop *loop)
{
    const ody_loop_state *s = &loop->state;
    const ody_training_metrics *m = &loop->metrics;
    int64_t done = ody_loop_update_in_epoch(loop), per_epoch = ody_loop_updates_per_epoch(loop);
    double elapsed = ody_now() - s->this_epoch.start_time;
    double rate = elapsed > 0 ? (double)s->this_epoch.samples / elapsed : 0;
    int64_t left = (per_epoch - done) + per_epoch * (loop->cfg->training.epochs - s->epoch - 1);
    double count = m->epoch_count > 0 ? (double)m->epoch_count : NAN;
    char eta[32];
    format_duration(done > 0 ? elapsed / (double)done * (double)left : 0, eta, sizeof eta);
    ody_progress_draw(&c->progress, done == per_epoch,
                      "epoch %lld/%lld step %lld/%lld | loss %.4f acc %.2f%% | %.0f img/s | "
                      "lr %.3g | ETA %s",
                      (long long)s->epoch + 1, (long long)loop->cfg->training.epochs,
                      (long long)done, (long long)per_epoch,
                      ody_loss_from_fixed(m->epoch_loss_fixed) / count,
                      100.0 * (double)m->epoch_correct / count, rate, s->lr, eta);
}

/* The interval the loop has just reduced (every log_interval steps), as
 * one log line. */
static void log_interval(const ody_training_loop *loop)
{
    const ody_step_record *r = &loop->interval.last;
    if (r->samples > 0)
        ody_log(loop->ctx, ODY_LOG_INFO,
                "epoch %lld/%lld step %lld/%lld loss %.4f acc %.2f%% lr %.4g %.0f img/s",
                (long long)r->epoch + 1, (long long)loop->cfg->training.epochs,
                (long long)r->epoch_step, (long long)ody_loop_updates_per_epoch(loop), r->loss,
                100.0 * r->accuracy, r->lr, r->samples_per_sec);
}

static ody_status console_batch_end(void *self, ody_training_loop *loop)
{
    console_state *c = self;
    if (c->live && loop->ctx->rank == 0)
        draw_live(c, loop);
    else if (!c->live && loop->interval.due)
        log_interval(loop);
    return ODY_OK;
}

static ody_status console_epoch_end(void *self, ody_training_loop *loop)
{
    console_state *c = self;
    const ody_loop_state *s = &loop->state;
    const ody_training_metrics *m = &loop->metrics;
    const double *t = s->this_epoch.times_mean.seconds;
    char val[96] = "", skipped[48] = "";
    if (s->validated)
        snprintf(val, sizeof val, " val_loss %.4f val_acc %.2f%%", m->val_loss,
                 100.0 * m->val_accuracy);
    if (s->this_epoch.skipped > 0)
        snprintf(skipped, sizeof skipped, " skipped %lld step(s),", (long long)s->this_epoch.skipped);
    ody_progress_clear(&c->progress);
    ody_log(loop->ctx, ODY_LOG_INFO,
            "epoch %lld/%lld done: train_loss %.4f train_acc %.2f%%%s |%s %.0f img/s, %.1f s "
            "(data %.2f fwd %.2f bwd %.2f comm %.2f opt %.2f s, mean of %d ranks)",
            (long long)s->epoch + 1, (long long)loop->cfg->training.epochs, m->train_loss,
            100.0 * m->train_accuracy, val, skipped,
            s->this_epoch.train_seconds > 0 ? s->this_epoch.samples / s->this_epoch.train_seconds : 0.0,
            s->this_epoch.train_seconds, t[ODY_PHASE_DATA], t[ODY_PHASE_FORWARD],
            t[ODY_PHASE_BACKWARD], t[ODY_PHASE_COMM_WAIT], t[ODY_PHASE_OPTIMIZER],
            loop->ctx->size);
    return ODY_OK;
}

static ody_status console_train_begin(void *self, ody_training_loop *loop)
{
    (void)self;
    size_t now = 0, peak = 0;
    ody_rss(&now, &peak);
    loop->state.rss_at_start = now;
    loop->state.alloc_at_start = loop->ctx->bytes_allocated;
    return ODY_OK;
}

/* Memory per rank (the worst rank): peak resident set, what the library
 * allocated (parameters, gradients, optimizer state, activations, data),
 * and what it allocated after training started (the steps allocate
 * nothing, so this stays 0). */
static ody_status log_memory(ody_training_loop *loop)
{
    size_t now = 0, peak = 0;
    ody_rss(&now, &peak);
    const ody_ctx *ctx = loop->ctx;
    double local[3] = {(double)peak, (double)ctx->bytes_peak,
                       (double)(ctx->bytes_peak > loop->state.alloc_at_start
                                    ? ctx->bytes_peak - loop->state.alloc_at_start
                                    : 0)};
    double mean[3], max[3];
    ody_status st = ody_comm_mean_max(loop->ctx, local, mean, max, 3);
    if (st == ODY_OK)
        ody_log(ctx, ODY_LOG_INFO,
                "memory per rank (max over %d): peak RSS %.1f MiB; library allocations %.1f MiB "
                "(parameters, gradients, optimizer state, activations, data); %.0f bytes "
                "allocated after training started",
                ctx->size, max[0] / 1048576.0, max[1] / 1048576.0, max[2]);
    return st;
}

static ody_status console_train_end(void *self, ody_training_loop *loop)
{
    console_state *c = self;
    ody_progress_clear(&c->progress);
    if (loop->ctx->rank == 0 && loop->ctx->log_level >= ODY_LOG_INFO)
        ody_training_metrics_print_summary(&loop->metrics, loop->ctx->log_stream);
    ody_strategy *strategy = loop->strategy;
    ody_status st = strategy->ops->report ? strategy->ops->report(strategy) : ODY_OK;
    return st == ODY_OK ? log_memory(loop) : st;
}

static void console_destroy(void *self)
{
    console_state *c = self;
    ody_progress_clear(&c->progress);
    free(c);
}

static const ody_callback_ops console_ops = {
    .name = "console",
    .on_train_begin = console_train_begin,
    .on_batch_end = console_batch_end,
    .on_epoch_end = console_epoch_end,
    .on_train_end = console_train_end,
    .destroy = console_destroy,
};

/* Collective: rank 0 decides between the live line and log lines (first,
 * before anything that can fail on one rank alone). */
ody_status ody_callback_console_add(ody_training_loop *loop)
{
    ody_progress progress;
    ody_progress_init(&progress, loop->ctx, loop->ctx->log_stream, loop->cfg->logging.progress);
    int live = loop->ctx->rank == 0 && progress.active;
    ody_wait_begin(loop->ctx, ODY_WAIT_BROADCAST);
    MPI_Bcast(&live, 1, MPI_INT, 0, loop->ctx->comm);
    ody_wait_end(loop->ctx);
    console_state *c = calloc(1, sizeof *c);
    if (!c)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the console log");
    c->progress = progress;
    c->live = live;
    return ody_training_loop_add_callback(loop, &console_ops, c);
}

/* ---------------------------------------------------------- metrics log */

typedef struct {
    ody_ctx *ctx;
    char run_dir[1024];
    ody_metrics_log *log;   /* rank 0 only */
    ody_metrics_log *steps; /* steps.jsonl: rank 0 only */
} metrics_state;

/* One steps.jsonl record per interval the loop reduced (every
 * training.log_interval optimizer steps). No allocation: a record on the
 * stack, written by stdio into its buffer. */
static ody_status metrics_batch_end(void *self, ody_training_loop *loop)
{
    metrics_state *ms = self;
    if (!ms->steps || !loop->interval.due)
        return ODY_OK;
    const ody_step_record *r = &loop->interval.last;
    ody_metric rec[8 + ODY_PHASE_COUNT];
    int n = 0;
    rec[n++] = (ody_metric){"step", (double)r->step, true, false};
    rec[n++] = (ody_metric){"epoch", (double)r->epoch + 1, true, false};
    rec[n++] = (ody_metric){"loss", r->loss, false, false};
    rec[n++] = (ody_metric){"accuracy", r->accuracy, false, false};
    rec[n++] = (ody_metric){"lr", r->lr, false, false};
    rec[n++] = (ody_metric){"grad_norm", r->grad_norm, false, false};
    rec[n++] = (ody_metric){"samples_per_sec", r->samples_per_sec, false, false};
    rec[n++] = (ody_metric){"elapsed_seconds", r->elapsed, false, false};
    for (int p = 0; p < ODY_PHASE_COUNT; p++)
        rec[n++] = (ody_metric){ody_phase_key((ody_phase)p), r->times_mean.seconds[p], false, false};
    return ody_metrics_log_write(ms->ctx, ms->steps, rec, n);
}

/* One record per epoch with the contract's keys (DESIGN.md) and more. */
static ody_status metrics_epoch_end(void *self, ody_training_loop *loop)
{
    metrics_state *ms = self;
    if (!ms->log)
        return ODY_OK;
    const ody_loop_state *s = &loop->state;
    const ody_training_metrics *m = &loop->metrics;
    double val_loss = s->validated ? m->val_loss : NAN, val_acc = s->validated ? m->val_accuracy : NAN;
    ody_metric rec[40];
    int n = 0;
    rec[n++] = (ody_metric){"epoch", (double)s->epoch + 1, true, false};
    rec[n++] = (ody_metric){"step", (double)s->global_step, true, false};
    rec[n++] = (ody_metric){"train_loss", m->train_loss, false, false};
    rec[n++] = (ody_metric){"train_accuracy", m->train_accuracy, false, false};
    rec[n++] = (ody_metric){"val_loss", val_loss, false, true};
    rec[n++] = (ody_metric){"val_accuracy", val_acc, false, true};
    rec[n++] = (ody_metric){"lr", s->lr, false, false};
    rec[n++] = (ody_metric){"samples_per_sec",
                            s->this_epoch.train_seconds > 0 ? s->this_epoch.samples / s->this_epoch.train_seconds
                                                       : 0.0,
                            false, false};
    rec[n++] = (ody_metric){"world_size", (double)loop->ctx->size, true, false};
    rec[n++] = (ody_metric){"epoch_seconds", s->this_epoch.train_seconds, false, false};
    rec[n++] = (ody_metric){"grad_norm",
                            s->this_epoch.updates ? s->this_epoch.grad_norm_sum / (double)s->this_epoch.updates : NAN,
                            false, true};
    rec[n++] = (ody_metric){"skipped_steps", (double)s->this_epoch.skipped, true, false};
    rec[n++] = (ody_metric){"loss_scale", loop->scaler.enabled ? loop->scaler.scale : NAN, false,
                            true};
    static const char *max_keys[ODY_PHASE_COUNT] = {
        "time_data_max", "time_forward_max", "time_backward_max",
        "time_comm_wait_max", "time_optimizer_max", "time_checkpoint_max"};
    for (int p = 0; p < ODY_PHASE_COUNT; p++) {
        rec[n++] = (ody_metric){ody_phase_key((ody_phase)p), s->this_epoch.times_mean.seconds[p], false, false};
        rec[n++] = (ody_metric){max_keys[p], s->this_epoch.times_max.seconds[p], false, false};
    }
    uint64_t bytes = loop->strategy->ops->bytes_sent(loop->strategy);
    rec[n++] = (ody_metric){"comm_bytes", (double)bytes, true, false};
    return ody_metrics_log_write(ms->ctx, ms->log, rec, n);
}

/* The plot is a convenience: failing to draw it is a warning, not an error. */
static ody_status metrics_train_end(void *self, ody_training_loop *loop)
{
    metrics_state *ms = self;
    if (!ms->log || !loop->cfg->logging.plot || !loop->cfg->logging.csv)
        return ODY_OK;
    ody_status st = ody_metrics_plot(ms->ctx, ms->run_dir);
    if (st == ODY_OK)
        ody_log(ms->ctx, ODY_LOG_INFO, "plot of loss and accuracy: %s/metrics.png", ms->run_dir);
    else
        ody_log(ms->ctx, ODY_LOG_WARN, "no plot: %s", ody_ctx_error(ms->ctx));
    return ODY_OK;
}

/* The log has one record per finished epoch: the count is checkpointed, and
 * a resumed run cuts the file back to it (a run that died after its last
 * checkpoint may have logged epochs that will now be trained again). */
static int metrics_save_state(void *self, const ody_training_loop *loop, double *v)
{
    (void)self;
    v[0] = (double)loop->metrics.history_len;
    return 1;
}

static void metrics_load_state(void *self, ody_training_loop *loop, const double *v, int n)
{
    metrics_state *ms = self;
    ody_status st = ODY_OK;
    if (ms->log && n >= 1)
        st = ody_metrics_log_truncate(loop->ctx, ms->log, (int64_t)v[0]);
    /* The steps after the checkpoint's are trained again: their rows go. */
    if (st == ODY_OK && ms->steps)
        st = ody_metrics_log_truncate_after(loop->ctx, ms->steps, "step", loop->state.global_step);
    if (st != ODY_OK)
        ody_log(loop->ctx, ODY_LOG_WARN, "%s", ody_ctx_error(loop->ctx));
}

static void metrics_destroy(void *self)
{
    metrics_state *ms = self;
    ody_metrics_log_close(ms->log);
    ody_metrics_log_close(ms->steps);
    free(ms);
}

static const ody_callback_ops metrics_ops = {
    .name = "metrics_log",
    .on_batch_end = metrics_batch_end,
    .on_epoch_end = metrics_epoch_end,
    .on_train_end = metrics_train_end,
    .save_state = metrics_save_state,
    .load_state = metrics_load_state,
    .destroy = metrics_destroy,
};

ody_status ody_callback_metrics_log_add(ody_training_loop *loop, const char *run_dir, bool append)
{
    metrics_state *ms = calloc(1, sizeof *ms);
    if (!ms)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the metrics log");
    ms->ctx = loop->ctx;
    snprintf(ms->run_dir, sizeof ms->run_dir, "%s", run_dir);
    ody_status st = ODY_OK;
    if (loop->ctx->rank == 0)
        st = ody_metrics_log_open(loop->ctx, run_dir, append, &ms->log);
    if (st == ODY_OK && loop->ctx->rank == 0)
        st = ody_metrics_log_open_named(loop->ctx, run_dir, "steps", append, &ms->steps);
    if (st == ODY_OK && ms->log && loop->cfg->logging.csv)
        st = ody_metrics_log_enable_csv(loop->ctx, ms->log, append);
    if (st == ODY_OK && ms->steps && loop->cfg->logging.csv)
        st = ody_metrics_log_enable_csv(loop->ctx, ms->steps, append);
    if (st != ODY_OK) {
        metrics_destroy(ms);
        return st;
    }
    return ody_training_loop_add_callback(loop, &metrics_ops, ms);
}
