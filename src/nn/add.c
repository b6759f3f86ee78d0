/*
 * add: where a residual block's branch and shortcut meet, out = a + b. A
 * join: the model reads both inputs and computes the sum itself, and hands
 * the output gradient to both (ody_model_forward, ody_model_backward), so
 * the kind has no forward or backward of its own. Not in the kind table:
 * the model makes one per residual block.
 */
#include "nn/nn_internal.h"

static const ody_layer_ops add_ops = {.kind = "add", .join = true};

ody_status nn_add_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    (void)spec;
    ody_status st = nn_layer_new(ctx, sizeof(ody_layer), &add_ops, in_shape, out);
    if (st == ODY_OK)
        (*out)->out_shape = in_shape;
    return st;
}
