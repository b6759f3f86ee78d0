/* train: built-in callbacks EarlyStopping, the learning-rate monitor and
 * the trace writer. Each is an ody_callback_ops table and a context, the
 * same interface a user's own callback implements. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/train_internal.h"

/* -------------------------------------------------------- EarlyStopping */

typedef struct {
    const ody_early_stopping_config *cfg;
    bool maximize;
    double best;   /* NaN before the first measured epoch */
    int64_t wait;  /* epochs since the last improvement */
} early_stopping;

/* Runs before ModelCheckpoint, so the epoch that stops is also saved. */
static ody_status es_epoch_end(void *self, ody_training_loop *loop)
{
    early_stopping *es = self;
    double v = ody_loop_metric(loop, es->cfg->monitor);
    if (isnan(v))
        return ODY_OK;
    double gain = es->maximize ? v - es->best : es->best - v;
    if (isnan(es->best) || gain > es->cfg->min_delta) {
        es->best = v;
        es->wait = 0;
        return ODY_OK;
    }
    if (++es->wait < es->cfg->patience)
        return ODY_OK;
    loop->state.stop = true;
    ody_log(loop->ctx, ODY_LOG_INFO,
            "early stopping after epoch %lld: %s has not improved on %.6g for %lld epoch(s)",
            (long long)loop->state.epoch + 1, es->cfg->monitor, es->best, (long long)es->wait);
    return ODY_OK;
}

static int es_save_state(void *self, const ody_training_loop *loop, double *v)
{
    const early_stopping *es = self;
    (void)loop;
    v[0] = es->best;
    v[1] = (double)es->wait;
    return 2;
}

static void es_load_state(void *self, ody_training_loop *loop, const double *v, int n)
{
    early_stopping *es = self;
    (void)loop;
    if (n >= 2) {
        es->best = v[0];
        es->wait = (int64_t)v[1];
    }
}

static const ody_callback_ops early_stopping_ops = {
    .name = "early_stopping",
    .on_epoch_end = es_epoch_end,
    .save_state = es_save_state,
    .load_state = es_load_state,
    .destroy = free,
};

ody_status ody_callback_early_stopping_add(ody_training_loop *loop)
{
    const ody_early_stopping_config *cfg = &loop->cfg->early_stopping;
    if (!cfg->enabled)
        return ODY_OK;
    early_stopping *es = calloc(1, sizeof *es);
    if (!es)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for early stopping");
    es->cfg = cfg;
    es->maximize = ody_monitor_maximizes(cfg->mode, cfg->monitor);
    es->best = NAN;
    return ody_training_loop_add_callback(loop, &early_stopping_ops, es);
}

/* ---------------------------------------------------- learning-rate monitor */

typedef struct {
    double last_lr; /* NaN before the first step */
} lr_monitor;

/* Logs the lr when it changes (schedules, warmup: at most once an epoch
 * during warmup, to keep the log readable). */
static ody_status lrm_batch_end(void *self, ody_training_loop *loop)
{
    lr_monitor *m = self;
    double lr = loop->state.lr;
    if (lr == m->last_lr)
        return ODY_OK;
    bool warming = loop->schedule.p.warmup_steps > loop->state.global_step;
    if (isnan(m->last_lr) || !warming)
        ody_log(loop->ctx, ODY_LOG_INFO, "learning rate %.6g from step %lld (epoch %lld)", lr,
                (long long)loop->state.global_step, (long long)loop->state.epoch + 1);
    m->last_lr = lr;
    return ODY_OK;
}

static ody_status lrm_train_begin(void *self, ody_training_loop *loop)
{
    lr_monitor *m = self;
    (void)loop;
    m->last_lr = NAN;
    return ODY_OK;
}

static const ody_callback_ops lr_monitor_ops = {
    .name = "lr_monitor",
    .on_train_begin = lrm_train_begin,
    .on_batch_end = lrm_batch_end,
    .destroy = free,
};

ody_status ody_callback_lr_monitor_add(ody_training_loop *loop)
{
    lr_monitor *m = calloc(1, sizeof *m);
    if (!m)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the lr monitor");
    return ody_training_loop_add_callback(loop, &lr_monitor_ops, m);
}

/* ---------------------------------------------------------------- trace */

typedef struct {
    char path[1100];
} trace_writer;

/* Ranks start their clocks together (after a barrier), so the timelines of
 * all ranks line up in the viewer. */
static ody_status trace_train_begin(void *self, ody_training_loop *loop)
{
    trace_writer *tw = self;
    ody_wait_begin(loop->ctx, ODY_WAIT_AGREE);
    MPI_Barrier(loop->ctx->comm);
    ody_wait_end(loop->ctx);
    return ody_trace_open(loop->ctx, tw->path, loop->ctx->rank, ody_now(), &loop->trace);
}

static ody_status trace_epoch_end(void *self, ody_training_loop *loop)
{
    (void)self;
    return loop->trace ? ody_trace_flush(loop->ctx, loop->trace) : ODY_OK;
}

static ody_status trace_train_end(void *self, ody_training_loop *loop)
{
    (void)self;
    ody_trace_close(loop->ctx, loop->trace);
    loop->trace = NULL;
    return ODY_OK;
}

static const ody_callback_ops trace_ops = {
    .name = "trace",
    .on_train_begin = trace_train_begin,
    .on_epoch_end = trace_epoch_end,
    .on_train_end = trace_train_end,
    .destroy = free,
};

ody_status ody_callback_trace_add(ody_training_loop *loop, const char *run_dir)
{
    if (!loop->cfg->logging.trace)
        return ODY_OK;
    trace_writer *tw = calloc(1, sizeof *tw);
    if (!tw)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the trace writer");
    /* The trainer made <run_dir>/trace with the run directory. */
    snprintf(tw->path, sizeof tw->path, "%.1080s/trace/rank-%d.json", run_dir, loop->ctx->rank);
    return ody_training_loop_add_callback(loop, &trace_ops, tw);
}
