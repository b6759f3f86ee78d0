/* train: built-in callbacks: the console log and the metrics log. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* ------------------------------------------------------------- console */

typedef struct {
    int64_t loss_fixed, correct, count; /* since the last interval line */
    double since;                       /* time of the last interval line */
} console_state;

static ody_status console_epoch_begin(void *self, ody_training_loop *loop)
{
    console_state *c = self;
    memset(c, 0, sizeof *c);
    c->since = ody_now();
    (void)loop;
    return ODY_OK;
}

/* Every log_interval steps: reduce the interval's sums (a collective every
 * rank reaches at the same step) and print one line on rank 0. */
static ody_status console_batch_end(void *self, ody_training_loop *loop)
{
    console_state *c = self;
    const ody_loop_state *s = &loop->state;
    c->loss_fixed = ody_add_sat(c->loss_fixed, loop->last_step.loss_fixed);
    c->correct += loop->last_step.correct;
    c->count += loop->last_step.count;
    if (s->step_in_epoch % loop->cfg->training.log_interval != 0)
        return ODY_OK;
    int64_t v[3] = {c->loss_fixed, c->correct, c->count};
    ody_status st = ody_dist_sum_i64(loop->ctx, v, 3);
    if (st != ODY_OK)
        return st;
    double now = ody_now();
    double rate = now > c->since ? (double)v[2] / (now - c->since) : 0.0;
    if (v[2] > 0)
        ody_log(loop->ctx, ODY_LOG_INFO,
                "epoch %lld/%lld step %lld/%lld loss %.4f acc %.2f%% lr %.4g %.0f img/s",
                (long long)s->epoch + 1, (long long)loop->cfg->training.epochs,
                (long long)s->step_in_epoch, (long long)s->steps_per_epoch,
                ody_loss_from_fixed(v[0]) / (double)v[2], 100.0 * (double)v[1] / (double)v[2],
                s->lr, rate);
    c->loss_fixed = c->correct = c->count = 0;
    c->since = now;
    return ODY_OK;
}

static ody_status console_epoch_end(void *self, ody_training_loop *loop)
{
    (void)self;
    const ody_loop_state *s = &loop->state;
    const ody_training_metrics *m = &loop->metrics;
    const double *t = s->times_mean.seconds;
    char val[96] = "";
    if (s->validated)
        snprintf(val, sizeof val, " val_loss %.4f val_acc %.2f%%", m->val_loss,
                 100.0 * m->val_accuracy);
    ody_log(loop->ctx, ODY_LOG_INFO,
            "epoch %lld/%lld done: train_loss %.4f train_acc %.2f%%%s | %.0f img/s, %.1f s "
            "(data %.2f fwd %.2f bwd %.2f comm %.2f opt %.2f s, mean of %d ranks)",
            (long long)s->epoch + 1, (long long)loop->cfg->training.epochs, m->train_loss,
            100.0 * m->train_accuracy, val,
            s->epoch_train_seconds > 0 ? s->epoch_samples / s->epoch_train_seconds : 0.0,
            s->epoch_train_seconds, t[ODY_PHASE_DATA], t[ODY_PHASE_FORWARD],
            t[ODY_PHASE_BACKWARD], t[ODY_PHASE_COMM_WAIT], t[ODY_PHASE_OPTIMIZER],
            loop->ctx->size);
    return ODY_OK;
}

static ody_status console_train_end(void *self, ody_training_loop *loop)
{
    (void)self;
    if (loop->ctx->rank == 0 && loop->ctx->log_level >= ODY_LOG_INFO)
        ody_training_metrics_print_summary(&loop->metrics, loop->ctx->log_stream);
    return ODY_OK;
}

static const ody_callback_ops console_ops = {
    .name = "console",
    .on_epoch_begin = console_epoch_begin,
    .on_batch_end = console_batch_end,
    .on_epoch_end = console_epoch_end,
    .on_train_end = console_train_end,
    .destroy = free,
};

ody_status ody_callback_console_add(ody_training_loop *loop)
{
    console_state *c = calloc(1, sizeof *c);
    if (!c)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the console log");
    ody_status st = ody_training_loop_add_callback(loop, &console_ops, c);
    if (st != ODY_OK)
        free(c);
    return st;
}

/* ---------------------------------------------------------- metrics log */

typedef struct {
    ody_ctx *ctx;
    ody_metrics_log *log; /* rank 0 only */
} metrics_state;

/* One record per epoch with the contract's keys (DESIGN.md). */
static ody_status metrics_epoch_end(void *self, ody_training_loop *loop)
{
    metrics_state *ms = self;
    if (!ms->log)
        return ODY_OK;
    const ody_loop_state *s = &loop->state;
    const ody_training_metrics *m = &loop->metrics;
    ody_metric rec[32];
    int n = 0;
    rec[n++] = (ody_metric){"epoch", (double)s->epoch + 1, true};
    rec[n++] = (ody_metric){"step", (double)s->global_step, true};
    rec[n++] = (ody_metric){"train_loss", m->train_loss, false};
    rec[n++] = (ody_metric){"train_accuracy", m->train_accuracy, false};
    if (s->validated) {
        rec[n++] = (ody_metric){"val_loss", m->val_loss, false};
        rec[n++] = (ody_metric){"val_accuracy", m->val_accuracy, false};
    }
    rec[n++] = (ody_metric){"lr", s->lr, false};
    rec[n++] = (ody_metric){"samples_per_sec",
                            s->epoch_train_seconds > 0 ? s->epoch_samples / s->epoch_train_seconds
                                                       : 0.0,
                            false};
    rec[n++] = (ody_metric){"world_size", (double)loop->ctx->size, true};
    rec[n++] = (ody_metric){"epoch_seconds", s->epoch_train_seconds, false};
    static const char *max_keys[ODY_PHASE_COUNT] = {
        "time_data_max", "time_forward_max", "time_backward_max",
        "time_comm_wait_max", "time_optimizer_max", "time_checkpoint_max"};
    for (int p = 0; p < ODY_PHASE_COUNT; p++) {
        rec[n++] = (ody_metric){ody_phase_key((ody_phase)p), s->times_mean.seconds[p], false};
        rec[n++] = (ody_metric){max_keys[p], s->times_max.seconds[p], false};
    }
    return ody_metrics_log_write(ms->ctx, ms->log, rec, n);
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
    if (ms->log && n >= 1)
        ody_metrics_log_truncate(loop->ctx, ms->log, (int64_t)v[0]);
}

static void metrics_destroy(void *self)
{
    metrics_state *ms = self;
    ody_metrics_log_close(ms->log);
    free(ms);
}

static const ody_callback_ops metrics_ops = {
    .name = "metrics_log",
    .on_epoch_end = metrics_epoch_end,
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
    ody_status st = ODY_OK;
    if (loop->ctx->rank == 0)
        st = ody_metrics_log_open(loop->ctx, run_dir, append, &ms->log);
    if (st == ODY_OK)
        st = ody_training_loop_add_callback(loop, &metrics_ops, ms);
    if (st != ODY_OK)
        metrics_destroy(ms);
    return st;
}
