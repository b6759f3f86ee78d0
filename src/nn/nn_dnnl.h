/*
 * The oneDNN backend's shared pieces (src/nn/dnnl.c), internal to src/nn:
 * the process's CPU engine and stream, error text, and reorders between
 * the project's plain layouts (NCHW activations, OIHW weights) and the
 * blocked layouts oneDNN's kernels prefer.
 *
 * Memory objects are created without their own storage (DNNL_MEMORY_NONE)
 * and pointed at the op's staging buffers or the caller's before each
 * execution, so nothing is allocated inside a training step once a
 * layer's plans exist.
 */
#ifndef ODYSSEY_NN_DNNL_H
#define ODYSSEY_NN_DNNL_H

#include "nn/conv_internal.h"

#include <oneapi/dnnl/dnnl.h>

/* The engine and stream, created on first use; ODY_ERR_CONFIG when oneDNN has no CPU engine here. */
ody_status nn_dnnl_engine(ody_ctx *ctx, dnnl_engine_t *engine, dnnl_stream_t *stream);

/* oneDNN's status as words ("unimplemented", "out of memory", ...). */
const char *nn_dnnl_status_text(dnnl_status_t s);

/* ODY_OK, or an error "<what>: <status>" (ODY_ERR_NOMEM for out of memory, else ODY_ERR_CONFIG). */
ody_status nn_dnnl_check(ody_ctx *ctx, dnnl_status_t s, const char *what);

/* A memory object of desc without storage (its handle is set before each use). */
ody_status nn_dnnl_memory(ody_ctx *ctx, const dnnl_memory_desc_t *desc, dnnl_memory_t *out);

/* Point m at p and return m, for an argument list. */
static inline dnnl_memory_t nn_dnnl_at(dnnl_memory_t m, const void *p)
{
    dnnl_memory_set_data_handle(m, (void *)p);
    return m;
}

/* Floats that memory of desc takes (its bytes rounded up to whole floats). */
static inline size_t nn_dnnl_floats(const dnnl_memory_desc_t *desc)
{
    return (dnnl_memory_desc_get_size(desc) + sizeof(float) - 1) / sizeof(float);
}

/*
 * A conversion between two descriptions of the same tensor (layout, data
 * type). When they are equal it is a no-op and `same` is set: the caller
 * uses the source buffer as it is.
 */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
    bool same;
} nn_dnnl_reorder;

ody_status nn_dnnl_reorder_make(ody_ctx *ctx, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                nn_dnnl_reorder *r);
/* to = from converted; a no-op when same (and when *status already holds a failure, which it keeps). */
void nn_dnnl_reorder_run(dnnl_status_t *status, const nn_dnnl_reorder *r, const void *from, void *to);
void nn_dnnl_reorder_free(nn_dnnl_reorder *r);

/*
 * Execute a primitive on the stream with nargs arguments, unless *status
 * already holds a failure; *status gets the result. A pass runs its
 * primitives through one status and checks it once at its end.
 */
void nn_dnnl_execute(dnnl_status_t *status, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args);

/* A primitive of pd, or an error naming what. pd is kept by the caller. */
ody_status nn_dnnl_primitive(ody_ctx *ctx, const_dnnl_primitive_desc_t pd, const char *what,
                             dnnl_primitive_t *out);

/* The implementation oneDNN chose for pd ("jit:avx512_core", "gemm:jit"). */
const char *nn_dnnl_impl(const_dnnl_primitive_desc_t pd);

/* True when the CPU computes in bf16 natively (AVX512_BF16 or AMX), as oneDNN sees it. */
bool nn_dnnl_has_bf16(void);

/* What oneDNN's kernels run on here, e.g. "avx512_core_bf16". */
const char *nn_dnnl_isa_name(void);

/*
 * A layer's oneDNN primitives (dnnl_op.c): a convolution (conv2d's onednn
 * algorithm) or an inner product (linear with bf16 compute), made per
 * batch size ("plans"), on the layer's fp32 tensors in the project's
 * layouts, computing in fp32 or bf16.
 */
typedef enum { NN_DNNL_CONVOLUTION = 0, NN_DNNL_INNER_PRODUCT } nn_dnnl_kind;

typedef struct {
    nn_dnnl_kind kind;
    nn_conv_geom conv;             /* convolution */
    int in_features, out_features; /* inner product: in (n, IN), W (OUT, IN) */
    bool bf16;                     /* bf16 inputs and weights, fp32 accumulation and outputs */
    const char *layer; /* its name, for errors ("conv2") */
    bool relu; /* a relu fused as a post-op: out = relu(op); backward takes the relu output's gradient */
    int pool_k; /* > 0 (with relu, convolution): a k x k max pool at stride k fused after the relu; out is
                   the pooled output (the conv output's sides must be multiples of k) */
    bool stateless; /* keep nothing from forward to backward (lockstep runs): backward restages its input */
} nn_dnnl_shape;

typedef struct nn_dnnl_op nn_dnnl_op;

ody_status nn_dnnl_op_create(ody_ctx *ctx, const nn_dnnl_shape *shape, nn_dnnl_op **out);
void nn_dnnl_op_destroy(nn_dnnl_op *c);
/* Make the plan for batches of max_batch (replacing the previous one); errors say why oneDNN cannot. */
ody_status nn_dnnl_op_plan(nn_dnnl_op *c, int max_batch);
/* Make (or find) the plan for batches of n <= max_batch now, rather than at first use. */
ody_status nn_dnnl_op_plan_batch(nn_dnnl_op *c, int n);
/* The kernel oneDNN chose for the forward pass ("jit:avx512_core"). */
const char *nn_dnnl_op_impl(const nn_dnnl_op *c);
/*
 * out = op(in) + b; n <= the planned batch. A plan that cannot be made
 * for n (out of memory) or a primitive that fails is an error recorded on
 * the op's context (naming the layer), returned for the model to stop at.
 */
ody_status nn_dnnl_op_forward(nn_dnnl_op *c, const float *w, const float *b, int n, const float *in, float *out);
/* dw, db += this batch's gradients; din (when not NULL) = the input gradient; out is what forward wrote. */
ody_status nn_dnnl_op_backward(nn_dnnl_op *c, const float *w, float *dw, float *db, int n, const float *in,
                               const float *out, const float *dout, float *din);

#endif /* ODYSSEY_NN_DNNL_H */
