/*
 * linear: fully connected layer, out = in W^T + b, one GEMM per batch.
 * Any per-sample input shape is taken as flattened (IN = C*H*W).
 *
 *   in (n, IN), W (OUT, IN) params[0], b (OUT) params[1], out (n, OUT)
 */
#include "nn/nn_internal.h"

#include <cblas.h>

typedef struct {
    ody_layer base;
    int in_features, out_features;
} linear_layer;

static void linear_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    const linear_layer *f = (const linear_layer *)l;
    int in_n = f->in_features, out_n = f->out_features;
    const float *bias = l->params[1].value;
    /* Start every row at the bias, then out += in W^T. */
    for (int s = 0; s < n; s++)
        for (int o = 0; o < out_n; o++)
            out[(size_t)s * out_n + o] = bias[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_n, in_n, 1.0f, in, in_n,
                l->params[0].value, in_n, 1.0f, out, out_n);
}

static void linear_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                            const float *out, const float *dout, float *din)
{
    const linear_layer *f = (const linear_layer *)l;
    int in_n = f->in_features, out_n = f->out_features;
    /* dW (OUT, IN) += dout^T in */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_n, in_n, n, 1.0f, dout, out_n, in, in_n,
                1.0f, l->params[0].grad, in_n);
    float *dbias = l->params[1].grad;
    for (int s = 0; s < n; s++)
        for (int o = 0; o < out_n; o++)
            dbias[o] += dout[(size_t)s * out_n + o];
    if (!din)
        return;
    /* din (n, IN) = dout W */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in_n, out_n, 1.0f, dout, out_n,
                l->params[0].value, in_n, 0.0f, din, in_n);
}

static const ody_layer_ops linear_ops = {
    .kind = "linear",
    .forward = linear_forward,
    .backward = linear_backward,
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
    l->out_shape = ody_shape1(f->out_features);
    nn_param_set(l, 0, "weight", ody_shape2(f->out_features, f->in_features), f->in_features,
                 f->out_features);
    nn_param_set(l, 1, "bias", ody_shape1(f->out_features), f->in_features, f->out_features);
    *out = l;
    return ODY_OK;
}
