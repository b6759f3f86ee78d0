/* train: the training loop (run, run_epoch, validate, run_epoch_manual). */
#include "odyssey/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* ------------------------------------------------------- callbacks */

ody_status ody_training_loop_add_callback(ody_training_loop *loop, const ody_callback_ops *ops,
                                          void *self)
{
    if (loop->ncallbacks == ODY_MAX_CALLBACKS) {
        if (ops->destroy)
            ops->destroy(self);
        return ody_fail(loop->ctx, ODY_ERR_INTERNAL, "too many callbacks (at most %d)",
                        ODY_MAX_CALLBACKS);
    }
    loop->callbacks[loop->ncallbacks++] = (ody_callback){ops, self};
    return ODY_OK;
}

/* The first failure of a round of hooks, with its message (a later hook
 * may overwrite the context's). */
typedef struct {
    ody_status status;
    char msg[ODY_ERRMSG_MAX];
} first_failure;

static void note_failure(const ody_training_loop *loop, ody_status st, first_failure *f)
{
    if (st != ODY_OK && f->status == ODY_OK) {
        f->status = st;
        memcpy(f->msg, loop->ctx->err, sizeof f->msg);
    }
}

static ody_status report_failure(ody_training_loop *loop, const first_failure *f)
{
    return f->status == ODY_OK ? ODY_OK : ody_fail(loop->ctx, f->status, "%s", f->msg);
}

/* Call one hook of every callback in order and return the first error.
 * Every hook runs even after one fails, because hooks may hold collectives
 * that every rank must reach. The hook is chosen by its offset in
 * ody_callback_ops. */
ody_status ody_loop_fire(ody_training_loop *loop, size_t hook_offset)
{
    first_failure first = {ODY_OK, ""};
    for (int i = 0; i < loop->ncallbacks; i++) {
        const ody_callback *cb = &loop->callbacks[i];
        ody_status (*fn)(void *, ody_training_loop *);
        memcpy(&fn, (const char *)cb->ops + hook_offset, sizeof fn);
        if (fn)
            note_failure(loop, fn(cb->self, loop), &first);
    }
    return report_failure(loop, &first);
}

#define FIRE(loop, hook) ody_loop_fire((loop), offsetof(ody_callback_ops, hook))

ody_status ody_loop_fire_checkpoint_saved(ody_training_loop *loop, const char *path)
{
    first_failure first = {ODY_OK, ""};
    for (int i = 0; i < loop->ncallbacks; i++) {
        const ody_callback *cb = &loop->callbacks[i];
        if (cb->ops->on_checkpoint_saved)
            note_failure(loop, cb->ops->on_checkpoint_saved(cb->self, loop, path), &first);
    }
    return ody_dist_agree(loop->ctx, report_failure(loop, &first));
}

/* -------------------------------------------------------------- init */

ody_status ody_training_loop_init(ody_training_loop *loop, ody_ctx *ctx, const ody_config *cfg)
{
    memset(loop, 0, sizeof *loop);
    loop->ctx = ctx;
    loop->cfg = cfg;
    ody_training_metrics_init(&loop->metrics);
    loop->state.epoch_start_time = ody_now();
    ody_status st = ody_fault_knob_read(ctx, &loop->fault);
    return st != ODY_OK ? st : ody_loss_tracker_init(ctx, &loop->tracker, (int)cfg->training.log_interval);
}

/* Size the per-row buffers for the largest share of any sampler in use. */
ody_status ody_loop_prepare_buffers(ody_training_loop *loop, size_t max_rows)
{
    ody_ctx *ctx = loop->ctx;
    if (max_rows <= loop->max_rows)
        return ODY_OK;
    size_t classes = (size_t)loop->model->num_classes;
    ody_free(ctx, loop->losses, loop->max_rows * sizeof(float));
    ody_free(ctx, loop->dlogits, loop->max_rows * classes * sizeof(float));
    loop->losses = loop->dlogits = NULL;
    loop->max_rows = 0;
    void *a, *b;
    ody_status st = ody_alloc(ctx, max_rows * sizeof(float), "per-sample losses", &a);
    if (st != ODY_OK)
        return st;
    st = ody_alloc(ctx, max_rows * classes * sizeof(float), "logit gradients", &b);
    if (st != ODY_OK) {
        ody_free(ctx, a, max_rows * sizeof(float));
        return st;
    }
    loop->losses = a;
    loop->dlogits = b;
    loop->max_rows = max_rows;
    return ody_model_prepare(ctx, loop->model, (int)max_rows);
}

void ody_training_loop_free(ody_training_loop *loop)
{
    ody_trace_close(loop->ctx, loop->trace);
    loop->trace = NULL;
    if (loop->exact)
        ody_loop_disable_exact(loop);
    for (int i = loop->ncallbacks - 1; i >= 0; i--)
        if (loop->callbacks[i].ops->destroy)
            loop->callbacks[i].ops->destroy(loop->callbacks[i].self);
    loop->ncallbacks = 0;
    if (loop->model) {
        size_t classes = (size_t)loop->model->num_classes;
        ody_free(loop->ctx, loop->losses, loop->max_rows * sizeof(float));
        ody_free(loop->ctx, loop->dlogits, loop->max_rows * classes * sizeof(float));
    }
    loop->losses = loop->dlogits = NULL;
    ody_loss_tracker_free(&loop->tracker);
    ody_training_metrics_free(&loop->metrics);
}

/* The value of a metric this epoch by its config name (NaN when not
 * measured: a val_ metric without validation). */
double ody_loop_metric(const ody_training_loop *loop, const char *name)
{
    const ody_training_metrics *m = &loop->metrics;
    if (strncmp(name, "val_", 4) == 0 && !loop->state.validated)
        return NAN;
    if (strcmp(name, "val_accuracy") == 0)
        return m->val_accuracy;
    if (strcmp(name, "val_loss") == 0)
        return m->val_loss;
    if (strcmp(name, "train_accuracy") == 0)
        return m->train_accuracy;
    return m->train_loss;
}

/* ----------------------------------------------------- the step parts */

static ody_status op_zero_grad(void *user)
{
    ody_training_loop *loop = user;
    ody_model_zero_grad(loop->model);
    return ODY_OK;
}

static ody_status op_forward(void *user, const ody_batch *b)
{
    ody_training_loop *loop = user;
    double t0 = ody_now();
    ody_heartbeat(loop->ctx);
    loop->fwd = (ody_forward_info){.training = true,
                                   .seed = (uint64_t)loop->cfg->experiment.seed,
                                   .step = (uint64_t)loop->state.global_step,
                                   .sample_ids = b->ids};
    loop->logits = b->n > 0 ? ody_model_forward(loop->model, &loop->fwd, b->n, b->x) : NULL;
    ody_loop_phase(loop, ODY_PHASE_FORWARD, t0);
    return ODY_OK;
}

/* Fixed-point sum of per-sample losses, and whether any was not finite
 * (or so large that the run has diverged). */
static void sum_losses(const float *losses, int n, ody_step_result *res)
{
    for (int i = 0; i < n; i++) {
        if (!ody_loss_fixable(losses[i])) {
            res->nonfinite = true;
            continue;
        }
        res->loss_fixed = ody_add_sat(res->loss_fixed, ody_loss_to_fixed(losses[i]));
    }
    res->count += n;
}

static ody_status op_loss(void *user, const ody_batch *b, ody_step_result *res)
{
    ody_training_loop *loop = user;
    double t0 = ody_now();
    if (b->n > 0) {
        int classes = loop->model->num_classes;
        ody_loss_forward(loop->loss_kind, b->n, classes, loop->logits, b->y, loop->losses,
                         &res->correct);
        sum_losses(loop->losses, b->n, res);
        /* Mean over the global batch: every rank scales by the same count,
         * so the summed gradients are the mean whatever the split (times
         * the loss scale when fp16 gradients need one). */
        ody_loss_backward(loop->loss_kind, b->n, classes, loop->logits, b->y,
                          (float)(loop->scaler.scale / (double)loop->group_count), loop->dlogits);
    }
    ody_loop_phase(loop, ODY_PHASE_FORWARD, t0);
    return ODY_OK;
}

/* The vote goes out before the last backward of the step, on every rank at
 * the same point, so that it overlaps the backward pass. */
ody_status ody_loop_start_vote(ody_training_loop *loop, const ody_step_result *res)
{
    memset(loop->vote.local, 0, sizeof loop->vote.local);
    loop->vote.local[ODY_VOTE_FAILED] = loop->local_failed;
    loop->vote.local[ODY_VOTE_NONFINITE] = res->nonfinite;
    loop->vote.local[ODY_VOTE_STOP] = ody_loop_stop_requested(loop);
    loop->vote.local[ODY_VOTE_CHECKPOINT] = loop->want_checkpoint;
    if (loop->exact && ody_exact_carry_vote(loop->exact, &loop->vote))
        return ODY_OK;
    return ody_vote_start(loop->ctx, &loop->vote);
}

static ody_status op_backward(void *user, const ody_batch *b)
{
    ody_training_loop *loop = user;
    ody_status st = ODY_OK;
    /* Chunk stealing: this chunk is the rank's last when nothing is left to
     * take, as seen now that its forward is done (deterministic.c). */
    if (loop->steal_decides)
        loop->last_micro = ody_steal_drained(loop->steal, loop->steal_round);
    if (loop->last_micro)
        st = ody_loop_start_vote(loop, &loop->last_step);
    double t0 = ody_now();
    if (st == ODY_OK && b->n > 0)
        ody_model_backward(loop->model, &loop->fwd, b->n, b->x, loop->dlogits,
                           !loop->last_micro ? NULL
                           : loop->exact     ? ody_exact_layer_ready
                                             : ody_reducer_layer_ready,
                           loop->exact ? (void *)loop->exact : (void *)loop->reducer);
    ody_loop_phase(loop, ODY_PHASE_BACKWARD, t0);
    return st;
}

/* Wait for the vote and act on it: a failure anywhere ends the step on
 * every rank with that rank's message. */
ody_status ody_loop_finish_vote(ody_training_loop *loop, ody_status st)
{
    double t0 = ody_now();
    ody_status vst = ody_vote_finish(loop->ctx, &loop->vote);
    ody_loop_phase(loop, ODY_PHASE_COMM_WAIT, t0);
    if (st == ODY_OK)
        st = vst;
    if (st != ODY_OK)
        return st;
    const int64_t *total = loop->vote.total;
    if (total[ODY_VOTE_FAILED] > 0)
        return ody_dist_agree(loop->ctx, loop->local_failed ? loop->ctx->err_status : ODY_OK);
    if (total[ODY_VOTE_STOP] > 0)
        loop->state.stop_signal = true;
    loop->state.checkpoint_due = total[ODY_VOTE_CHECKPOINT] > 0;
    loop->want_checkpoint = false;
    return ODY_OK;
}

/* Wait for the gradient buckets, then for the vote. */
static ody_status finish_step(ody_training_loop *loop)
{
    double t0 = ody_now();
    ody_status st = ody_reducer_finish(loop->reducer);
    ody_loop_phase(loop, ODY_PHASE_COMM_WAIT, t0);
    return ody_loop_finish_vote(loop, st);
}

/* Whether this step's update goes ahead. A non-finite loss (on any rank,
 * from the vote) or gradient (the reduced buffer is the same on every rank,
 * so every rank decides alike) skips it, or stops the run when
 * training.on_nonfinite is stop. With fp16 loss scaling, non-finite
 * gradients only skip the step and back the scale off, as GradScaler does. */
static ody_status decide_update(ody_training_loop *loop, bool *apply)
{
    ody_model *m = loop->model;
    ody_loop_state *s = &loop->state;
    int64_t bad_loss = loop->vote.total[ODY_VOTE_NONFINITE];
    bool finite_grads = !loop->grads_nonfinite &&
                        ody_loss_scaler_unscale(&loop->scaler, m->grads.data, m->grads.size);
    *apply = bad_loss == 0 && finite_grads;
    if (loop->scaler.enabled && bad_loss == 0) {
        *apply = ody_loss_scaler_update(&loop->scaler, !finite_grads);
    } else if (!*apply && strcmp(loop->cfg->training.on_nonfinite, "stop") == 0) {
        return ody_fail(loop->ctx, ODY_ERR_NUMERIC,
                        "non-finite %s at epoch %lld step %lld (global step %lld)%s; lower "
                        "optimizer.learning_rate, check the data, or set "
                        "training.on_nonfinite=skip",
                        bad_loss ? "loss (or one beyond 2^24)" : "gradient",
                        (long long)s->epoch + 1, (long long)s->step_in_epoch + 1,
                        (long long)s->global_step + 1, bad_loss ? " on some rank" : "");
    }
    if (!*apply) {
        s->epoch_skipped++;
        s->skipped_steps++;
        ody_log(loop->ctx, ODY_LOG_DEBUG, "step %lld skipped: non-finite %s",
                (long long)s->global_step + 1, bad_loss ? "loss" : "gradient");
    }
    return ODY_OK;
}

/* Clip (after the reduction, so every rank clips alike), schedule, update. */
static void update(ody_training_loop *loop)
{
    ody_model *m = loop->model;
    ody_loop_state *s = &loop->state;
    const ody_training_config *tc = &loop->cfg->training;
    if (tc->gradient_clip_norm > 0)
        s->grad_norm = ody_clip_grad_norm(m->grads.data, m->grads.size, tc->gradient_clip_norm);
    else
        s->grad_norm = ody_grad_norm(m->grads.data, m->grads.size);
    if (tc->gradient_clip_value > 0)
        ody_clip_grad_value(m->grads.data, m->grads.size, tc->gradient_clip_value);
    s->grad_norm_sum += s->grad_norm;
    s->epoch_updates++;
    s->lr = ody_schedule_lr(&loop->schedule, s->global_step, s->epoch);
    ody_optimizer_step(loop->optimizer, m->params.data, m->grads.data, s->lr);
}

/* After the reduction: skip or update, count the step, check consistency. */
ody_status ody_loop_apply_step(ody_training_loop *loop)
{
    double t0 = ody_now();
    bool apply = false;
    ody_status st = decide_update(loop, &apply);
    if (st != ODY_OK)
        return st;
    if (apply)
        update(loop);
    loop->state.global_step++;
    ody_loop_phase(loop, ODY_PHASE_OPTIMIZER, t0);
    int64_t every = loop->cfg->distributed.check_consistency;
    if (every > 0 && loop->state.global_step % every == 0) {
        char when[64];
        ody_model *m = loop->model;
        snprintf(when, sizeof when, "after step %lld", (long long)loop->state.global_step);
        return ody_dist_check_consistent(loop->ctx, m->params.data, m->params.size, when);
    }
    return ODY_OK;
}

static ody_status op_optimizer_step(void *user)
{
    ody_training_loop *loop = user;
    ody_status st = finish_step(loop);
    return st == ODY_OK ? ody_loop_apply_step(loop) : st;
}

const ody_step_ops ody_loop_step_ops = {
    .zero_grad = op_zero_grad,
    .forward = op_forward,
    .loss = op_loss,
    .backward = op_backward,
    .optimizer_step = op_optimizer_step,
};

/* A rank whose batch could not be read still takes part in the step's
 * collectives (vote, then every gradient bucket), so that every rank
 * learns of the failure at the same point and none hangs. */
ody_status ody_loop_fail_step(ody_training_loop *loop, ody_status local)
{
    loop->local_failed = true;
    loop->ctx->err_status = local;
    ody_step_result none = {0};
    ody_status st = ody_loop_start_vote(loop, &none);
    if (st == ODY_OK)
        st = loop->exact ? ody_loop_finish_vote(loop, ody_loop_exact_reduce(loop, false)) : finish_step(loop);
    loop->local_failed = false;
    return st == ODY_OK ? local : st;
}

/* ------------------------------------------------------------- epochs */

int64_t ody_loop_step_count(const ody_training_loop *loop, int64_t step)
{
    int64_t left = loop->sampler->n - step * loop->global_batch;
    return left < loop->global_batch ? left : loop->global_batch;
}

/* One optimizer step: training.accumulation_steps micro-batches (fewer at
 * the end of an epoch), gradients accumulated, one reduction at the last. */
static ody_status train_one_update(ody_training_loop *loop)
{
    if (loop->exact)
        return ody_loop_train_update_exact(loop);
    ody_loop_state *s = &loop->state;
    int64_t micro = ody_loop_begin_update(loop);
    for (int64_t m = 0; m < micro; m++) {
        ody_batch batch;
        bool done = false;
        double t0 = ody_now();
        ody_status st = ody_loader_next(loop->ctx, loop->loader, &batch, &done);
        ody_loop_phase(loop, ODY_PHASE_DATA, t0);
        if (st == ODY_OK && done)
            st = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "loader ended the epoch early at step %lld",
                          (long long)(s->step_in_epoch + m));
        if (st != ODY_OK)
            return ody_loop_fail_step(loop, st);
        loop->last_micro = m == micro - 1;
        st = ody_training_step(&ody_loop_step_ops, loop, &batch, m == 0, loop->last_micro,
                               &loop->last_step);
        if (st != ODY_OK)
            return st;
    }
    ody_loop_count_update(loop, micro);
    return ODY_OK;
}

void ody_loop_count_update(ody_training_loop *loop, int64_t micro)
{
    ody_loop_state *s = &loop->state;
    ody_training_metrics_update_train(&loop->metrics, &loop->last_step);
    if (loop->last_step.count > 0)
        ody_loss_tracker_add(&loop->tracker, ody_loss_from_fixed(loop->last_step.loss_fixed) /
                                                 (double)loop->last_step.count);
    s->step_in_epoch += micro;
    s->samples_seen += loop->group_count;
    s->epoch_samples += loop->group_count;
}

int64_t ody_loop_begin_update(ody_training_loop *loop)
{
    const ody_loop_state *s = &loop->state;
    int64_t micro = ody_loop_micro_at(loop, s->step_in_epoch);
    loop->group_count = 0;
    for (int64_t m = 0; m < micro; m++)
        loop->group_count += ody_loop_step_count(loop, s->step_in_epoch + m);
    memset(&loop->last_step, 0, sizeof loop->last_step);
    return micro;
}

static bool max_steps_reached(const ody_training_loop *loop)
{
    int64_t max = loop->cfg->training.max_steps;
    return max > 0 && loop->state.global_step >= max;
}

ody_status ody_training_loop_run_epoch(ody_training_loop *loop)
{
    ody_loop_state *s = &loop->state;
    memset(&s->times, 0, sizeof s->times);
    s->epoch_samples = 0;
    s->grad_norm_sum = 0;
    s->epoch_updates = s->epoch_skipped = 0;
    s->epoch_start_time = ody_now();
    s->steps_per_epoch = ody_sampler_steps(loop->sampler);
    /* A resumed epoch keeps the sums restored from its checkpoint. */
    if (s->step_in_epoch == 0)
        ody_training_metrics_reset_epoch(&loop->metrics, s->epoch);
    loop->metrics.current_epoch = s->epoch;
    ody_sampler_set_epoch(loop->sampler, s->epoch);
    /* Agreed before the hook: every rank fires it (it may hold collectives) or none. */
    ody_status st = ody_dist_agree(
        loop->ctx, ody_loader_start_epoch(loop->ctx, loop->loader, s->epoch, s->step_in_epoch));
    if (st == ODY_OK)
        st = ody_dist_agree(loop->ctx, FIRE(loop, on_epoch_begin));
    /* A rank whose batch hook fails says so in the next step's vote (or
     * at the epoch's end), so the failure costs no extra collective. */
    ody_status deferred = ODY_OK;
    while (st == ODY_OK && s->step_in_epoch < s->steps_per_epoch && !max_steps_reached(loop) &&
           !s->stop_signal) {
        if (deferred == ODY_OK)
            deferred = FIRE(loop, on_batch_begin);
        if (deferred != ODY_OK) {
            st = ody_loop_fail_step(loop, deferred);
            break;
        }
        ody_wait_set_step(loop->ctx, s->global_step + 1);
        ody_fault_knob_fire(loop->ctx, &loop->fault, s->global_step + 1);
        st = train_one_update(loop);
        if (st == ODY_OK)
            deferred = FIRE(loop, on_batch_end);
    }
    if (st == ODY_OK)
        st = ody_dist_agree(loop->ctx, deferred);
    s->epoch_train_seconds = ody_now() - s->epoch_start_time;
    return st;
}

/* Reduce the epoch's train sums and phase times across ranks. */
static ody_status reduce_epoch(ody_training_loop *loop)
{
    ody_training_metrics *m = &loop->metrics;
    int64_t sums[3] = {m->epoch_loss_fixed, m->epoch_correct, m->epoch_count};
    ody_status st = ody_dist_sum_i64(loop->ctx, sums, 3);
    if (st != ODY_OK)
        return st;
    ody_training_metrics_set_train(m, sums[0], sums[1], sums[2]);
    ody_loop_state *s = &loop->state;
    return ody_dist_mean_max(loop->ctx, s->times.seconds, s->times_mean.seconds,
                             s->times_max.seconds, ODY_PHASE_COUNT);
}

static bool validate_now(const ody_training_loop *loop, bool last_epoch)
{
    int64_t every = loop->cfg->training.validate_interval;
    if (!loop->val_set || every == 0)
        return false;
    return last_epoch || (loop->state.epoch + 1) % every == 0;
}

ody_status ody_training_loop_run(ody_training_loop *loop)
{
    ody_loop_state *s = &loop->state;
    const int64_t epochs = loop->cfg->training.epochs;
    ody_status st = ody_dist_agree(loop->ctx, FIRE(loop, on_train_begin));
    while (st == ODY_OK && s->epoch < epochs) {
        st = ody_training_loop_run_epoch(loop);
        if (st != ODY_OK)
            break;
        /* A stop signal: the checkpoint is written (ModelCheckpoint, at the
         * step's end); leave at once, the scheduler's grace time is short. */
        if (s->stop_signal)
            return ODY_STOPPED;
        bool complete = s->step_in_epoch >= s->steps_per_epoch;
        s->finishing = s->epoch + 1 == epochs || max_steps_reached(loop);
        st = reduce_epoch(loop);
        s->validated = st == ODY_OK && validate_now(loop, s->finishing);
        if (s->validated) {
            double vloss, vacc;
            st = ody_training_loop_validate(loop, &vloss, &vacc);
            if (st == ODY_OK) {
                ody_training_metrics_update_val(&loop->metrics, vloss, vacc);
                st = ody_dist_agree(loop->ctx, FIRE(loop, on_validation_end));
            }
        }
        if (st != ODY_OK)
            break;
        ody_schedule_epoch_end(&loop->schedule, ody_loop_metric(loop, loop->cfg->scheduler.monitor));
        double sps = s->epoch_train_seconds > 0 ? s->epoch_samples / s->epoch_train_seconds : 0;
        if (!ody_training_metrics_push_epoch(&loop->metrics, s->lr, sps))
            st = ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the metric history");
        st = ody_dist_agree(loop->ctx, st); /* before the hook, as at the epoch's start */
        if (st == ODY_OK)
            st = ody_dist_agree(loop->ctx, FIRE(loop, on_epoch_end));
        if (st != ODY_OK)
            break;
        if (complete) {
            s->epoch++;
            s->step_in_epoch = 0;
        }
        if (s->finishing || s->stop)
            break;
    }
    if (st != ODY_OK)
        return st;
    return ody_dist_agree(loop->ctx, FIRE(loop, on_train_end));
}

/* --------------------------------------------------------- validation */

ody_status ody_training_loop_validate(ody_training_loop *loop, double *loss, double *accuracy)
{
    ody_ctx *ctx = loop->ctx;
    ody_forward_info info = {.training = false, .seed = (uint64_t)loop->cfg->experiment.seed};
    ody_step_result sums = {0};
    ody_sampler_set_epoch(loop->val_sampler, 0);
    ody_status st = ody_loader_start_epoch(ctx, loop->val_loader, 0, 0);
    int classes = loop->model->num_classes;
    while (st == ODY_OK) {
        ody_batch b;
        bool done = false;
        st = ody_loader_next(ctx, loop->val_loader, &b, &done);
        if (st != ODY_OK || done)
            break;
        if (b.n == 0)
            continue;
        /* In pieces no larger than a training share (activations are sized
         * for those), or of one chunk each in deterministic mode, so that a
         * sample's logits do not depend on the rank count. */
        size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
        int piece = loop->exact ? (int)loop->chunk : (int)loop->max_rows;
        for (int row = 0; row < b.n; row += piece) {
            int rows = b.n - row < piece ? b.n - row : piece;
            info.sample_ids = b.ids + row;
            ody_heartbeat(ctx);
            const float *logits =
                ody_model_forward(loop->model, &info, rows, b.x + (size_t)row * numel);
            ody_loss_forward(loop->loss_kind, rows, classes, logits, b.y + row, loop->losses,
                             &sums.correct);
            sum_losses(loop->losses, rows, &sums);
        }
    }
    /* Validation has no collectives inside, so a local failure is agreed here. */
    st = ody_dist_agree(ctx, st);
    if (st != ODY_OK)
        return st;
    int64_t v[3] = {sums.loss_fixed, sums.correct, sums.count};
    st = ody_dist_sum_i64(ctx, v, 3);
    if (st != ODY_OK)
        return st;
    *loss = v[2] ? ody_loss_from_fixed(v[0]) / (double)v[2] : NAN;
    *accuracy = v[2] ? (double)v[1] / (double)v[2] : NAN;
    return ODY_OK;
}

/* ------------------------------------------------------ legacy manual */

ody_status ody_training_loop_run_epoch_manual(ody_training_loop *loop, const float *x,
                                              const int32_t *y, int64_t n, int batch_size,
                                              ody_manual_batch_fn fn, void *user)
{
    if (batch_size < 1)
        return ody_fail(loop->ctx, ODY_ERR_USAGE, "run_epoch_manual: batch_size must be >= 1");
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    int64_t *ids = malloc((size_t)batch_size * sizeof *ids);
    if (!ids)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for batch ids");
    ody_status st = ODY_OK;
    for (int64_t first = 0, step = 0; first < n && st == ODY_OK; first += batch_size, step++) {
        int rows = (int)((n - first < batch_size) ? n - first : batch_size);
        for (int i = 0; i < rows; i++)
            ids[i] = first + i;
        ody_batch b = {.step = step, .n = rows, .global_count = rows,
                       .x = (float *)(x + (size_t)first * numel), .y = (int32_t *)(y + first),
                       .ids = ids};
        st = fn(user, &b);
    }
    free(ids);
    return st;
}
