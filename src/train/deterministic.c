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
 * - randomness (order, dropout) is keyed by seed, epoch, step and sample;
 * - so who computes a chunk is free: with chunk stealing (dist's
 *   ody_steal, distributed.work_stealing), each rank copies its share into
 *   its slot in node shared memory and the node's ranks take chunks from
 *   each other's queues until none is left; a redo runs the same chunks
 *   on the same ranks again.
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

/* One chunk: forward, loss, backward, exact add. `last`: the rank's last
 * chunk of the step, whose backward starts the vote and adds layer by layer
 * through ody_exact_layer_ready, which sends finished buckets at once (with
 * chunk stealing, op_backward decides it instead). Returns whether it was. */
static bool run_chunk(ody_training_loop *loop, const ody_batch *chunk, bool last, ody_status *st)
{
    loop->last_micro = last;
    /* No zero_grad: ody_exact_add leaves the gradients at zero. */
    *st = ody_training_step(&ody_loop_step_ops, loop, chunk, false, false, &loop->last_step);
    bool was_last = loop->last_micro;
    if (*st == ODY_OK && !was_last)
        ody_exact_add(loop->exact, loop->model->grads.data);
    loop->last_micro = false;
    return was_last;
}

/* The held batches cut into chunks: each chunk's (first row, rows) into
 * table (2 per chunk); returns how many. */
static int cut_chunks(const ody_training_loop *loop, int32_t *table)
{
    int row = 0, k = 0;
    for (int mb = 0; mb < loop->step_micro; mb++) {
        int end = row + loop->step_rows[mb];
        for (int n = 0; row < end; row += n, k++) {
            n = end - row < loop->chunk ? end - row : (int)loop->chunk;
            table[2 * k] = row;
            table[2 * k + 1] = n;
        }
    }
    return k;
}

/* A rank's slot in node shared memory (chunk stealing): its chunk table
 * (2 x max_chunks), then its rows' samples, labels and ids; twice, for
 * steps of even and odd number (global_step before the step): while
 * others may still run chunks of this step, the next step's rows are read
 * into the other half (read_ahead). */
typedef struct {
    int32_t *table;
    float *x;
    int32_t *y;
    int64_t *ids;
} slot_view;

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

/* Owner's slot for steps of parity `half` (v NULL: only the size of one
 * half): the layout, in one place. */
static size_t slot_layout(const ody_training_loop *loop, int owner, int half, slot_view *v)
{
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape), rows = loop->steal_rows;
    size_t at[4], size = 0, len[4] = {2 * (size_t)loop->max_chunks * sizeof(int32_t),
                                      rows * numel * sizeof(float), rows * sizeof(int32_t),
                                      rows * sizeof(int64_t)};
    for (int i = 0; i < 4; i++) {
        at[i] = size;
        size += align64(len[i]);
    }
    if (v) {
        unsigned char *p = (unsigned char *)ody_steal_slot(loop->steal, owner) + (size_t)half * size;
        *v = (slot_view){(int32_t *)(p + at[0]), (float *)(p + at[1]), (int32_t *)(p + at[2]),
                         (int64_t *)(p + at[3])};
    }
    return size;
}

/* The half of a slot that step number global_step uses. */
static int slot_half(int64_t global_step) { return (int)(global_step & 1); }

/* Owner's slot for the step in progress. */
static slot_view slot_of(const ody_training_loop *loop, int owner)
{
    slot_view v;
    slot_layout(loop, owner, slot_half(loop->state.global_step), &v);
    return v;
}

/* Chunk k of table (first row, rows) over the rows x, y, ids. */
static ody_batch table_chunk(const ody_training_loop *loop, const int32_t *table, int k, float *x,
                             int32_t *y, int64_t *ids)
{
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    int row = table[2 * k];
    return (ody_batch){.n = table[2 * k + 1], .x = x + (size_t)row * numel, .y = y + row,
                       .ids = ids + row};
}

static ody_batch slot_chunk(const ody_training_loop *loop, int owner, int index)
{
    slot_view v = slot_of(loop, owner);
    return table_chunk(loop, v.table, index, v.x, v.y, v.ids);
}

/* The step's number for the steal queues: the same on every rank, never 0. */
static uint32_t steal_round(const ody_training_loop *loop)
{
    uint32_t round = (uint32_t)(loop->state.global_step + 1);
    return round ? round : 1;
}

/* Chunk stealing: open this rank's queue over the rows read_step put in
 * its slot, and run chunks (own first, then others') until none is left. */
static ody_status run_shared_chunks(ody_training_loop *loop, bool overlap)
{
    int me = ody_steal_me(loop->steal);
    uint32_t round = steal_round(loop);
    ody_steal_publish(loop->steal, round, cut_chunks(loop, slot_of(loop, me).table));
    loop->nclaimed = 0;
    loop->steal_round = round;
    loop->steal_decides = overlap; /* op_backward: last when nothing is left to take */
    ody_status st = ODY_OK;
    int owner = 0, index = 0;
    bool last = false;
    while (st == ODY_OK && !last && ody_steal_claim(loop->steal, round, &owner, &index)) {
        ody_batch chunk = slot_chunk(loop, owner, index);
        loop->claimed[2 * loop->nclaimed] = owner;
        loop->claimed[2 * loop->nclaimed++ + 1] = index;
        loop->chunks_stolen += owner != me;
        loop->chunks_run++;
        last = run_chunk(loop, &chunk, false, &st);
    }
    loop->steal_decides = false;
    return st;
}

/* Every local chunk of the held batches (with stealing: the chunks this
 * rank takes; in a redo, the same ones again). With `overlap`, the last
 * chunk's backward starts the vote and sends buckets as they finish (the
 * first round of a step); a redo goes without. */
static ody_status run_chunks(ody_training_loop *loop, bool overlap)
{
    memset(&loop->last_step, 0, sizeof loop->last_step);
    if (loop->steal && overlap)
        return run_shared_chunks(loop, overlap);
    ody_status st = ODY_OK;
    if (loop->steal) {
        for (int k = 0; k < loop->nclaimed && st == ODY_OK; k++) {
            ody_batch chunk = slot_chunk(loop, loop->claimed[2 * k], loop->claimed[2 * k + 1]);
            run_chunk(loop, &chunk, false, &st);
        }
        return st;
    }
    const ody_batch *held = &loop->step_view;
    int nchunks = cut_chunks(loop, loop->chunk_table);
    for (int k = 0; k < nchunks && st == ODY_OK; k++) {
        ody_batch chunk = table_chunk(loop, loop->chunk_table, k, held->x, held->y, held->ids);
        run_chunk(loop, &chunk, overlap && k == nchunks - 1, &st);
    }
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
        double t0 = ody_now(), data0 = loop->state.times.seconds[ODY_PHASE_DATA];
        ody_status st = ody_exact_wait(loop->exact, &redo, &nonfinite);
        /* reading ahead in the wait (read_rows) counted as data, not waiting */
        ody_loop_phase(loop, ODY_PHASE_COMM_WAIT,
                       t0 + loop->state.times.seconds[ODY_PHASE_DATA] - data0);
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

/* Read `micro` micro-batches, the loader's next, into view's rows: step_x,
 * or with chunk stealing a half of this rank's slot, where other ranks can
 * take them. Without stealing, one micro-batch stays in the loader's
 * buffer (view points there), valid until the next read. rows: each
 * one's row count. */
static ody_status read_rows(ody_training_loop *loop, int64_t first, int64_t micro, ody_batch *view,
                           int *rows)
{
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    int row = 0;
    for (int64_t m = 0; m < micro; m++) {
        ody_batch b;
        bool done = false;
        double t0 = ody_now();
        ody_status st = ody_loader_next(loop->ctx, loop->loader, &b, &done);
        if (st == ODY_OK && done)
            st = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "loader ended the epoch early at step %lld",
                          (long long)(first + m));
        if (st != ODY_OK)
            return st;
        if (micro == 1 && !loop->steal) {
            *view = b;
        } else if (b.n > 0) {
            memcpy(view->x + (size_t)row * numel, b.x, (size_t)b.n * numel * sizeof(float));
            memcpy(view->y + row, b.y, (size_t)b.n * sizeof *b.y);
            memcpy(view->ids + row, b.ids, (size_t)b.n * sizeof *b.ids);
        }
        rows[m] = b.n;
        row += b.n;
        ody_loop_phase(loop, ODY_PHASE_DATA, t0);
    }
    return ODY_OK;
}

/*
 * Chunk stealing: called while this rank waits for the others at the end
 * of a step (ody_exact_while_waiting), it reads the next step's rows into
 * the other half of its slot, work the step start would do anyway. Not
 * past the epoch's end, so the next step (global_step + 1) is the one at
 * the next position of this epoch; read_step uses the rows when that step
 * comes (and reports an error of the read only then).
 */
static void read_ahead(void *arg)
{
    ody_training_loop *loop = arg;
    const ody_loop_state *s = &loop->state;
    int64_t next = s->step_in_epoch + loop->step_micro;
    if (next >= s->steps_per_epoch)
        return;
    slot_view v;
    slot_layout(loop, ody_steal_me(loop->steal), slot_half(s->global_step + 1), &v);
    ody_batch view = {.x = v.x, .y = v.y, .ids = v.ids};
    loop->ahead_status = read_rows(loop, next, ody_loop_micro_at(loop, next), &view,
                                   loop->ahead_rows);
    loop->ahead_for = s->global_step + 1;
}

/* The step's rows into step_view: read ahead, or read now. */
static ody_status read_step(ody_training_loop *loop, int64_t micro)
{
    const ody_loop_state *s = &loop->state;
    int64_t ahead_for = loop->ahead_for;
    loop->ahead_for = 0;
    loop->step_micro = (int)micro;
    loop->steps_shared += loop->steal != NULL;
    if (ahead_for != 0 && ahead_for == s->global_step) {
        loop->steps_ahead++;
        memcpy(loop->step_rows, loop->ahead_rows, (size_t)micro * sizeof *loop->step_rows);
        return loop->ahead_status;
    }
    ody_status st = ODY_OK;
    if (ahead_for != 0) /* read past where this step starts: back to it */
        st = ody_loader_start_epoch(loop->ctx, loop->loader, s->epoch, s->step_in_epoch);
    return st == ODY_OK ? read_rows(loop, s->step_in_epoch, micro, &loop->step_view, loop->step_rows)
                        : st;
}

ody_status ody_loop_train_update_exact(ody_training_loop *loop)
{
    int64_t micro = ody_loop_begin_update(loop);
    slot_view mine = loop->steal ? slot_of(loop, ody_steal_me(loop->steal)) : (slot_view){0};
    loop->step_view = loop->steal
                          ? (ody_batch){.x = mine.x, .y = mine.y, .ids = mine.ids}
                          : (ody_batch){.x = loop->step_x, .y = loop->step_y, .ids = loop->step_ids};
    ody_status st = read_step(loop, micro);
    if (st != ODY_OK)
        return ody_loop_fail_step(loop, st);
    ody_exact_begin(loop->exact, step_chunks(loop));
    ody_model_zero_grad(loop->model);
    loop->vote.started = false;
    if (loop->steal) /* the next step's rows, while waiting for this one's sum */
        ody_exact_while_waiting(loop->exact, read_ahead, loop);
    st = run_chunks(loop, true);
    if (st != ODY_OK) {
        ody_exact_while_waiting(loop->exact, NULL, NULL);
        return st;
    }
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

/* Release step_x and friends (step_capacity rows). */
static void free_step_batches(ody_training_loop *loop)
{
    size_t rows = loop->step_capacity, numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    ody_free(loop->ctx, loop->step_x, rows * numel * sizeof(float));
    ody_free(loop->ctx, loop->step_y, rows * sizeof(int32_t));
    ody_free(loop->ctx, loop->step_ids, rows * sizeof(int64_t));
    loop->step_x = NULL;
    loop->step_y = NULL;
    loop->step_ids = NULL;
    loop->step_capacity = 0;
}

ody_status ody_loop_enable_exact(ody_training_loop *loop, int64_t chunk, size_t train_rows)
{
    ody_ctx *ctx = loop->ctx;
    if (loop->accumulation > ODY_MAX_MICRO_BATCHES)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "training.accumulation_steps: at most %d in deterministic mode",
                        ODY_MAX_MICRO_BATCHES);
    loop->chunk = chunk;
    loop->step_capacity = loop->accumulation > 1 ? step_capacity(loop, train_rows) : 0;
    loop->max_chunks = (int)(loop->accumulation * (((int64_t)train_rows + chunk - 1) / chunk));
    if (loop->max_chunks < 1)
        loop->max_chunks = 1;
    size_t rows = loop->step_capacity, numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    size_t claims = 2 * (size_t)ctx->node_size * (size_t)loop->max_chunks;
    void *x = NULL, *y = NULL, *ids = NULL, *table = NULL, *claimed = NULL;
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
    if (st == ODY_OK)
        st = ody_alloc(ctx, 2 * (size_t)loop->max_chunks * sizeof(int32_t), "chunk table", &table);
    if (st == ODY_OK)
        st = ody_alloc(ctx, claims * sizeof(int32_t), "claimed chunks", &claimed);
    loop->step_x = x;
    loop->step_y = y;
    loop->step_ids = ids;
    loop->chunk_table = table;
    loop->claimed = claimed;
    /* The exact sum and the steal slots are collective (their shared
     * memory is the node's): every rank creates them, or none. */
    st = ody_dist_agree(ctx, st);
    if (st == ODY_OK)
        st = ody_exact_create(ctx, loop->model, bucket_bytes,
                              loop->cfg->distributed.shared_memory, &loop->exact);
    loop->steal_rows = (size_t)loop->accumulation * train_rows;
    if (st == ODY_OK && ody_exact_shared(loop->exact) && loop->cfg->distributed.work_stealing)
        st = ody_steal_create(ctx, 2 * slot_layout(loop, 0, 0, NULL), loop->max_chunks,
                              &loop->steal);
    if (st == ODY_OK && loop->steal)
        free_step_batches(loop); /* the step's rows go to this rank's slot instead */
    if (st != ODY_OK)
        ody_loop_disable_exact(loop);
    return st;
}

void ody_loop_disable_exact(ody_training_loop *loop)
{
    ody_ctx *ctx = loop->ctx;
    size_t claims = 2 * (size_t)ctx->node_size * (size_t)loop->max_chunks;
    ody_steal_destroy(loop->steal);
    ody_exact_destroy(ctx, loop->exact);
    free_step_batches(loop);
    ody_free(ctx, loop->chunk_table, 2 * (size_t)loop->max_chunks * sizeof(int32_t));
    ody_free(ctx, loop->claimed, claims * sizeof(int32_t));
    loop->steal = NULL;
    loop->exact = NULL;
    loop->chunk_table = NULL;
    loop->claimed = NULL;
    loop->steal_rows = 0;
    loop->max_chunks = 0;
    loop->chunk = 0;
}
