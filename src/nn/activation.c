/*
 * Element-wise activations: relu, tanh, sigmoid. Shapes pass through.
 * Backward uses the saved output only: relu' = [y > 0], tanh' = 1 - y^2,
 * sigmoid' = y (1 - y).
 */
#include "nn/nn_internal.h"

#include <math.h>

static size_t count(const ody_layer *l, int n) { return (size_t)n * nn_numel(l->in_shape); }

static void relu_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    size_t m = count(l, n);
    for (size_t i = 0; i < m; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void relu_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                          const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    nn_relu_mask(count(l, n), out, dout, din);
}

void nn_relu_mask(size_t m, const float *restrict out, const float *restrict dout, float *restrict dst)
{
    for (size_t i = 0; i < m; i++) {
        float d = dout[i];
        dst[i] = out[i] > 0.0f ? d : 0.0f;
    }
}

static void tanh_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    size_t m = count(l, n);
    for (size_t i = 0; i < m; i++)
        out[i] = tanhf(in[i]);
}

static void tanh_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                          const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    size_t m = count(l, n);
    for (size_t i = 0; i < m; i++)
        din[i] = dout[i] * (1.0f - out[i] * out[i]);
}

static void sigmoid_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                            float *out)
{
    size_t m = count(l, n);
    for (size_t i = 0; i < m; i++)
        out[i] = 1.0f / (1.0f + expf(-in[i]));
}

static void sigmoid_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                             const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    size_t m = count(l, n);
    for (size_t i = 0; i < m; i++)
        din[i] = dout[i] * out[i] * (1.0f - out[i]);
}

static const ody_layer_ops relu_ops = {
    .kind = "relu", .forward = relu_forward, .backward = relu_backward};
static const ody_layer_ops tanh_ops = {
    .kind = "tanh", .forward = tanh_forward, .backward = tanh_backward};
static const ody_layer_ops sigmoid_ops = {
    .kind = "sigmoid", .forward = sigmoid_forward, .backward = sigmoid_backward};

/* An activation has no state beyond ody_layer. */
static ody_status create(ody_ctx *ctx, const ody_layer_ops *ops, ody_shape in_shape, ody_layer **out)
{
    ody_status st = nn_layer_new(ctx, sizeof(ody_layer), ops, in_shape, out);
    if (st == ODY_OK)
        (*out)->out_shape = in_shape;
    return st;
}

ody_status nn_relu_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    return create(ctx, &relu_ops, in_shape, out);
}

ody_status nn_tanh_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    return create(ctx, &tanh_ops, in_shape, out);
}

ody_status nn_sigmoid_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    return create(ctx, &sigmoid_ops, in_shape, out);
}
