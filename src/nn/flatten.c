/*
 * flatten: (C, H, W) -> (C*H*W). The data is already in that order: a
 * view, which the step before it absorbs (it writes its output in place of
 * flatten's). Alone (the first layer, or fusion off) forward and backward
 * are copies.
 */
#include "nn/nn_internal.h"

#include <string.h>

static void flatten_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    memcpy(out, in, (size_t)n * nn_numel(l->in_shape) * sizeof *out);
}

static void flatten_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                             const float *out, const float *dout, float *din)
{
    if (din)
        memcpy(din, dout, (size_t)n * nn_numel(l->in_shape) * sizeof *din);
}

static const ody_layer_ops flatten_ops = {
    .kind = "flatten",
    .forward = flatten_forward,
    .backward = flatten_backward,
    .view = true,
};

ody_status nn_flatten_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    ody_status st = nn_layer_new(ctx, sizeof(ody_layer), &flatten_ops, in_shape, out);
    if (st == ODY_OK)
        (*out)->out_shape = ody_shape1(ody_shape_numel(&in_shape));
    return st;
}
