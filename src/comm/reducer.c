/* comm: the gradient reducer (bucketed nonblocking or one blocking allreduce,
 * in float32 or, for half the bytes, bfloat16/float16). */
#include "odyssey/comm.h"
#include "odyssey/tensor.h"

#include "comm/comm_internal.h"

#include <stdlib.h>

struct ody_reducer {
    ody_ctx *ctx;
    ody_reduce_mode mode;
    ody_wire_type wire;
    float *grads;
    size_t nfloats;
    uint16_t *wire_buf;  /* half-precision copy of the gradients (not F32) */
    MPI_Op half_sum;     /* sum of bf16 or f16 values (not F32) */
    int nbuckets;
    ody_bucket *buckets; /* in launch order: last layers first */
    int next;          /* first bucket not yet started */
    bool idle_sleep;   /* more ranks than cores here: sleep instead of spinning */
    uint64_t bytes_sent;
    ody_status error;
};

/* MPI user ops: sum half-precision values in float, one rounding per hop. */
static void bf16_sum_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    ody_bf16_sum(in, inout, (size_t)*len);
}

static void f16_sum_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    ody_f16_sum(in, inout, (size_t)*len);
}

static ody_status setup_wire(ody_ctx *ctx, ody_reducer *r, ody_wire_type wire)
{
    r->wire = wire;
    r->half_sum = MPI_OP_NULL;
    if (wire == ODY_WIRE_F32)
        return ODY_OK;
    void *buf = NULL;
    ody_status st = ody_alloc(ctx, r->nfloats * sizeof(uint16_t), "half-precision gradients", &buf);
    if (st != ODY_OK)
        return st;
    r->wire_buf = buf;
    if (MPI_Op_create(wire == ODY_WIRE_BF16 ? bf16_sum_op : f16_sum_op, 1, &r->half_sum) !=
        MPI_SUCCESS)
        return ody_fail(ctx, ODY_ERR_MPI, "cannot create the half-precision sum operation");
    return ODY_OK;
}

ody_status ody_reducer_create(ody_ctx *ctx, ody_model *model, ody_reduce_mode mode,
                              size_t bucket_bytes, ody_wire_type wire, ody_reducer **out)
{
    *out = NULL;
    ody_reducer *r = calloc(1, sizeof *r);
    size_t floats = (mode == ODY_REDUCE_BLOCKING) ? SIZE_MAX : bucket_bytes / sizeof(float);
    if (r)
        r->nbuckets = ody_plan_buckets(model, floats, &r->buckets);
    if (!r || r->nbuckets < 0) {
        free(r);
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the gradient reducer");
    }
    r->ctx = ctx;
    r->mode = mode;
    r->grads = model->grads.data;
    r->nfloats = model->grads.size;
    r->idle_sleep = ody_ranks_outnumber_cores(ctx);
    ody_status st = setup_wire(ctx, r, wire);
    if (st != ODY_OK) {
        ody_reducer_destroy(ctx, r);
        return st;
    }
    *out = r;
    return ODY_OK;
}

void ody_reducer_destroy(ody_ctx *ctx, ody_reducer *r)
{
    if (!r)
        return;
    if (r->half_sum != MPI_OP_NULL)
        MPI_Op_free(&r->half_sum);
    ody_free(ctx, r->wire_buf, r->nfloats * sizeof(uint16_t));
    free(r->buckets);
    free(r);
}

/* What travels for floats [begin, end): the gradients themselves, or their
 * half-precision copy made now. */
static void *wire_data(ody_reducer *r, size_t begin, size_t end, MPI_Datatype *type, MPI_Op *op)
{
    if (r->wire == ODY_WIRE_F32) {
        *type = MPI_FLOAT;
        *op = MPI_SUM;
        return r->grads + begin;
    }
    if (r->wire == ODY_WIRE_BF16)
        ody_f32_to_bf16(r->grads + begin, r->wire_buf + begin, end - begin);
    else
        ody_f32_to_f16(r->grads + begin, r->wire_buf + begin, end - begin);
    *type = MPI_UINT16_T;
    *op = r->half_sum;
    return r->wire_buf + begin;
}

/* After the reduction: half-precision sums back into the float gradients. */
static void unwire(ody_reducer *r, size_t begin, size_t end)
{
    if (r->wire == ODY_WIRE_BF16)
        ody_bf16_to_f32(r->wire_buf + begin, r->grads + begin, end - begin);
    else if (r->wire == ODY_WIRE_F16)
        ody_f16_to_f32(r->wire_buf + begin, r->grads + begin, end - begin);
}

static size_t wire_bytes(const ody_reducer *r, size_t floats)
{
    return floats * (r->wire == ODY_WIRE_F32 ? sizeof(float) : sizeof(uint16_t));
}

int ody_reducer_buckets(const ody_reducer *r) { return r->nbuckets; }

uint64_t ody_reducer_bytes_sent(const ody_reducer *r) { return r->bytes_sent; }

static void start_bucket(ody_reducer *r, ody_bucket *b)
{
    int count = (int)(b->end - b->begin);
    MPI_Datatype type;
    MPI_Op op;
    void *data = wire_data(r, b->begin, b->end, &type, &op);
    int rc = MPI_Iallreduce(MPI_IN_PLACE, data, count, type, op, r->ctx->comm, &b->req);
    if (rc != MPI_SUCCESS && r->error == ODY_OK)
        r->error = ody_fail(r->ctx, ODY_ERR_MPI, "gradient allreduce of %d values failed", count);
    r->bytes_sent += wire_bytes(r, (size_t)count);
}

void ody_reducer_layer_ready(void *reducer, int layer)
{
    ody_reducer *r = reducer;
    if (r->mode == ODY_REDUCE_BLOCKING)
        return;
    while (r->next < r->nbuckets && r->buckets[r->next].ready_layer >= layer)
        start_bucket(r, &r->buckets[r->next++]);
    ody_progress_buckets(r->buckets, r->next);
}

ody_status ody_reducer_finish(ody_reducer *r)
{
    ody_wait_begin(r->ctx, ODY_WAIT_GRADIENTS);
    if (r->mode == ODY_REDUCE_BLOCKING) {
        ody_bucket *b = &r->buckets[0];
        MPI_Datatype type;
        MPI_Op op;
        void *data = wire_data(r, b->begin, b->end, &type, &op);
        int rc = MPI_Allreduce(MPI_IN_PLACE, data, (int)(b->end - b->begin), type, op,
                               r->ctx->comm);
        r->bytes_sent += wire_bytes(r, b->end - b->begin);
        if (rc != MPI_SUCCESS && r->error == ODY_OK)
            r->error = ody_fail(r->ctx, ODY_ERR_MPI, "gradient allreduce failed");
        unwire(r, b->begin, b->end);
    } else {
        while (r->next < r->nbuckets)
            start_bucket(r, &r->buckets[r->next++]);
        for (int i = 0; i < r->nbuckets; i++) {
            if (ody_wait_request(&r->buckets[i].req, r->idle_sleep) != MPI_SUCCESS && r->error == ODY_OK)
                r->error = ody_fail(r->ctx, ODY_ERR_MPI, "waiting for gradient bucket %d failed", i);
            unwire(r, r->buckets[i].begin, r->buckets[i].end);
        }
    }
    r->next = 0;
    ody_wait_end(r->ctx);
    ody_status st = r->error;
    r->error = ODY_OK;
    return st;
}
