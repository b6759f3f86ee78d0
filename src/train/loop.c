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
    return ody_comm_agree(loop->ctx, report_failure(loop, &first));
}

/* -------------------------------------------------------------- init */

ody_status ody_training_loop_init(ody_training_loop *loop, ody_ctx *ctx, const ody_config *cfg)
{
    memset(loop, 0, sizeof *loop);
    loop->ctx = ctx;
    loop->cfg = cfg;
    ody_training_metrics_init(&loop->metrics);
    loop->state.this_epoch.start_time = ody_now();
    loop->interval.since = loop->interval.train_start = loop->state.this_epoch.start_time;
    ody_status st = ody_fault_knob_read(ctx, &loop->fault);
    if (st != ODY_OK)
        return st;
    return ody_loss_tracker_init(ctx, &loop->tracker, (int)cfg->training.log_interval);
}

/*
 * Lay the lockstep arrays out from base (NULL: only count the bytes), for
 * up to max_chunks chunks a round and statistics parts of len doubles per
 * chunk from every chunk of the step.
 */
static size_t lockstep_layout(ody_lockstep *ls, unsigned char *base, int max_chunks, int ranks, size_t gathered_len)
{
    size_t at = 0;
#define LOCKSTEP_PIECE(field, count)                                                                             \
    do {                                                                                                          \
        if (base)                                                                                                 \
            ls->field = (void *)(base + at);                                                                      \
        at += ((size_t)(count) * sizeof *ls->field + 63) / 64 * 64;                                               \
    } while (0)
    LOCKSTEP_PIECE(gathered, gathered_len);
    LOCKSTEP_PIECE(info, max_chunks);
    LOCKSTEP_PIECE(x, max_chunks);
    LOCKSTEP_PIECE(y, max_chunks);
    LOCKSTEP_PIECE(rows, max_chunks);
    LOCKSTEP_PIECE(rank_chunks, ranks);
    LOCKSTEP_PIECE(counts, ranks);
    LOCKSTEP_PIECE(displs, ranks);
#undef LOCKSTEP_PIECE
    return at;
}

/* The arrays of lockstep rounds (a model with batchnorm over the global batch) for max_rows rows a round. */
static ody_status lockstep_prepare(ody_training_loop *loop, size_t max_rows)
{
    ody_lockstep *ls = &loop->step.lockstep;
    const ody_model *m = loop->model;
    size_t len = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int phase = 0; m->layers[i]->ops->sync_len && phase < ODY_SYNC_PHASES; phase++) {
            size_t l = (size_t)m->layers[i]->ops->sync_len(m->layers[i], phase);
            len = l > len ? l : len;
        }
    /* every chunk of the step, of one row at least */
    size_t gathered_len = len * (size_t)(loop->global_batch > 0 ? loop->global_batch : 1);
    ody_lockstep next = {.max_chunks = (int)max_rows, .gathered_len = gathered_len};
    next.bytes = lockstep_layout(&next, NULL, (int)max_rows, loop->ctx->size, gathered_len);
    ody_status st = ody_alloc(loop->ctx, next.bytes, "lockstep rounds", &next.block);
    if (st != ODY_OK)
        return st;
    lockstep_layout(&next, next.block, (int)max_rows, loop->ctx->size, gathered_len);
    ody_free(loop->ctx, ls->block, ls->bytes);
    *ls = next;
    return ODY_OK;
}

/* Size the per-row buffers for the largest share of any sampler in use. */
ody_status ody_loop_prepare_buffers(ody_training_loop *loop, size_t max_rows)
{
    ody_ctx *ctx = loop->ctx;
    if (max_rows <= loop->step.max_rows)
        return ODY_OK;
    size_t classes = (size_t)loop->model->num_classes;
    ody_free(ctx, loop->step.losses, loop->step.max_rows * sizeof(float));
    ody_free(ctx, loop->step.dlogits, loop->step.max_rows * classes * sizeof(float));
    loop->step.losses = loop->step.dlogits = NULL;
    loop->step.max_rows = 0;
    void *a, *b;
    ody_status st = ody_alloc(ctx, max_rows * sizeof(float), "per-sample losses", &a);
    if (st != ODY_OK)
        return st;
    st = ody_alloc(ctx, max_rows * classes * sizeof(float), "logit gradients", &b);
    if (st != ODY_OK) {
        ody_free(ctx, a, max_rows * sizeof(float));
        return st;
    }
    loop->step.losses = a;
    loop->step.dlogits = b;
    loop->step.max_rows = max_rows;
    st = ody_model_prepare(ctx, loop->model, (int)max_rows);
    if (st == ODY_OK && loop->model->lockstep)
        st = lockstep_prepare(loop, max_rows);
    /* Deterministic mode runs chunks: their shape's kernels are made now, not in the first step. */
    size_t chunk = (size_t)loop->cfg->distributed.chunk_size;
    if (st == ODY_OK && loop->cfg->distributed.deterministic && chunk < max_rows)
        st = ody_model_plan_batch(ctx, loop->model, (int)chunk);
    return st;
}

void ody_training_loop_free(ody_training_loop *loop)
{
    ody_trace_close(loop->ctx, loop->trace);
    loop->trace = NULL;
    if (loop->strategy)
        loop->strategy->ops->destroy(loop->strategy);
    loop->strategy = NULL;
    for (int i = loop->ncallbacks - 1; i >= 0; i--)
        if (loop->callbacks[i].ops->destroy)
            loop->callbacks[i].ops->destroy(loop->callbacks[i].self);
    loop->ncallbacks = 0;
    if (loop->model) {
        size_t classes = (size_t)loop->model->num_classes;
        ody_free(loop->ctx, loop->step.losses, loop->step.max_rows * sizeof(float));
        ody_free(loop->ctx, loop->step.dlogits, loop->step.max_rows * classes * sizeof(float));
    }
    loop->step.losses = loop->step.dlogits = NULL;
    ody_free(loop->ctx, loop->step.lockstep.block, loop->step.lockstep.bytes);
    loop->step.lockstep = (ody_lockstep){0};
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

/* ---------------------------------------------------------- intervals */

/* The step just run into the interval: its sums, and what the epoch's
 * counters gained since the last step (they restart with every epoch). */
static void interval_add(ody_training_loop *loop)
{
    ody_interval_stats *iv = &loop->interval;
    const ody_loop_state *s = &loop->state;
    const ody_step_result *sums = &loop->step.sums;
    iv->loss_fixed = ody_add_sat(iv->loss_fixed, sums->loss_fixed);
    iv->correct += sums->correct;
    iv->count += sums->count;
    iv->samples += loop->step.group_count;
    if (s->this_epoch.updates != iv->seen_updates) {
        iv->grad_norm_sum += s->grad_norm;
        iv->updates++;
    }
    iv->seen_updates = s->this_epoch.updates;
    for (int p = 0; p < ODY_PHASE_COUNT; p++)
        iv->times.seconds[p] += s->this_epoch.times.seconds[p] - iv->seen.seconds[p];
    iv->seen = s->this_epoch.times;
}

/* Reduce the interval into interval.last and start the next. Collective. */
static ody_status interval_reduce(ody_training_loop *loop)
{
    ody_interval_stats *iv = &loop->interval;
    const ody_loop_state *s = &loop->state;
    int64_t v[3] = {iv->loss_fixed, iv->correct, iv->count};
    ody_phase_times mean, max;
    ody_status st = ody_comm_sum_i64(loop->ctx, v, 3);
    if (st == ODY_OK)
        st = ody_comm_mean_max(loop->ctx, iv->times.seconds, mean.seconds, max.seconds,
                               ODY_PHASE_COUNT);
    if (st != ODY_OK)
        return st;
    double now = ody_now();
    iv->last = (ody_step_record){
        .step = s->global_step,
        .epoch = s->epoch,
        .epoch_step = ody_loop_update_in_epoch(loop),
        .samples = iv->samples,
        .loss = v[2] ? ody_loss_from_fixed(v[0]) / (double)v[2] : NAN,
        .accuracy = v[2] ? (double)v[1] / (double)v[2] : NAN,
        .lr = s->lr,
        .grad_norm = iv->updates ? iv->grad_norm_sum / (double)iv->updates : NAN,
        .samples_per_sec = now > iv->since ? (double)iv->samples / (now - iv->since) : 0.0,
        .elapsed = now - iv->train_start,
        .times_mean = mean,
    };
    iv->loss_fixed = iv->correct = iv->count = iv->samples = iv->updates = 0;
    iv->grad_norm_sum = 0;
    memset(&iv->times, 0, sizeof iv->times);
    iv->since = now;
    iv->due = true;
    return ODY_OK;
}

ody_status ody_loop_interval_step(ody_training_loop *loop)
{
    loop->interval.due = false;
    interval_add(loop);
    if (loop->state.global_step % loop->cfg->training.log_interval != 0)
        return ODY_OK;
    return interval_reduce(loop);
}

/* The epoch's counters restart: so do the interval's views of them. */
static void interval_epoch_begin(ody_training_loop *loop)
{
    memset(&loop->interval.seen, 0, sizeof loop->interval.seen);
    loop->interval.seen_updates = 0;
}

/* ------------------------------------------------------------- epochs */

static bool max_steps_reached(const ody_training_loop *loop)
{
    int64_t max = loop->cfg->training.max_steps;
    return max > 0 && loop->state.global_step >= max;
}

ody_status ody_training_loop_run_epoch(ody_training_loop *loop)
{
    ody_loop_state *s = &loop->state;
    memset(&s->this_epoch.times, 0, sizeof s->this_epoch.times);
    s->this_epoch.samples = 0;
    s->this_epoch.grad_norm_sum = 0;
    s->this_epoch.updates = s->this_epoch.skipped = 0;
    s->this_epoch.start_time = ody_now();
    interval_epoch_begin(loop);
    s->steps_per_epoch = ody_sampler_steps(loop->data.sampler);
    /* A resumed epoch keeps the sums restored from its checkpoint. */
    if (s->step_in_epoch == 0)
        ody_training_metrics_reset_epoch(&loop->metrics, s->epoch);
    loop->metrics.current_epoch = s->epoch;
    ody_sampler_set_epoch(loop->data.sampler, s->epoch);
    /* Agreed before the hook: every rank fires it (it may hold collectives) or none. */
    ody_status st = ody_comm_agree(
        loop->ctx, ody_loader_start_epoch(loop->ctx, loop->data.loader, s->epoch, s->step_in_epoch));
    if (st == ODY_OK)
        st = ody_comm_agree(loop->ctx, FIRE(loop, on_epoch_begin));
    /* A rank whose batch hook fails says so in the next step's vote (or
     * at the epoch's end), so the failure costs no extra collective. */
    ody_status deferred = ODY_OK;
    while (st == ODY_OK && s->step_in_epoch < s->steps_per_epoch && !max_steps_reached(loop) &&
           !s->stop_signal) {
        if (deferred == ODY_OK)
            deferred = FIRE(loop, on_batch_begin);
        if (deferred != ODY_OK) {
            st = ody_step_fail(loop, deferred);
            break;
        }
        ody_wait_set_step(loop->ctx, s->global_step + 1);
        if (ody_fault_knob_fire(loop->ctx, &loop->fault, s->global_step + 1)) {
            ody_layer *first = loop->model->layers[0];
            first->status = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "%s: test knob: its kernels fail at step %lld",
                                     first->name, (long long)s->global_step + 1);
        }
        st = ody_step_run(loop);
        if (st == ODY_OK)
            st = ody_loop_interval_step(loop);
        if (st == ODY_OK)
            deferred = FIRE(loop, on_batch_end);
    }
    if (st == ODY_OK)
        st = ody_comm_agree(loop->ctx, deferred);
    s->this_epoch.train_seconds = ody_now() - s->this_epoch.start_time;
    return st;
}

/* Reduce the epoch's train sums and phase times across ranks. */
static ody_status reduce_epoch(ody_training_loop *loop)
{
    ody_training_metrics *m = &loop->metrics;
    int64_t sums[3] = {m->epoch_loss_fixed, m->epoch_correct, m->epoch_count};
    ody_status st = ody_comm_sum_i64(loop->ctx, sums, 3);
    if (st != ODY_OK)
        return st;
    ody_training_metrics_set_train(m, sums[0], sums[1], sums[2]);
    ody_loop_state *s = &loop->state;
    return ody_comm_mean_max(loop->ctx, s->this_epoch.times.seconds, s->this_epoch.times_mean.seconds,
                             s->this_epoch.times_max.seconds, ODY_PHASE_COUNT);
}

static bool validate_now(const ody_training_loop *loop, bool last_epoch)
{
    int64_t every = loop->cfg->training.validate_interval;
    if (!loop->data.val_set || every == 0)
        return false;
    return last_epoch || (loop->state.epoch + 1) % every == 0;
}

ody_status ody_training_loop_run(ody_training_loop *loop)
{
    ody_loop_state *s = &loop->state;
    const int64_t epochs = loop->cfg->training.epochs;
    loop->interval.since = loop->interval.train_start = ody_now();
    ody_status st = ody_comm_agree(loop->ctx, FIRE(loop, on_train_begin));
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
                st = ody_comm_agree(loop->ctx, FIRE(loop, on_validation_end));
            }
        }
        if (st != ODY_OK)
            break;
        ody_schedule_epoch_end(&loop->schedule, ody_loop_metric(loop, loop->cfg->scheduler.monitor));
        double sps = s->this_epoch.train_seconds > 0 ? s->this_epoch.samples / s->this_epoch.train_seconds : 0;
        if (!ody_training_metrics_push_epoch(&loop->metrics, s->lr, sps))
            st = ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the metric history");
        st = ody_comm_agree(loop->ctx, st); /* before the hook, as at the epoch's start */
        if (st == ODY_OK)
            st = ody_comm_agree(loop->ctx, FIRE(loop, on_epoch_end));
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
    return ody_comm_agree(loop->ctx, FIRE(loop, on_train_end));
}

/* --------------------------------------------------------- validation */

ody_status ody_training_loop_validate(ody_training_loop *loop, double *loss, double *accuracy)
{
    ody_ctx *ctx = loop->ctx;
    ody_forward_info info = {.training = false, .seed = (uint64_t)loop->cfg->experiment.seed};
    ody_step_result sums = {0};
    ody_sampler_set_epoch(loop->data.val_sampler, 0);
    ody_status st = ody_loader_start_epoch(ctx, loop->data.val_loader, 0, 0);
    int classes = loop->model->num_classes;
    while (st == ODY_OK) {
        ody_batch b;
        bool done = false;
        st = ody_loader_next(ctx, loop->data.val_loader, &b, &done);
        if (st != ODY_OK || done)
            break;
        if (b.n == 0)
            continue;
        /* In pieces no larger than a training share (activations are sized
         * for those), or of one chunk each in deterministic mode, so that a
         * sample's logits do not depend on the rank count. */
        size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
        int piece = loop->cfg->distributed.deterministic ? (int)loop->cfg->distributed.chunk_size
                                                         : (int)loop->step.max_rows;
        for (int row = 0; row < b.n; row += piece) {
            int rows = b.n - row < piece ? b.n - row : piece;
            info.sample_ids = b.ids + row;
            ody_heartbeat(ctx);
            const float *logits =
                ody_model_forward(loop->model, &info, rows, b.x + (size_t)row * numel);
            if (!logits) { /* a layer's kernels failed: their message is on the context */
                st = loop->model->status != ODY_OK
                         ? loop->model->status
                         : ody_fail(ctx, ODY_ERR_INTERNAL, "validation piece of %d rows too large", rows);
                break;
            }
            /* the smoothed loss, as PyTorch reports it for a criterion with smoothing */
            ody_loss_forward(loop->loss_kind, loop->cfg->training.label_smoothing, rows, classes,
                             logits, b.y + row, loop->step.losses, &sums.correct);
            ody_sum_losses(loop->step.losses, rows, &sums);
        }
    }
    /* Validation has no collectives inside, so a local failure is agreed here. */
    st = ody_comm_agree(ctx, st);
    if (st != ODY_OK)
        return st;
    int64_t v[3] = {sums.loss_fixed, sums.correct, sums.count};
    st = ody_comm_sum_i64(ctx, v, 3);
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

/* ------------------------------------------------------------ accessors */

ody_ctx *ody_training_loop_ctx(const ody_training_loop *loop) { return loop->ctx; }
const ody_config *ody_training_loop_config(const ody_training_loop *loop) { return loop->cfg; }
ody_loop_state *ody_training_loop_state(ody_training_loop *loop) { return &loop->state; }
ody_training_metrics *ody_training_loop_metrics(ody_training_loop *loop) { return &loop->metrics; }
ody_model *ody_training_loop_model(ody_training_loop *loop) { return loop->model; }
