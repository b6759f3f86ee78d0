/*
 * dropout: inverted dropout. In training each element is kept with
 * probability 1 - p and scaled by 1 / (1 - p); in evaluation it is the
 * identity. The mask of a sample depends only on (seed, step, its global
 * sample id, the layer, the element), never on its rank or batch row:
 *
 *   key (seed, ODY_STREAM_DROPOUT)
 *   c0  = step << 16 | layer number (the N of the layer's name "dropoutN")
 *   c1  = sample id << 32 | element / 4   (one Philox call, 4 elements)
 *
 * The mask (0 or 1 / (1 - p) per element) is saved for backward.
 */
#include "nn/nn_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ody_layer base;
    float p;
} dropout_layer;

static size_t dropout_saved_floats(const ody_layer *l, int max_batch)
{
    return (size_t)max_batch * nn_numel(l->in_shape);
}

/* The trailing number of the layer's name, 0 when it has none. */
static uint64_t layer_number(const ody_layer *l)
{
    size_t len = strlen(l->name), i = len;
    while (i > 0 && isdigit((unsigned char)l->name[i - 1]))
        i--;
    return i < len ? strtoull(l->name + i, NULL, 10) : 0;
}

/* mask (m) of one sample: 0 or scale. */
static void sample_mask(ody_rng_key key, uint64_t c0, uint64_t sample_id, size_t m, float p, float *mask)
{
    float scale = 1.0f / (1.0f - p);
    uint32_t w[4];
    for (size_t i = 0; i < m; i += 4) {
        ody_philox(key, c0, sample_id << 32 | (uint64_t)(i / 4), w);
        for (size_t j = 0; j < 4 && i + j < m; j++)
            mask[i + j] = ody_u32_to_unit(w[j]) >= p ? scale : 0.0f;
    }
}

static void dropout_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    const dropout_layer *d = (const dropout_layer *)l;
    size_t m = nn_numel(l->in_shape);
    if (!nn_training(info) || d->p <= 0.0f) {
        memcpy(out, in, (size_t)n * m * sizeof *out);
        return;
    }
    ody_rng_key key = {.seed = info->seed, .stream = ODY_STREAM_DROPOUT};
    uint64_t c0 = info->step << 16 | (layer_number(l) & 0xffff);
    for (int r = 0; r < n; r++) {
        uint64_t id = info->sample_ids ? (uint64_t)info->sample_ids[r] : (uint64_t)r;
        float *mask = l->saved + ((size_t)info->row_offset + (size_t)r) * m;
        sample_mask(key, c0, id, m, d->p, mask);
        for (size_t i = 0; i < m; i++)
            out[(size_t)r * m + i] = in[(size_t)r * m + i] * mask[i];
    }
}

static void dropout_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                             const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    const dropout_layer *d = (const dropout_layer *)l;
    size_t total = (size_t)n * nn_numel(l->in_shape);
    if (!nn_training(info) || d->p <= 0.0f) {
        memcpy(din, dout, total * sizeof *din);
        return;
    }
    const float *mask = l->saved + (size_t)info->row_offset * nn_numel(l->in_shape);
    for (size_t i = 0; i < total; i++)
        din[i] = dout[i] * mask[i];
}

static const ody_layer_ops dropout_ops = {
    .kind = "dropout",
    .saved_floats = dropout_saved_floats,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

ody_status nn_dropout_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    ody_status st = nn_layer_new(ctx, sizeof(dropout_layer), &dropout_ops, in_shape, out);
    if (st != ODY_OK)
        return st;
    (*out)->out_shape = in_shape;
    ((dropout_layer *)*out)->p = (float)spec->args[NN_DROPOUT_P];
    return ODY_OK;
}
