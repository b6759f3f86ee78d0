/*
 * train: ModelCheckpoint, the callback that decides when to save.
 *
 * Saves every training.checkpoint_interval epochs, every
 * checkpoint.every_steps steps, every checkpoint.every_seconds seconds (as
 * rank 0's clock says, agreed through the step vote), at the end of
 * training (checkpoint.save_last) and when a stop signal arrives. Files are
 * ckpt-e<epoch>-s<step>.h5 in the run directory, so their names sort by
 * age; latest.h5 and best.h5 are symbolic links to the newest and to the
 * best by checkpoint.monitor. Only the newest checkpoint.keep_last periodic
 * files are kept (never the targets of latest.h5 and best.h5). Writing is
 * rank 0's; every rank takes part in the decisions.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/train_internal.h"

typedef struct {
    ody_ctx *ctx;
    char run_dir[1024];
    const ody_config *cfg;
    double last_save_time;
    int64_t last_saved_step;  /* global step of the last save (-1: none) */
    bool last_saved_epoch_end; /* it was saved after the epoch's end-of-epoch work */
    char last_path[1200];
    bool maximize;            /* monitor improves upward */
    double best;              /* best monitored value so far (NaN: none) */
} model_checkpoint;

static bool enabled(const model_checkpoint *mc) { return mc->cfg->training.save_checkpoints; }

/* Point run_dir/link at target (a file name in run_dir), atomically. */
static ody_status relink(model_checkpoint *mc, const char *link, const char *target)
{
    char path[1200], tmp[1250];
    snprintf(path, sizeof path, "%s/%s", mc->run_dir, link);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ody_fail(mc->ctx, ODY_ERR_CHECKPOINT, "cannot link %s to %s: %s", path, target,
                        strerror(e));
    }
    return ODY_OK;
}

/* The file a link in the run directory points at ("" when none). */
static void link_target(const model_checkpoint *mc, const char *link, char *out, size_t len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", mc->run_dir, link);
    ssize_t n = readlink(path, out, len - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* Rank 0: delete periodic checkpoints beyond the newest keep_last, sparing
 * the targets of latest.h5 and best.h5. */
static void prune(model_checkpoint *mc)
{
    int64_t keep = mc->cfg->checkpoint.keep_last;
    if (keep <= 0)
        return;
    char latest[256], best[256];
    link_target(mc, "latest.h5", latest, sizeof latest);
    link_target(mc, "best.h5", best, sizeof best);
    char **names = NULL;
    int n = ody_train_list_checkpoints(mc->run_dir, &names);
    if (n < 0) { /* pruning from part of the list could delete a kept one */
        ody_log(mc->ctx, ODY_LOG_WARN, "cannot list the checkpoints in %s to prune them: %s",
                mc->run_dir, strerror(errno));
        return;
    }
    int64_t kept = 0;
    for (int i = 0; i < n; i++) {
        bool linked = strcmp(names[i], latest) == 0 || strcmp(names[i], best) == 0;
        if (linked || kept < keep) {
            kept += !linked;
            continue;
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", mc->run_dir, names[i]);
        if (unlink(path) != 0)
            ody_log(mc->ctx, ODY_LOG_WARN, "cannot delete old checkpoint %s: %s", path,
                    strerror(errno));
    }
    ody_train_free_names(names, n);
}

/* Save now (collective), unless this step is already saved. A save at an
 * epoch's end replaces one of the same step made before the end-of-epoch
 * work (validation, the metric history), so that it holds the whole epoch. */
static ody_status save(model_checkpoint *mc, ody_training_loop *loop, bool epoch_done,
                       const char *why)
{
    const ody_loop_state *s = &loop->state;
    if (s->global_step == mc->last_saved_step && (mc->last_saved_epoch_end || !epoch_done))
        return ODY_OK;
    char name[96];
    int64_t epoch = s->epoch + 1;
    snprintf(name, sizeof name, "ckpt-e%04lld-s%08lld.h5", (long long)epoch,
             (long long)s->global_step);
    snprintf(mc->last_path, sizeof mc->last_path, "%s/%s", mc->run_dir, name);
    ody_status st = ody_train_checkpoint_save(loop, mc->last_path, epoch_done);
    if (st != ODY_OK)
        return st;
    if (loop->ctx->rank == 0) {
        st = relink(mc, "latest.h5", name);
        if (st == ODY_OK)
            prune(mc);
    }
    st = ody_comm_agree(loop->ctx, st);
    if (st != ODY_OK)
        return st;
    mc->last_saved_step = s->global_step;
    mc->last_saved_epoch_end = epoch_done;
    mc->last_save_time = ody_now();
    ody_log(loop->ctx, ODY_LOG_INFO, "saved checkpoint %s (%s)", mc->last_path, why);
    return ody_loop_fire_checkpoint_saved(loop, mc->last_path);
}

static ody_status mc_train_begin(void *self, ody_training_loop *loop)
{
    model_checkpoint *mc = self;
    mc->last_save_time = ody_now();
    mc->last_saved_step = -1;
    (void)loop;
    return ODY_OK;
}

/* Rank 0 asks the step vote for a timed checkpoint; the vote makes it every rank's. */
static ody_status mc_batch_begin(void *self, ody_training_loop *loop)
{
    model_checkpoint *mc = self;
    int64_t every = mc->cfg->checkpoint.every_seconds;
    if (enabled(mc) && every > 0 && loop->ctx->rank == 0 &&
        ody_now() - mc->last_save_time >= (double)every)
        loop->step.want_checkpoint = true;
    return ODY_OK;
}

static ody_status mc_batch_end(void *self, ody_training_loop *loop)
{
    model_checkpoint *mc = self;
    const ody_loop_state *s = &loop->state;
    if (s->stop_signal) {
        if (enabled(mc))
            return save(mc, loop, false, "stop signal");
        ody_log(loop->ctx, ODY_LOG_WARN,
                "stop signal: no checkpoint written (training.save_checkpoints is false)");
        return ODY_OK;
    }
    if (!enabled(mc))
        return ODY_OK;
    int64_t every = mc->cfg->checkpoint.every_steps;
    if (every > 0 && s->global_step % every == 0)
        return save(mc, loop, false, "every_steps");
    if (s->checkpoint_due)
        return save(mc, loop, false, "every_seconds");
    return ODY_OK;
}

static ody_status mc_epoch_end(void *self, ody_training_loop *loop)
{
    model_checkpoint *mc = self;
    const ody_loop_state *s = &loop->state;
    if (!enabled(mc))
        return ODY_OK;
    ody_status st = ODY_OK;
    int64_t interval = mc->cfg->training.checkpoint_interval;
    if ((s->epoch + 1) % interval == 0)
        st = save(mc, loop, true, "checkpoint_interval");
    if (st == ODY_OK && (s->finishing || s->stop) && mc->cfg->checkpoint.save_last)
        st = save(mc, loop, true, "end of training");
    double v = ody_loop_metric(loop, mc->cfg->checkpoint.monitor);
    bool better = !isnan(v) && (isnan(mc->best) || (mc->maximize ? v > mc->best : v < mc->best));
    if (st != ODY_OK || !better || !mc->cfg->checkpoint.save_best)
        return st;
    mc->best = v;
    st = save(mc, loop, true, "best so far");
    if (st == ODY_OK && loop->ctx->rank == 0) {
        const char *name = strrchr(mc->last_path, '/');
        st = relink(mc, "best.h5", name ? name + 1 : mc->last_path);
    }
    return ody_comm_agree(loop->ctx, st);
}

static int mc_save_state(void *self, const ody_training_loop *loop, double *v)
{
    const model_checkpoint *mc = self;
    (void)loop;
    v[0] = mc->best;
    return 1;
}

static void mc_load_state(void *self, ody_training_loop *loop, const double *v, int n)
{
    model_checkpoint *mc = self;
    (void)loop;
    if (n >= 1)
        mc->best = v[0];
}

static const ody_callback_ops model_checkpoint_ops = {
    .name = "model_checkpoint",
    .on_train_begin = mc_train_begin,
    .on_batch_begin = mc_batch_begin,
    .on_batch_end = mc_batch_end,
    .on_epoch_end = mc_epoch_end,
    .save_state = mc_save_state,
    .load_state = mc_load_state,
    .destroy = free,
};

ody_status ody_callback_model_checkpoint_add(ody_training_loop *loop, const char *run_dir)
{
    model_checkpoint *mc = calloc(1, sizeof *mc);
    if (!mc)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the checkpoint callback");
    mc->ctx = loop->ctx;
    mc->cfg = loop->cfg;
    snprintf(mc->run_dir, sizeof mc->run_dir, "%s", run_dir);
    mc->maximize = ody_monitor_maximizes(loop->cfg->checkpoint.mode, loop->cfg->checkpoint.monitor);
    mc->best = NAN;
    mc->last_saved_step = -1;
    return ody_training_loop_add_callback(loop, &model_checkpoint_ops, mc);
}
