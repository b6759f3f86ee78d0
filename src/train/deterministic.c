/*
 * train: deterministic mode (distributed.deterministic).
 *
 * The same config gives bitwise the same parameters on any number of
 * ranks and across stops and resumes:
 * - every step's global batch is cut into chunks of distributed.chunk_size
 *   samples at fixed global positions; ranks take whole chunks (the
 *   sampler's chunked shares) and run forward and backward one chunk at a
 *   time, so each chunk's computation has the same shapes and inputs, hence
 *   the same bits, at any rank count (one BLAS thread per rank);
 * - chunk gradients are summed exactly in int64 fixed point (dist's
 *   ody_exact), over chunks and over ranks, whatever the order;
 * - the loss is summed in fixed point and counts are integers, so metrics,
 *   and every decision taken from them, agree too;
 * - randomness (order, dropout) is keyed by seed, epoch, step and sample.
 * The batches of a step are kept (step_x) so that a step whose values
 * outgrow the fixed-point scale can be redone with a wider one.
 */
#include <string.h>

#include "train/train_internal.h"

/* Chunks in the current optimizer step, over all ranks. */
static int64_t step_chunks(const ody_training_loop *loop)
{
    const ody_loop_state *s = &loop->state;
    int64_t chunks = 0;
    for (int64_t m = 0; m < loop->accumulation && s->step_in_epoch + m < s->steps_per_epoch; m++)
        chunks += (ody_loop_step_count(loop, s->step_in_epoch + m) + loop->chunk - 1) / loop->chunk;
    return chunks;
}

/* Every local chunk of the held batches: forward, loss, backward, exact
 * add. With `overlap`, the last chunk's backward starts the vote and adds
 * layer by layer through ody_exact_layer_ready, which sends finished
 * buckets at once (the first round of a step); a redo goes without. */
static ody_status run_chunks(ody_training_loop *loop, bool overlap)
{
    const ody_model *m = loop->model;
    size_t numel = (size_t)ody_shape_numel(&m->input_shape);
    int total = 0;
    for (int mb = 0; mb < loop->step_micro; mb++)
        total += loop->step_rows[mb];
    memset(&loop->last_step, 0, sizeof loop->last_step);
    int row = 0;
    ody_status st = ODY_OK;
    for (int mb = 0; mb < loop->step_micro && st == ODY_OK; mb++) {
        int end = row + loop->step_rows[mb];
        for (int n = 0; row < end && st == ODY_OK; row += n) {
            n = end - row < loop->chunk ? end - row : (int)loop->chunk;
            const ody_batch *held = &loop->step_view;
            ody_batch chunk = {.n = n, .x = held->x + (size_t)row * numel, .y = held->y + row,
                               .ids = held->ids + row};
            loop->last_micro = overlap && row + n == total;
            /* No zero_grad: ody_exact_add leaves the gradients at zero. */
            st = ody_training_step(&ody_loop_step_ops, loop, &chunk, false, false,
                                   &loop->last_step);
            if (st == ODY_OK && !loop->last_micro)
                ody_exact_add(loop->exact, m->grads.data);
        }
    }
    loop->last_micro = false;
    return st;
}

/* Wait for the step's exact sum and read it into the gradients; redo the
 * step's chunks with a wider scale while it overflows. compute false: this
 * rank ran no chunk (no rows, or a failed read) and takes part with an
 * empty share. Forward and backward cannot fail on one rank alone, and a
 * redo has no vote or hook: every rank goes round the same number of times. */
ody_status ody_loop_exact_reduce(ody_training_loop *loop, bool compute)
{
    if (!compute)
        ody_exact_begin(loop->exact, step_chunks(loop));
    for (;;) {
        bool redo = false, nonfinite = false;
        double t0 = ody_now();
        ody_status st = ody_exact_wait(loop->exact, &redo, &nonfinite);
        ody_loop_phase(loop, ODY_PHASE_COMM_WAIT, t0);
        if (st != ODY_OK)
            return st;
        loop->grads_nonfinite = nonfinite;
        if (!nonfinite) { /* the read-out is a pass over the gradients, like the update */
            t0 = ody_now();
            ody_exact_read(loop->exact, loop->model->grads.data, redo);
            ody_loop_phase(loop, ODY_PHASE_OPTIMIZER, t0);
        }
        if (!redo)
            return ODY_OK;
        ody_log(loop->ctx, ODY_LOG_DEBUG, "step %lld redone with a wider fixed-point scale",
                (long long)loop->state.global_step + 1);
        ody_exact_begin(loop->exact, step_chunks(loop));
        ody_model_zero_grad(loop->model);
        if (compute && (st = run_chunks(loop, false)) != ODY_OK)
            return st;
    }
}

/* Read the step's micro-batches into step_x (kept for a redo). One
 * micro-batch stays in the loader's buffer, valid until the next read. */
static ody_status read_step(ody_training_loop *loop, int64_t micro)
{
    ody_loop_state *s = &loop->state;
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    int row = 0;
    loop->step_micro = 0;
    for (int64_t m = 0; m < micro; m++) {
        ody_batch b;
        bool done = false;
        double t0 = ody_now();
        ody_status st = ody_loader_next(loop->ctx, loop->loader, &b, &done);
        if (st == ODY_OK && done)
            st = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "loader ended the epoch early at step %lld",
                          (long long)(s->step_in_epoch + m));
        if (st != ODY_OK)
            return st;
        if (micro == 1) {
            loop->step_view = b;
        } else {
            memcpy(loop->step_x + (size_t)row * numel, b.x, (size_t)b.n * numel * sizeof(float));
            memcpy(loop->step_y + row, b.y, (size_t)b.n * sizeof *b.y);
            memcpy(loop->step_ids + row, b.ids, (size_t)b.n * sizeof *b.ids);
        }
        loop->step_rows[loop->step_micro++] = b.n;
        row += b.n;
        ody_loop_phase(loop, ODY_PHASE_DATA, t0);
    }
    return ODY_OK;
}

ody_status ody_loop_train_update_exact(ody_training_loop *loop)
{
    int64_t micro = ody_loop_begin_update(loop);
    loop->step_view = (ody_batch){.x = loop->step_x, .y = loop->step_y, .ids = loop->step_ids};
    ody_status st = read_step(loop, micro);
    if (st != ODY_OK)
        return ody_loop_fail_step(loop, st);
    ody_exact_begin(loop->exact, step_chunks(loop));
    ody_model_zero_grad(loop->model);
    loop->vote.started = false;
    st = run_chunks(loop, true);
    if (st != ODY_OK)
        return st;
    /* A rank without rows this step votes here, where the others' last
     * backward did: before any gradient bucket. */
    if (!loop->vote.started)
        st = ody_loop_start_vote(loop, &loop->last_step);
    if (st == ODY_OK)
        st = ody_loop_exact_reduce(loop, true);
    st = ody_loop_finish_vote(loop, st);
    if (st == ODY_OK)
        st = ody_loop_apply_step(loop);
    if (st != ODY_OK)
        return st;
    ody_loop_count_update(loop, micro);
    return ODY_OK;
}

/* step_x and friends hold the whole optimizer step: accumulation x rows. */
static size_t step_capacity(const ody_training_loop *loop, size_t train_rows)
{
    return (size_t)loop->accumulation * train_rows;
}

ody_status ody_loop_enable_exact(ody_training_loop *loop, int64_t chunk, size_t train_rows)
{
    ody_ctx *ctx = loop->ctx;
    if (loop->accumulation > (int64_t)(sizeof loop->step_rows / sizeof *loop->step_rows))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "training.accumulation_steps: at most %zu in deterministic mode",
                        sizeof loop->step_rows / sizeof *loop->step_rows);
    loop->chunk = chunk;
    loop->step_capacity = loop->accumulation > 1 ? step_capacity(loop, train_rows) : 0;
    size_t rows = loop->step_capacity, numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    void *x = NULL, *y = NULL, *ids = NULL;
    /* blocking: one bucket of everything, sent when backward is done */
    size_t bucket_bytes = strcmp(loop->cfg->distributed.allreduce, "blocking") == 0
                              ? SIZE_MAX
                              : (size_t)loop->cfg->distributed.bucket_bytes;
    ody_status st = ODY_OK;
    if (rows > 0)
        st = ody_alloc(ctx, rows * numel * sizeof(float), "deterministic step batches", &x);
    if (st == ODY_OK && rows > 0)
        st = ody_alloc(ctx, rows * sizeof(int32_t), "deterministic step labels", &y);
    if (st == ODY_OK && rows > 0)
        st = ody_alloc(ctx, rows * sizeof(int64_t), "deterministic step ids", &ids);
    loop->step_x = x;
    loop->step_y = y;
    loop->step_ids = ids;
    /* The exact sum is collective (its shared memory is the node's): every
     * rank creates it, or none. */
    st = ody_dist_agree(ctx, st);
    if (st == ODY_OK)
        st = ody_exact_create(ctx, loop->model, bucket_bytes,
                              loop->cfg->distributed.shared_memory, &loop->exact);
    if (st != ODY_OK)
        ody_loop_disable_exact(loop);
    return st;
}

void ody_loop_disable_exact(ody_training_loop *loop)
{
    ody_ctx *ctx = loop->ctx;
    size_t rows = loop->step_capacity, numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    ody_exact_destroy(ctx, loop->exact);
    ody_free(ctx, loop->step_x, rows * numel * sizeof(float));
    ody_free(ctx, loop->step_y, rows * sizeof(int32_t));
    ody_free(ctx, loop->step_ids, rows * sizeof(int64_t));
    loop->exact = NULL;
    loop->step_x = NULL;
    loop->step_y = NULL;
    loop->step_ids = NULL;
    loop->step_capacity = 0;
    loop->chunk = 0;
}
