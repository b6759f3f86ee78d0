/*
 * train: one optimizer step, the same for every mode.
 *
 * A step is its global batch cut into chunks at fixed global positions.
 * Each rank runs its chunks (forward, loss, backward into its gradient
 * accumulator); the reduction strategy (train_internal.h: float bucketed
 * allreduce, or exact fixed-point sums over fixed chunks) decides where
 * the rows live, which chunks this rank runs and how they are summed; the
 * update applies the sum. ody_step_run reads in that order.
 *
 * Each chunk goes through the seed design's training_step
 * (ody_training_step over function pointers: forward, loss, backward).
 */
#include <math.h>
#include <string.h>

#include "train/train_internal.h"

ody_status ody_training_step(const ody_step_ops *ops, void *user, const ody_batch *batch,
                             bool zero_grad_first, bool step_optimizer, ody_step_result *res)
{
    ody_status st = ODY_OK;
    if (zero_grad_first && ops->zero_grad)
        st = ops->zero_grad(user);
    if (st == ODY_OK && ops->forward)
        st = ops->forward(user, batch);
    if (st == ODY_OK && ops->loss)
        st = ops->loss(user, batch, res);
    if (st == ODY_OK && ops->backward)
        st = ops->backward(user, batch);
    if (st == ODY_OK && step_optimizer && ops->optimizer_step)
        st = ops->optimizer_step(user);
    return st;
}

/* ------------------------------------------------------------- a chunk */

/*
 * A forward without logits: a layer's kernels failed (their message is on
 * the context), or n is too large. The rank goes on through the step's
 * collectives computing nothing (the model is stopped: its backward only
 * reports the layers ready), and its vote fails the step on every rank
 * with its message, as fail() does for a rank that could not load.
 */
static void model_failed(ody_training_loop *loop, int n)
{
    ody_step_state *step = &loop->step;
    if (loop->model->status == ODY_OK)
        loop->model->status = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "model %s: a chunk of %d rows exceeds the prepared %d",
                                       loop->model->name, n, loop->model->max_batch);
    loop->ctx->err_status = loop->model->status;
    step->local_failed = true;
}

static ody_status chunk_forward(void *user, const ody_batch *b)
{
    ody_training_loop *loop = user;
    double t0 = ody_now();
    ody_heartbeat(loop->ctx);
    loop->step.fwd = (ody_forward_info){.training = true,
                                        .seed = (uint64_t)loop->cfg->experiment.seed,
                                        .step = (uint64_t)loop->state.global_step,
                                        .sample_ids = b->ids,
                                        .batch_rows = loop->step.group_count};
    loop->step.logits = ody_model_forward(loop->model, &loop->step.fwd, b->n, b->x);
    if (!loop->step.logits)
        model_failed(loop, b->n);
    ody_loop_phase(loop, ODY_PHASE_FORWARD, t0);
    return ODY_OK;
}

/* Fixed-point sum of per-sample losses, and whether any was not finite
 * (or so large that the run has diverged). */
void ody_sum_losses(const float *losses, int n, ody_step_result *res)
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

/* The loss of n rows (labels y) from their logits (NULL: the model failed,
 * no loss and a zero gradient) into losses, res and their gradient dlogits. */
static void rows_loss(ody_training_loop *loop, int n, const int32_t *y, const float *logits, float *losses,
                      float *dlogits, ody_step_result *res)
{
    int classes = loop->model->num_classes;
    if (!logits) {
        memset(dlogits, 0, (size_t)n * classes * sizeof *dlogits);
        return;
    }
    /* The gradient is of the mean over the global batch: every rank scales
     * by the same count, so the summed gradients are the mean whatever the
     * split (times the loss scale when fp16 gradients need one). */
    ody_loss_forward_backward(loop->loss_kind, loop->cfg->training.label_smoothing, n, classes, logits, y, losses,
                              &res->correct, (float)(loop->scaler.scale / (double)loop->step.group_count), dlogits);
    ody_sum_losses(losses, n, res);
}

static ody_status chunk_loss(void *user, const ody_batch *b, ody_step_result *res)
{
    ody_training_loop *loop = user;
    ody_step_state *step = &loop->step;
    double t0 = ody_now();
    rows_loss(loop, b->n, b->y, step->logits, step->losses, step->dlogits, res);
    ody_loop_phase(loop, ODY_PHASE_FORWARD, t0);
    return ODY_OK;
}

/* The vote (failure, non-finite loss, stop signal, timed checkpoint) goes
 * out before the last backward of the step, on every rank at the same
 * point relative to the gradient buckets, so it overlaps the backward. */
static ody_status start_vote(ody_training_loop *loop)
{
    ody_step_state *step = &loop->step;
    int64_t *local = step->vote.local;
    memset(step->vote.local, 0, sizeof step->vote.local);
    local[ODY_VOTE_FAILED] = step->local_failed;
    local[ODY_VOTE_NONFINITE] = step->sums.nonfinite;
    local[ODY_VOTE_STOP] = ody_loop_stop_requested(loop);
    local[ODY_VOTE_CHECKPOINT] = step->want_checkpoint;
    return loop->strategy->ops->start_vote(loop->strategy, &step->vote);
}

/* The first round's last chunk starts the vote, and its backward hands
 * each finished layer to the strategy, which starts that bucket's sum. */
static ody_status chunk_backward(void *user, const ody_batch *b)
{
    ody_training_loop *loop = user;
    ody_strategy *s = loop->strategy;
    ody_step_state *step = &loop->step;
    step->last = step->first_round && s->ops->last_chunk(s);
    ody_status st = step->last ? start_vote(loop) : ODY_OK;
    double t0 = ody_now();
    if (st == ODY_OK)
        ody_model_backward(loop->model, &step->fwd, b->n, b->x, step->dlogits,
                           step->last ? s->ops->layer_ready : NULL, s);
    /* A failure in backward itself (the plans exist by now: only a failed
     * execution) after this step's vote started shows at the next step's. */
    if (loop->model->status != ODY_OK && !step->local_failed)
        model_failed(loop, b->n);
    if (st == ODY_OK && !step->last)
        s->ops->add_chunk(s, loop->model->grads.data);
    ody_loop_phase(loop, ODY_PHASE_BACKWARD, t0);
    return st;
}

static const ody_step_ops chunk_ops = {
    .forward = chunk_forward,
    .loss = chunk_loss,
    .backward = chunk_backward,
};

/* ------------------------------------------------------- lockstep */

/*
 * Sum the statistics parts of every rank's chunks (count doubles each) in
 * the chunks' global order: ranks hold contiguous runs of the step's
 * chunks in rank order (no stealing in lockstep runs), so gathering in rank
 * order and adding in sequence gives the same bits at any rank count.
 */
static bool sync_parts(void *user, const double *part, int count, double *total)
{
    ody_training_loop *loop = user;
    ody_lockstep *ls = &loop->step.lockstep;
    ody_ctx *ctx = loop->ctx;
    int mine = ls->set.nchunks * count, all = 0;
    for (int r = 0; r < ctx->size; r++) { /* every rank's chunks, gathered once per round (run_lockstep) */
        ls->counts[r] = ls->rank_chunks[r] * count;
        ls->displs[r] = all;
        all += ls->counts[r];
    }
    /* every rank computes the same `all` from the same gathered counts: none skips the collective alone */
    if ((size_t)all > ls->gathered_len ||
        MPI_Allgatherv(part, mine, MPI_DOUBLE, ls->gathered, ls->counts, ls->displs, MPI_DOUBLE, ctx->comm) !=
            MPI_SUCCESS) {
        ody_fail(ctx, ODY_ERR_MPI, "summing batchnorm statistics over the global batch failed");
        return false;
    }
    for (int k = 0; k < count; k++)
        total[k] = 0.0;
    for (int at = 0; at < all; at += count)
        for (int k = 0; k < count; k++)
            total[k] += ls->gathered[at + k];
    return true;
}

/* Chunk `chunk` (not the last) has run layer `layer`'s backward: its gradients go into the sum (user: the strategy). */
static void chunk_layer_done(void *user, int layer, int chunk)
{
    (void)chunk;
    ody_strategy *s = user;
    s->ops->add_layer(s, layer);
}

/*
 * A round in lockstep (model->lockstep: batchnorm over the global batch):
 * this rank's chunks go through the model together, layer by layer,
 * meeting the other ranks at each batchnorm (ody_model_forward_chunks);
 * every rank takes part, with or without chunks. Each chunk's gradients
 * still go into the sum one by one (exact sums: the same bits at any rank
 * count). The vote starts before backward, the buckets with the last
 * chunk's layers.
 */
static ody_status run_lockstep(ody_training_loop *loop, bool first)
{
    ody_strategy *s = loop->strategy;
    ody_step_state *step = &loop->step;
    ody_lockstep *ls = &step->lockstep;
    double t0 = ody_now();
    int n = 0, rows = 0;
    ody_batch chunk;
    while (n < ls->max_chunks && s->ops->next_chunk(s, &chunk)) {
        ls->rows[n] = chunk.n;
        ls->x[n] = chunk.x;
        ls->y[n] = chunk.y;
        ls->info[n] = (ody_forward_info){.training = true, .seed = (uint64_t)loop->cfg->experiment.seed,
                                         .step = (uint64_t)loop->state.global_step, .sample_ids = chunk.ids,
                                         .batch_rows = step->group_count};
        rows += chunk.n;
        n++;
    }
    if (MPI_Allgather(&n, 1, MPI_INT, ls->rank_chunks, 1, MPI_INT, loop->ctx->comm) != MPI_SUCCESS)
        return ody_fail(loop->ctx, ODY_ERR_MPI, "gathering the ranks' chunk counts of a lockstep round failed");
    ls->set = (ody_chunk_set){.nchunks = n, .rows = ls->rows, .x = ls->x, .info = ls->info, .sync = sync_parts,
                              .user = loop, .step_rows = step->group_count, .owner = loop->ctx->rank == 0};
    ody_heartbeat(loop->ctx);
    step->logits = ody_model_forward_chunks(loop->model, &ls->set);
    if (!step->logits && n > 0)
        model_failed(loop, rows);
    for (int c = 0, off = 0; c < n; off += ls->rows[c++]) {
        size_t at = (size_t)off * loop->model->num_classes;
        rows_loss(loop, ls->rows[c], ls->y[c], step->logits ? step->logits + at : NULL, step->losses + off,
                  step->dlogits + at, &step->sums);
    }
    ody_loop_phase(loop, ODY_PHASE_FORWARD, t0);
    ody_status st = first ? start_vote(loop) : ODY_OK;
    t0 = ody_now();
    if (st == ODY_OK)
        ody_model_backward_chunks(loop->model, &ls->set, step->dlogits, chunk_layer_done,
                                  first && n > 0 ? s->ops->layer_ready : NULL, s);
    if (loop->model->status != ODY_OK && !step->local_failed)
        model_failed(loop, rows);
    if (st == ODY_OK && !first && n > 0) /* a redo: the last chunk's gradients too, and the sum goes out in wait */
        s->ops->add_chunk(s, loop->model->grads.data);
    ody_loop_phase(loop, ODY_PHASE_BACKWARD, t0);
    return st;
}

/* A round: every chunk the strategy gives this rank (compute false: none,
 * this rank failed to load). A rank without a chunk in the first round
 * votes after it, where the others' last backward did: before any bucket. */
static ody_status run_round(ody_training_loop *loop, bool first, bool compute)
{
    ody_strategy *s = loop->strategy;
    loop->step.first_round = first;
    s->ops->begin_round(s, first, compute);
    if (loop->model->lockstep)
        return run_lockstep(loop, first);
    ody_status st = ODY_OK;
    ody_batch chunk;
    while (st == ODY_OK && s->ops->next_chunk(s, &chunk))
        st = ody_training_step(&chunk_ops, loop, &chunk, false, false, &loop->step.sums);
    if (st == ODY_OK && first && !loop->step.vote.started)
        st = start_vote(loop);
    return st;
}

/* ----------------------------------------------------------- the sum */

/* Wait for the step's sum into the gradients; a sum that outgrew its
 * fixed-point scale is redone (the same chunks, with the wider scale; a
 * redo has no vote or hook, so every rank goes round as often). */
static ody_status reduce(ody_training_loop *loop, bool compute)
{
    ody_strategy *s = loop->strategy;
    for (;;) {
        bool redo = false, nonfinite = false;
        double t0 = ody_now(), data0 = loop->state.this_epoch.times.seconds[ODY_PHASE_DATA];
        ody_status st = s->ops->wait(s, &redo, &nonfinite);
        /* reading ahead in the wait counts as data, not waiting */
        ody_loop_phase(loop, ODY_PHASE_COMM_WAIT,
                       t0 + loop->state.this_epoch.times.seconds[ODY_PHASE_DATA] - data0);
        if (st != ODY_OK)
            return st;
        loop->step.grads_nonfinite = nonfinite;
        if (!nonfinite) { /* the read-out is a pass over the gradients, like the update */
            t0 = ody_now();
            s->ops->read(s, loop->model->grads.data, redo);
            ody_loop_phase(loop, ODY_PHASE_OPTIMIZER, t0);
        }
        if (!redo)
            return ODY_OK;
        ody_log(loop->ctx, ODY_LOG_DEBUG, "step %lld redone with a wider fixed-point scale",
                (long long)loop->state.global_step + 1);
        ody_model_zero_grad(loop->model);
        if ((st = run_round(loop, false, compute)) != ODY_OK)
            return st;
    }
}

/* Wait for the vote and act on it: a failure anywhere ends the step on
 * every rank with that rank's message. */
static ody_status finish_vote(ody_training_loop *loop, ody_status st)
{
    ody_step_state *step = &loop->step;
    double t0 = ody_now();
    ody_status vst = ody_vote_finish(loop->ctx, &step->vote);
    ody_loop_phase(loop, ODY_PHASE_COMM_WAIT, t0);
    if (st == ODY_OK)
        st = vst;
    if (st != ODY_OK)
        return st;
    const int64_t *total = step->vote.total;
    if (total[ODY_VOTE_FAILED] > 0)
        return ody_comm_agree(loop->ctx, step->local_failed ? loop->ctx->err_status : ODY_OK);
    if (total[ODY_VOTE_STOP] > 0)
        loop->state.stop_signal = true;
    loop->state.checkpoint_due = total[ODY_VOTE_CHECKPOINT] > 0;
    step->want_checkpoint = false;
    return ODY_OK;
}

/* --------------------------------------------------------- the update */

/* Whether this step's update goes ahead. A non-finite loss (on any rank,
 * from the vote) or gradient (the reduced buffer is the same on every rank,
 * so every rank decides alike) skips it, or stops the run when
 * training.on_nonfinite is stop. With fp16 loss scaling, non-finite
 * gradients only skip the step and back the scale off, as GradScaler does. */
static ody_status decide(ody_training_loop *loop, bool *apply)
{
    ody_model *m = loop->model;
    ody_loop_state *s = &loop->state;
    int64_t bad_loss = loop->step.vote.total[ODY_VOTE_NONFINITE];
    bool finite_grads = !loop->step.grads_nonfinite &&
                        ody_loss_scaler_unscale(&loop->scaler, m->grads.data, m->ntrain);
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
        s->this_epoch.skipped++;
        s->skipped_steps++;
        ody_log(loop->ctx, ODY_LOG_DEBUG, "step %lld skipped: non-finite %s",
                (long long)s->global_step + 1, bad_loss ? "loss" : "gradient");
    }
    return ODY_OK;
}

/* Clip (after the reduction, so every rank clips alike), schedule, update;
 * all of it over the trainable tensors [0, ntrain): the buffers after them
 * hold the step's statistics, which update_buffers folds in. */
static void update(ody_training_loop *loop)
{
    ody_model *m = loop->model;
    ody_loop_state *s = &loop->state;
    const ody_training_config *tc = &loop->cfg->training;
    if (tc->gradient_clip_norm > 0)
        s->grad_norm = ody_clip_grad_norm(m->grads.data, m->ntrain, tc->gradient_clip_norm);
    else
        s->grad_norm = ody_grad_norm(m->grads.data, m->ntrain);
    if (tc->gradient_clip_value > 0)
        ody_clip_grad_value(m->grads.data, m->ntrain, tc->gradient_clip_value);
    s->this_epoch.grad_norm_sum += s->grad_norm;
    s->this_epoch.updates++;
    s->lr = ody_schedule_lr(&loop->schedule, s->global_step, s->epoch);
    ody_optimizer_step(loop->optimizer, m->params.data, m->grads.data, s->lr);
    ody_model_update_buffers(m); /* running statistics, from the step's summed ones */
}

/* decide, then clip, schedule, update; check consistency when asked. */
static ody_status apply(ody_training_loop *loop)
{
    double t0 = ody_now();
    bool go = false;
    ody_status st = decide(loop, &go);
    if (st != ODY_OK)
        return st;
    if (go)
        update(loop);
    loop->state.global_step++;
    ody_loop_phase(loop, ODY_PHASE_OPTIMIZER, t0);
    int64_t every = loop->cfg->distributed.check_consistency;
    if (every > 0 && loop->state.global_step % every == 0) {
        char when[64];
        ody_model *m = loop->model;
        snprintf(when, sizeof when, "after step %lld", (long long)loop->state.global_step);
        return ody_comm_check_consistent(loop->ctx, m->params.data, m->params.size, when);
    }
    return ODY_OK;
}

/* ------------------------------------------------------- the step */

/* The step's global sample count and zeroed sums; its micro-batch count. */
static int64_t begin_step(ody_training_loop *loop)
{
    ody_step_state *step = &loop->step;
    int64_t micro = ody_loop_micro_at(loop, loop->state.step_in_epoch);
    step->group_count = 0;
    for (int64_t m = 0; m < micro; m++)
        step->group_count += ody_loop_step_count(loop, loop->state.step_in_epoch + m);
    memset(&step->sums, 0, sizeof step->sums);
    step->vote.started = false;
    loop->strategy->ops->begin(loop->strategy);
    return micro;
}

/* The step's sums into the metrics; the position moves on. */
static void count(ody_training_loop *loop, int64_t micro)
{
    ody_loop_state *s = &loop->state;
    const ody_step_result *sums = &loop->step.sums;
    ody_training_metrics_update_train(&loop->metrics, sums);
    if (sums->count > 0)
        ody_loss_tracker_add(&loop->tracker,
                             ody_loss_from_fixed(sums->loss_fixed) / (double)sums->count);
    s->step_in_epoch += micro;
    s->samples_seen += loop->step.group_count;
    s->this_epoch.samples += loop->step.group_count;
}

/* This rank failed before its chunks: it still takes part in the step's
 * collectives (the vote, then an empty share of the sum), so that every
 * rank learns of the failure at the same point and none hangs. */
static ody_status fail(ody_training_loop *loop, ody_status local)
{
    ody_step_state *step = &loop->step;
    step->local_failed = true;
    loop->ctx->err_status = local;
    ody_status st = run_round(loop, true, false);
    if (st == ODY_OK)
        st = reduce(loop, false);
    st = finish_vote(loop, st);
    step->local_failed = false;
    return st == ODY_OK ? local : st;
}

ody_status ody_step_run(ody_training_loop *loop)
{
    int64_t micro = begin_step(loop);
    ody_status st = loop->strategy->ops->load(loop->strategy, micro); /* load */
    if (st != ODY_OK)
        return fail(loop, st);
    ody_model_zero_grad(loop->model);                /* zero */
    st = run_round(loop, true, true);                /* forward, loss, backward: the sum and
                                                      * the vote start in the last backward */
    if (st == ODY_OK)
        st = reduce(loop, true);                     /* reduce: the sum ends here */
    st = finish_vote(loop, st);                      /* vote */
    if (st == ODY_OK)
        st = apply(loop);                            /* decide, clip, schedule, update */
    if (st == ODY_OK)
        count(loop, micro);                          /* count */
    return st;
}

ody_status ody_step_fail(ody_training_loop *loop, ody_status local)
{
    begin_step(loop);
    return fail(loop, local);
}
