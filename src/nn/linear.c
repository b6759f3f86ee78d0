/*
 * linear: fully connected layer, out = in W^T + b, one GEMM per batch.
 * Any per-sample input shape is taken as flattened (IN = C*H*W).
 *
 *   in (n, IN), W (OUT, IN) params[0], b (OUT) params[1], out (n, OUT)
 *
 * The GEMMs are oneDNN's dnnl_sgemm (AVX-512 where the CPU has it) with
 * the onednn backend, OpenBLAS's cblas_sgemm with the openblas one; both
 * row-major with the same arguments. With bf16 compute the layer runs on
 * oneDNN's inner product primitives instead (dnnl_op.c: bf16 inputs and
 * weights, fp32 accumulation; oneDNN 2.6's C API has no bf16 GEMM).
 */
#include "nn/conv_internal.h" /* the kernels' transpose */
#include "nn/nn_dnnl.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

typedef struct {
    ody_layer base;
    int in_features, out_features;
    bool onednn;
    bool bf16;
    nn_dnnl_op *dnnl; /* bf16: the inner product's plans (made by linear_prepare) */
} linear_layer;

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, on the layer's backend. */
static void gemm(const linear_layer *f, bool trans_a, bool trans_b, int m, int n, int k, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc)
{
    if (f->onednn)
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    else
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m,
                    n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/*
 * out (n, OUT) = in W^T + b in one GEMM. When the output is wider than the
 * batch it runs the other way round, out^T (OUT, n) = W in^T + b, into yt
 * (OUT * n floats), then transposed: dnnl_sgemm is faster so (LeNet-5's
 * fc1: 10 against 14 us a call of 16 rows, 16 against 20 for 32; the VGG
 * net's first linear layer: 227 against 295; tests/bench/README.md). For a
 * narrow output (LeNet-5's fc3, ResNet-20's classifier) both cost about
 * the same, and it keeps the plain form.
 */
static void forward_rows(const linear_layer *f, int n, const float *in, const float *weight, const float *bias,
                         float *out, float *yt)
{
    int in_n = f->in_features, out_n = f->out_features;
    if (out_n <= n) {
        for (int s = 0; s < n; s++)
            for (int o = 0; o < out_n; o++)
                out[(size_t)s * out_n + o] = bias[o];
        gemm(f, false, true, n, out_n, in_n, in, in_n, weight, in_n, 1.0f, out, out_n);
        return;
    }
    for (int o = 0; o < out_n; o++)
        for (int s = 0; s < n; s++)
            yt[(size_t)o * n + s] = bias[o];
    gemm(f, false, true, out_n, n, in_n, weight, in_n, in, in_n, 1.0f, yt, n);
    nn_conv_kernels_active()->transpose(yt, n, out_n, n, out, (size_t)out_n); /* the level's 8 x 8 blocks */
}

/* The backward's GEMMs: dW (OUT, IN) += dout^T in, and din (n, IN) = dout W unless din is NULL. */
static void backward_rows(const linear_layer *f, int n, const float *in, const float *dout, const float *weight,
                          float *dw, float *din)
{
    int in_n = f->in_features, out_n = f->out_features;
    gemm(f, true, false, out_n, in_n, n, dout, out_n, in, in_n, 1.0f, dw, in_n);
    if (din)
        gemm(f, false, false, n, in_n, out_n, dout, out_n, weight, in_n, 0.0f, din, in_n);
}

/*
 * Evaluation runs in GEMMs of EVAL_ROWS rows, the last one padded with
 * zero rows in scratch: both libraries' GEMM results depend on the number
 * of rows (not on a row's place among them), and a sample's logits must
 * not depend on the batch around it, whose size differs with the rank
 * count (test_onednn_batch_independent). Training needs no such care: a
 * chunk's rows are fixed by the global batch.
 */
enum { EVAL_ROWS = 16 };

static void linear_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    linear_layer *f = (linear_layer *)l;
    if (f->dnnl) { /* oneDNN's inner product does not depend on the batch around a row */
        nn_keep_failure(l, nn_dnnl_op_forward(f->dnnl, l->params[0].value, l->params[1].value, n, in, out));
        return;
    }
    size_t in_n = (size_t)f->in_features, out_n = (size_t)f->out_features;
    float *pad_in = l->scratch, *pad_out = pad_in + EVAL_ROWS * in_n, *yt = pad_out + EVAL_ROWS * out_n;
    if (nn_training(info)) {
        forward_rows(f, n, in, l->params[0].value, l->params[1].value, out, yt);
        return;
    }
    int whole = n - n % EVAL_ROWS;
    for (int row = 0; row < whole; row += EVAL_ROWS)
        forward_rows(f, EVAL_ROWS, in + row * in_n, l->params[0].value, l->params[1].value, out + row * out_n, yt);
    if (whole == n)
        return;
    memcpy(pad_in, in + whole * in_n, (size_t)(n - whole) * in_n * sizeof *pad_in);
    memset(pad_in + (n - whole) * in_n, 0, (size_t)(EVAL_ROWS - (n - whole)) * in_n * sizeof *pad_in);
    forward_rows(f, EVAL_ROWS, pad_in, l->params[0].value, l->params[1].value, pad_out, yt);
    memcpy(out + whole * out_n, pad_out, (size_t)(n - whole) * out_n * sizeof *out);
}

static size_t linear_scratch_floats(const ody_layer *l, int max_batch)
{
    const linear_layer *f = (const linear_layer *)l;
    if (f->dnnl)
        return 0; /* oneDNN's staging buffers are the op's own (dnnl_op.c) */
    /* evaluation's padded rows in and out, then out^T of up to max_batch rows */
    size_t rows = (size_t)(max_batch > EVAL_ROWS ? max_batch : EVAL_ROWS);
    return EVAL_ROWS * ((size_t)f->in_features + (size_t)f->out_features) + rows * (size_t)f->out_features;
}

/*
 * dnnl_sgemm makes its kernels at its first calls: about 30 ms for the
 * process's first call, under 1 ms for a further form (AMD EPYC, Zen 4),
 * which a run's first step paid (3% of LeNet-5's first epoch). So the
 * layer's forward and backward GEMMs run once here, at setup, on zeros in
 * a buffer of their own: for a chunk of max_batch rows and for
 * evaluation's EVAL_ROWS.
 */
static ody_status warm_gemms(ody_ctx *ctx, const linear_layer *f, int max_batch)
{
    size_t in_n = (size_t)f->in_features, out_n = (size_t)f->out_features;
    size_t rows = (size_t)(max_batch > EVAL_ROWS ? max_batch : EVAL_ROWS);
    size_t x = rows * in_n, w = out_n * in_n, y = rows * out_n;
    size_t bytes = (2 * x + 2 * w + out_n + 3 * y) * sizeof(float);
    float *in;
    ody_status st = ody_alloc(ctx, bytes, "linear GEMM warm-up", (void **)&in);
    if (st != ODY_OK)
        return st;
    float *din = in + x, *weight = din + x, *dw = weight + w, *bias = dw + w, *out = bias + out_n, *yt = out + y,
          *dout = yt + y;
    const int counts[2] = {max_batch, EVAL_ROWS};
    for (int i = 0; i < 2; i++) {
        forward_rows(f, counts[i], in, weight, bias, out, yt);
        backward_rows(f, counts[i], in, dout, weight, dw, din);
    }
    ody_free(ctx, in, bytes);
    return ODY_OK;
}

static ody_status linear_prepare(ody_ctx *ctx, ody_layer *l, int max_batch)
{
    linear_layer *f = (linear_layer *)l;
    if (!f->bf16)
        return f->onednn ? warm_gemms(ctx, f, max_batch) : ODY_OK;
    ody_status st = ODY_OK;
    if (!f->dnnl)
        st = nn_dnnl_op_create(ctx,
                               &(nn_dnnl_shape){.kind = NN_DNNL_INNER_PRODUCT, .stateless = l->lockstep, .in_features = f->in_features,
                                                .out_features = f->out_features, .bf16 = true, .layer = l->name},
                               &f->dnnl);
    return st == ODY_OK ? nn_dnnl_op_plan(f->dnnl, max_batch) : st;
}

static ody_status linear_plan(ody_ctx *ctx, ody_layer *l, int n)
{
    linear_layer *f = (linear_layer *)l;
    return f->dnnl ? nn_dnnl_op_plan_batch(f->dnnl, n) : ODY_OK;
}

static void linear_destroy(ody_layer *l)
{
    linear_layer *f = (linear_layer *)l;
    nn_dnnl_op_destroy(f->dnnl);
    f->dnnl = NULL;
}

static const char *linear_describe(const ody_layer *l)
{
    const linear_layer *f = (const linear_layer *)l;
    if (f->dnnl)
        return "onednn inner product bf16";
    return f->onednn ? "onednn sgemm" : "openblas sgemm";
}

static void linear_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                            const float *out, const float *dout, float *din)
{
    linear_layer *f = (linear_layer *)l;
    if (f->dnnl) {
        nn_keep_failure(l, nn_dnnl_op_backward(f->dnnl, l->params[0].value, l->params[0].grad,
                                               l->params[1].grad, n, in, out, dout, din));
        return;
    }
    int out_n = f->out_features;
    backward_rows(f, n, in, dout, l->params[0].value, l->params[0].grad, din);
    float *dbias = l->params[1].grad;
    for (int s = 0; s < n; s++)
        for (int o = 0; o < out_n; o++)
            dbias[o] += dout[(size_t)s * out_n + o];
}

static const ody_layer_ops linear_ops = {
    .kind = "linear",
    .scratch_floats = linear_scratch_floats,
    .forward = linear_forward,
    .backward = linear_backward,
    .prepare = linear_prepare,
    .plan = linear_plan,
    .destroy = linear_destroy,
    .describe = linear_describe,
};

ody_status nn_linear_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    *out = NULL;
    ody_layer *l;
    ody_status st = nn_layer_new(ctx, sizeof(linear_layer), &linear_ops, in_shape, &l);
    if (st != ODY_OK)
        return st;
    linear_layer *f = (linear_layer *)l;
    f->in_features = (int)nn_numel(in_shape);
    f->out_features = nn_arg(spec, NN_LINEAR_OUT_FEATURES);
    f->onednn = spec->backend != ODY_BACKEND_OPENBLAS;
    f->bf16 = spec->bf16 && f->onednn;
    l->out_shape = ody_shape1(f->out_features);
    nn_param_set(l, 0, "weight", ody_shape2(f->out_features, f->in_features), f->in_features,
                 f->out_features);
    nn_param_set(l, 1, "bias", ody_shape1(f->out_features), f->in_features, f->out_features);
    *out = l;
    return ODY_OK;
}
