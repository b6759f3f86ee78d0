/*
 * train: the two reduction strategies of a step (the ops in
 * train_internal.h). Both run the chunk plan (chunks.c); they differ in
 * the chunk size and in how gradients are summed:
 * - exact (distributed.deterministic, the default): chunks of
 *   distributed.chunk_size; each chunk's gradient is added in int64 fixed
 *   point (ody_exact), through node shared memory or MPI, with chunk
 *   stealing among a node's ranks; a sum that outgrows its scale is
 *   redone. The same bits at any rank count.
 * - float: a micro-batch's share of the rank is one chunk; gradients
 *   accumulate in the float buffer and go out bucket by bucket through
 *   ody_reducer (MPI_Iallreduce, fp32 or bf16/fp16 on the wire).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/chunks.h"

/* ---------------------------------------------------------------- exact */

typedef struct {
    ody_strategy base;
    ody_training_loop *loop;
    ody_chunk_plan *plan;
    ody_exact *exact;
} exact_step;

static void exact_begin(ody_strategy *s)
{
    exact_step *e = (exact_step *)s;
    ody_exact_begin(e->exact, ody_chunk_plan_step_chunks(e->plan));
}

static ody_status exact_load(ody_strategy *s, int64_t micro)
{
    return ody_chunk_plan_load(((exact_step *)s)->plan, micro);
}

static void exact_begin_round(ody_strategy *s, bool first, bool compute)
{
    exact_step *e = (exact_step *)s;
    if (!first) /* a redo: the sum starts again, with the scale the step needs */
        ody_exact_begin(e->exact, ody_chunk_plan_step_chunks(e->plan));
    else if (compute && ody_chunk_plan_stealing(e->plan)) /* the next rows, in this step's wait */
        ody_exact_while_waiting(e->exact, ody_chunk_plan_read_ahead, e->plan);
    ody_chunk_plan_begin_round(e->plan, first, compute);
}

static bool exact_next_chunk(ody_strategy *s, ody_batch *chunk)
{
    return ody_chunk_plan_next(((exact_step *)s)->plan, chunk);
}

static bool exact_last_chunk(ody_strategy *s) { return ody_chunk_plan_last(((exact_step *)s)->plan); }

static void exact_add_chunk(ody_strategy *s, float *grads)
{
    ody_exact_add(((exact_step *)s)->exact, grads);
}

static void exact_add_layer(ody_strategy *s, int layer)
{
    exact_step *e = (exact_step *)s;
    ody_exact_add_layer(e->exact, e->loop->model->grads.data, layer);
}

static void exact_layer_ready(void *s, int layer)
{
    ody_exact_layer_ready(((exact_step *)s)->exact, layer);
}

static ody_status exact_start_vote(ody_strategy *s, ody_vote *vote)
{
    exact_step *e = (exact_step *)s;
    return ody_exact_carry_vote(e->exact, vote) ? ODY_OK : ody_vote_start(e->loop->ctx, vote);
}

static ody_status exact_wait(ody_strategy *s, bool *redo, bool *nonfinite)
{
    return ody_exact_wait(((exact_step *)s)->exact, redo, nonfinite);
}

static void exact_read(ody_strategy *s, float *grads, bool redo)
{
    ody_exact_read(((exact_step *)s)->exact, grads, redo);
}

static uint64_t exact_bytes_sent(const ody_strategy *s)
{
    return ody_exact_bytes_sent(((const exact_step *)s)->exact);
}

/* Chunk stealing (every rank has it, or none): how many chunks ran on a
 * rank other than their owner. Collective. */
static ody_status exact_report(ody_strategy *s)
{
    exact_step *e = (exact_step *)s;
    ody_ctx *ctx = e->loop->ctx;
    if (!ody_chunk_plan_stealing(e->plan))
        return ODY_OK;
    ody_chunk_stats t = ody_chunk_plan_stats(e->plan);
    double local[4] = {(double)t.chunks_stolen, (double)t.chunks_run, (double)t.steps_ahead,
                       (double)t.steps_shared},
           mean[4], max[4];
    ody_status st = ody_comm_mean_max(ctx, local, mean, max, 4);
    double n = ctx->size;
    if (st == ODY_OK)
        ody_log(ctx, ODY_LOG_INFO,
                "chunk stealing: %.0f of %.0f chunks (%.1f%%) ran on a rank other than their "
                "owner; the busiest rank took %.0f; %.0f of %.0f steps had their rows read "
                "while the ranks waited for the step before", mean[0] * n, mean[1] * n,
                mean[1] > 0 ? 100.0 * mean[0] / mean[1] : 0.0, max[0], mean[2], mean[3]);
    return st;
}

static void exact_destroy(ody_strategy *s)
{
    exact_step *e = (exact_step *)s;
    ody_chunk_plan_destroy(e->plan);
    ody_exact_destroy(e->loop->ctx, e->exact);
    free(e);
}

static const ody_strategy_ops exact_ops = {
    .begin = exact_begin,
    .load = exact_load,
    .begin_round = exact_begin_round,
    .next_chunk = exact_next_chunk,
    .last_chunk = exact_last_chunk,
    .add_chunk = exact_add_chunk,
    .add_layer = exact_add_layer,
    .layer_ready = exact_layer_ready,
    .start_vote = exact_start_vote,
    .wait = exact_wait,
    .read = exact_read,
    .bytes_sent = exact_bytes_sent,
    .report = exact_report,
    .destroy = exact_destroy,
};

ody_status ody_exact_step_create(ody_training_loop *loop, int64_t chunk, size_t train_rows,
                                 ody_strategy **out)
{
    ody_ctx *ctx = loop->ctx;
    const ody_distributed_config *dc = &loop->cfg->distributed;
    *out = NULL;
    exact_step *e = calloc(1, sizeof *e);
    ody_status st = e ? ODY_OK : ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the exact step");
    if (st == ODY_OK) {
        e->base.ops = &exact_ops;
        e->loop = loop;
        st = ody_chunk_plan_create(loop, chunk, train_rows, &e->plan);
    }
    /* blocking: one bucket of everything, sent when backward is done */
    size_t bucket_bytes = strcmp(dc->allreduce, "blocking") == 0 ? SIZE_MAX
                                                                 : (size_t)dc->bucket_bytes;
    /* the exact sum and the steal slots are collective (their shared memory
     * is the node's): every rank creates them, or none */
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK)
        st = ody_exact_create(ctx, loop->model, bucket_bytes, dc->shared_memory, &e->exact);
    /* lockstep rounds keep each rank's chunks in place: their statistics are summed in rank order */
    if (st == ODY_OK && ody_exact_shared(e->exact) && dc->work_stealing && !loop->model->lockstep)
        st = ody_chunk_plan_share(e->plan);
    if (st != ODY_OK) {
        if (e)
            exact_destroy(&e->base);
        return st;
    }
    *out = &e->base;
    return ODY_OK;
}

ody_exact *ody_exact_step_sum(ody_strategy *s)
{
    return s && s->ops == &exact_ops ? ((exact_step *)s)->exact : NULL;
}

/* ---------------------------------------------------------------- float */

typedef struct {
    ody_strategy base;
    ody_training_loop *loop;
    ody_chunk_plan *plan;
    ody_reducer *reducer; /* not owned */
} float_step;

static void float_begin(ody_strategy *s) { (void)s; }

static ody_status float_load(ody_strategy *s, int64_t micro)
{
    return ody_chunk_plan_load(((float_step *)s)->plan, micro);
}

static void float_begin_round(ody_strategy *s, bool first, bool compute)
{
    ody_chunk_plan_begin_round(((float_step *)s)->plan, first, compute);
}

static bool float_next_chunk(ody_strategy *s, ody_batch *chunk)
{
    return ody_chunk_plan_next(((float_step *)s)->plan, chunk);
}

static bool float_last_chunk(ody_strategy *s) { return ody_chunk_plan_last(((float_step *)s)->plan); }

/* the chunks' gradients accumulate in the float buffer */
static void float_add_chunk(ody_strategy *s, float *grads)
{
    (void)s;
    (void)grads;
}

static void float_add_layer(ody_strategy *s, int layer)
{
    (void)s;
    (void)layer;
}

static void float_layer_ready(void *s, int layer)
{
    ody_reducer_layer_ready(((float_step *)s)->reducer, layer);
}

static ody_status float_start_vote(ody_strategy *s, ody_vote *vote)
{
    return ody_vote_start(((float_step *)s)->loop->ctx, vote);
}

/* every bucket's allreduce (those not started yet start now) */
static ody_status float_wait(ody_strategy *s, bool *redo, bool *nonfinite)
{
    *redo = *nonfinite = false;
    return ody_reducer_finish(((float_step *)s)->reducer);
}

/* the sum is in place in the gradient buffer */
static void float_read(ody_strategy *s, float *grads, bool redo)
{
    (void)s;
    (void)grads;
    (void)redo;
}

static uint64_t float_bytes_sent(const ody_strategy *s)
{
    return ody_reducer_bytes_sent(((const float_step *)s)->reducer);
}

static void float_destroy(ody_strategy *s)
{
    float_step *f = (float_step *)s;
    ody_chunk_plan_destroy(f->plan);
    free(f);
}

static const ody_strategy_ops float_ops = {
    .begin = float_begin,
    .load = float_load,
    .begin_round = float_begin_round,
    .next_chunk = float_next_chunk,
    .last_chunk = float_last_chunk,
    .add_chunk = float_add_chunk,
    .add_layer = float_add_layer,
    .layer_ready = float_layer_ready,
    .start_vote = float_start_vote,
    .wait = float_wait,
    .read = float_read,
    .bytes_sent = float_bytes_sent,
    .report = NULL,
    .destroy = float_destroy,
};

ody_status ody_float_step_create(ody_training_loop *loop, ody_reducer *reducer, size_t train_rows,
                                 ody_strategy **out)
{
    *out = NULL;
    float_step *f = calloc(1, sizeof *f);
    if (!f)
        return ody_fail(loop->ctx, ODY_ERR_NOMEM, "out of memory for the float step");
    f->base.ops = &float_ops;
    f->loop = loop;
    f->reducer = reducer;
    ody_status st = ody_chunk_plan_create(loop, 0, train_rows, &f->plan);
    if (st != ODY_OK) {
        free(f);
        return st;
    }
    *out = &f->base;
    return ODY_OK;
}
