/*
 * train: the chunk plan of a step (both reduction strategies use it).
 *
 * A step's rows are its micro-batches' shares of this rank, read through
 * the loader; a chunk is `chunk` consecutive rows of one micro-batch (the
 * last one of a micro-batch may be shorter), so chunks sit at fixed global
 * positions: with a fixed chunk size (deterministic mode) a chunk's
 * computation has the same shapes and inputs, hence the same bits, on any
 * rank and at any rank count. The fast mode uses the whole share of a
 * micro-batch as one chunk.
 *
 * With chunk stealing (deterministic mode, a node's ranks summing in
 * shared memory), each rank copies its rows into its slot in node shared
 * memory and the node's ranks take chunks from each other's queues until
 * none is left; a redo runs the same chunks on the same ranks again.
 * While a rank waits at the end of a step, the next step's rows are read
 * into the other half of its slot (ody_chunk_plan_read_ahead).
 *
 * The rows of a step are kept (held), so that a step whose fixed-point
 * sum outgrows its scale can be redone.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "train/chunks.h"

/* Rows of a step: a view (the loader's buffer, or held, or a slot half). */
typedef struct {
    float *x;
    int32_t *y;
    int64_t *ids;
} rows_view;

struct ody_chunk_plan {
    ody_training_loop *loop;  /* read: state, config, model, loader, phase times */
    int64_t chunk;            /* rows per chunk (INT_MAX: a micro-batch's share) */
    int max_chunks;           /* chunks a rank's share of a step has at most */
    /* the step's rows */
    rows_view held;           /* (capacity, sample) the step's micro-batches, or NULL */
    size_t capacity;          /* rows held holds (0: one micro-batch at most, kept in place) */
    rows_view rows;           /* the step's rows (held, the loader's batch, or a slot half) */
    int micro_rows[ODY_MAX_MICRO_BATCHES]; /* rows of each micro-batch */
    int micro;                /* micro-batches held */
    /* the round of chunks in progress */
    int32_t *table;           /* (2 x max_chunks) first row and rows of each chunk */
    int nchunks, next;        /* chunks in the table, the next to run */
    bool first, compute;      /* the step's first round; this rank runs chunks */
    bool ended;               /* the last chunk of a stealing round was run */
    /* chunk stealing (NULL: none) */
    ody_steal *steal;
    size_t slot_rows;         /* rows a slot half holds */
    uint32_t round;           /* the step's number for the steal queues */
    int32_t *claimed;         /* (2 x node ranks x max_chunks) owner and index of each chunk
                               * this rank ran this step, for a redo */
    int nclaimed;
    /* the next step's rows, read while waiting at this one's end */
    struct {
        int64_t step;         /* global_step of the step they are for; 0: none read */
        int rows[ODY_MAX_MICRO_BATCHES];
        ody_status status;
    } ahead;
    ody_chunk_stats stats;
};

/* --------------------------------------------------------------- slots */

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

/* A rank's slot in node shared memory: its chunk table (2 x max_chunks),
 * then its rows' samples, labels and ids; twice, for steps of even and odd
 * number (global_step before the step): while others may still run
 * chunks of this step, the next step's rows are read into the other half.
 * Owner's half `half` (v NULL: only the size of one half): the layout, in
 * one place. */
static size_t slot_layout(const ody_chunk_plan *p, int owner, int half, int32_t **table,
                          rows_view *v)
{
    size_t numel = (size_t)ody_shape_numel(&p->loop->model->input_shape), rows = p->slot_rows;
    size_t at[4], size = 0, len[4] = {2 * (size_t)p->max_chunks * sizeof(int32_t),
                                      rows * numel * sizeof(float), rows * sizeof(int32_t),
                                      rows * sizeof(int64_t)};
    for (int i = 0; i < 4; i++) {
        at[i] = size;
        size += align64(len[i]);
    }
    if (v) {
        unsigned char *base = (unsigned char *)ody_steal_slot(p->steal, owner) + (size_t)half * size;
        *table = (int32_t *)(base + at[0]);
        *v = (rows_view){(float *)(base + at[1]), (int32_t *)(base + at[2]),
                         (int64_t *)(base + at[3])};
    }
    return size;
}

/* The half of a slot that step number global_step uses. */
static int slot_half(int64_t global_step) { return (int)(global_step & 1); }

/* Owner's slot for the step in progress. */
static void slot_of(const ody_chunk_plan *p, int owner, int32_t **table, rows_view *v)
{
    slot_layout(p, owner, slot_half(p->loop->state.global_step), table, v);
}

/* ---------------------------------------------------------------- rows */

/* Read `micro` micro-batches, the loader's next, into view's rows: held,
 * or with chunk stealing a half of this rank's slot, where other ranks can
 * take them. Without stealing, one micro-batch stays in the loader's
 * buffer (view points there), valid until the next read. rows: each
 * one's row count. */
static ody_status read_rows(ody_chunk_plan *p, int64_t first, int64_t micro, rows_view *view,
                           int *rows)
{
    ody_training_loop *loop = p->loop;
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    int row = 0;
    for (int64_t m = 0; m < micro; m++) {
        ody_batch b;
        bool done = false;
        double t0 = ody_now();
        ody_status st = ody_loader_next(loop->ctx, loop->data.loader, &b, &done);
        if (st == ODY_OK && done)
            st = ody_fail(loop->ctx, ODY_ERR_INTERNAL, "loader ended the epoch early at step %lld",
                          (long long)(first + m));
        if (st != ODY_OK)
            return st;
        if (micro == 1 && !p->steal) {
            *view = (rows_view){b.x, b.y, b.ids};
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

void ody_chunk_plan_read_ahead(void *plan)
{
    ody_chunk_plan *p = plan;
    const ody_loop_state *s = &p->loop->state;
    int64_t next = s->step_in_epoch + p->micro;
    if (next >= s->steps_per_epoch) /* not past the epoch's end */
        return;
    int32_t *table;
    rows_view v;
    slot_layout(p, ody_steal_me(p->steal), slot_half(s->global_step + 1), &table, &v);
    p->ahead.status = read_rows(p, next, ody_loop_micro_at(p->loop, next), &v, p->ahead.rows);
    p->ahead.step = s->global_step + 1;
}

ody_status ody_chunk_plan_load(ody_chunk_plan *p, int64_t micro)
{
    ody_training_loop *loop = p->loop;
    const ody_loop_state *s = &loop->state;
    int32_t *table = p->table;
    if (p->steal)
        slot_of(p, ody_steal_me(p->steal), &table, &p->rows);
    else
        p->rows = p->held;
    int64_t ahead_for = p->ahead.step;
    p->ahead.step = 0;
    p->micro = (int)micro;
    p->stats.steps_shared += p->steal != NULL;
    if (ahead_for != 0 && ahead_for == s->global_step) {
        p->stats.steps_ahead++;
        memcpy(p->micro_rows, p->ahead.rows, (size_t)micro * sizeof *p->micro_rows);
        return p->ahead.status;
    }
    ody_status st = ODY_OK;
    if (ahead_for != 0) /* read past where this step starts: back to it */
        st = ody_loader_start_epoch(loop->ctx, loop->data.loader, s->epoch, s->step_in_epoch);
    return st == ODY_OK ? read_rows(p, s->step_in_epoch, micro, &p->rows, p->micro_rows) : st;
}

/* -------------------------------------------------------------- chunks */

/* The held rows cut into chunks: each chunk's (first row, rows) into
 * table (2 per chunk); returns how many. */
static int cut_chunks(const ody_chunk_plan *p, int32_t *table)
{
    int row = 0, k = 0;
    for (int mb = 0; mb < p->micro; mb++) {
        int end = row + p->micro_rows[mb];
        for (int n = 0; row < end; row += n, k++) {
            n = end - row < p->chunk ? end - row : (int)p->chunk;
            table[2 * k] = row;
            table[2 * k + 1] = n;
        }
    }
    return k;
}

int64_t ody_chunk_plan_step_chunks(const ody_chunk_plan *p)
{
    const ody_training_loop *loop = p->loop;
    const ody_loop_state *s = &loop->state;
    int64_t chunks = 0;
    for (int64_t m = 0; m < loop->accumulation && s->step_in_epoch + m < s->steps_per_epoch; m++)
        chunks += (ody_loop_step_count(loop, s->step_in_epoch + m) + p->chunk - 1) / p->chunk;
    return chunks;
}

/* Chunk k of table (first row, rows) over rows. */
static ody_batch table_chunk(const ody_chunk_plan *p, const int32_t *table, int k, rows_view rows)
{
    size_t numel = (size_t)ody_shape_numel(&p->loop->model->input_shape);
    int row = table[2 * k];
    return (ody_batch){.n = table[2 * k + 1], .x = rows.x + (size_t)row * numel,
                       .y = rows.y + row, .ids = rows.ids + row};
}

static ody_batch slot_chunk(const ody_chunk_plan *p, int owner, int index)
{
    int32_t *table;
    rows_view v;
    slot_of(p, owner, &table, &v);
    return table_chunk(p, table, index, v);
}

void ody_chunk_plan_begin_round(ody_chunk_plan *p, bool first, bool compute)
{
    p->first = first;
    p->compute = compute;
    p->next = 0;
    p->ended = false;
    if (!compute)
        return;
    if (p->steal && first) { /* open this rank's queue over its slot's rows */
        int32_t *table;
        rows_view v;
        slot_of(p, ody_steal_me(p->steal), &table, &v);
        /* the step's number for the steal queues: the same on every rank, never 0 */
        uint32_t round = (uint32_t)(p->loop->state.global_step + 1);
        p->round = round ? round : 1;
        ody_steal_publish(p->steal, p->round, cut_chunks(p, table));
        p->nclaimed = 0;
    } else if (!p->steal) {
        p->nchunks = cut_chunks(p, p->table);
    }
}

bool ody_chunk_plan_next(ody_chunk_plan *p, ody_batch *chunk)
{
    if (!p->compute)
        return false;
    if (!p->steal) {
        if (p->next >= p->nchunks)
            return false;
        *chunk = table_chunk(p, p->table, p->next++, p->rows);
        return true;
    }
    if (!p->first) { /* a redo: the chunks this rank ran, again */
        if (p->next >= p->nclaimed)
            return false;
        *chunk = slot_chunk(p, p->claimed[2 * p->next], p->claimed[2 * p->next + 1]);
        p->next++;
        return true;
    }
    int owner = 0, index = 0;
    if (p->ended || !ody_steal_claim(p->steal, p->round, &owner, &index))
        return false;
    *chunk = slot_chunk(p, owner, index);
    p->claimed[2 * p->nclaimed] = owner;
    p->claimed[2 * p->nclaimed++ + 1] = index;
    p->stats.chunks_stolen += owner != ody_steal_me(p->steal);
    p->stats.chunks_run++;
    return true;
}

bool ody_chunk_plan_last(ody_chunk_plan *p)
{
    if (!p->steal)
        return p->next == p->nchunks;
    /* stealing: the chunk being run is the last when nothing is left to
     * take, as seen now that its forward is done */
    p->ended = ody_steal_drained(p->steal, p->round);
    return p->ended;
}

bool ody_chunk_plan_stealing(const ody_chunk_plan *p) { return p->steal != NULL; }

ody_chunk_stats ody_chunk_plan_stats(const ody_chunk_plan *p) { return p->stats; }

/* ----------------------------------------------------------- lifecycle */

/* Release the held rows (capacity rows). */
static void free_step_rows(ody_chunk_plan *p)
{
    ody_ctx *ctx = p->loop->ctx;
    size_t numel = (size_t)ody_shape_numel(&p->loop->model->input_shape), rows = p->capacity;
    ody_free(ctx, p->held.x, rows * numel * sizeof(float));
    ody_free(ctx, p->held.y, rows * sizeof(int32_t));
    ody_free(ctx, p->held.ids, rows * sizeof(int64_t));
    p->held = (rows_view){NULL, NULL, NULL};
    p->capacity = 0;
}

ody_status ody_chunk_plan_create(ody_training_loop *loop, int64_t chunk, size_t train_rows,
                                 ody_chunk_plan **out)
{
    ody_ctx *ctx = loop->ctx;
    *out = NULL;
    if (loop->accumulation > ODY_MAX_MICRO_BATCHES)
        return ody_fail(ctx, ODY_ERR_CONFIG, "training.accumulation_steps: at most %d",
                        ODY_MAX_MICRO_BATCHES);
    ody_chunk_plan *p = calloc(1, sizeof *p);
    if (!p)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the chunk plan");
    p->loop = loop;
    p->chunk = chunk > 0 ? chunk : INT_MAX;
    int64_t per_micro = chunk > 0 ? ((int64_t)train_rows + chunk - 1) / chunk : 1;
    p->max_chunks = (int)(loop->accumulation * per_micro);
    if (p->max_chunks < 1)
        p->max_chunks = 1;
    p->slot_rows = (size_t)loop->accumulation * train_rows;
    size_t rows = loop->accumulation > 1 ? p->slot_rows : 0;
    size_t numel = (size_t)ody_shape_numel(&loop->model->input_shape);
    void *x = NULL, *y = NULL, *ids = NULL, *table = NULL;
    ody_status st = ODY_OK;
    if (rows > 0)
        st = ody_alloc(ctx, rows * numel * sizeof(float), "step batches", &x);
    if (st == ODY_OK && rows > 0)
        st = ody_alloc(ctx, rows * sizeof(int32_t), "step labels", &y);
    if (st == ODY_OK && rows > 0)
        st = ody_alloc(ctx, rows * sizeof(int64_t), "step ids", &ids);
    if (st == ODY_OK)
        st = ody_alloc(ctx, 2 * (size_t)p->max_chunks * sizeof(int32_t), "chunk table", &table);
    p->held = (rows_view){x, y, ids};
    p->capacity = rows;
    p->table = table;
    if (st != ODY_OK) {
        ody_chunk_plan_destroy(p);
        return st;
    }
    *out = p;
    return ODY_OK;
}

ody_status ody_chunk_plan_share(ody_chunk_plan *p)
{
    ody_ctx *ctx = p->loop->ctx;
    size_t claims = 2 * (size_t)ctx->node_size * (size_t)p->max_chunks;
    void *claimed = NULL;
    ody_status st = ody_comm_agree(ctx, ody_alloc(ctx, claims * sizeof(int32_t), "claimed chunks",
                                                  &claimed));
    p->claimed = claimed;
    if (st == ODY_OK)
        st = ody_steal_create(ctx, 2 * slot_layout(p, 0, 0, NULL, NULL), p->max_chunks, &p->steal);
    if (st == ODY_OK && p->steal)
        free_step_rows(p); /* the step's rows go to this rank's slot instead */
    return st;
}

void ody_chunk_plan_destroy(ody_chunk_plan *p)
{
    if (!p)
        return;
    ody_ctx *ctx = p->loop->ctx;
    size_t claims = 2 * (size_t)ctx->node_size * (size_t)p->max_chunks;
    ody_steal_destroy(p->steal);
    free_step_rows(p);
    ody_free(ctx, p->table, 2 * (size_t)p->max_chunks * sizeof(int32_t));
    ody_free(ctx, p->claimed, p->claimed ? claims * sizeof(int32_t) : 0);
    free(p);
}
