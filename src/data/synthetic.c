/*
 * data: synthetic classification data, made on demand.
 *
 * Sample i of (seed, salt) is a pure function of the three: its label is
 * uniform over the classes, its image is the label's prototype plus
 * Gaussian noise. A prototype is a coarse random pattern, uniform in [0, 1)
 * on blocks of 4x4 pixels (16 elements along a flat shape), keyed by
 * (seed, class) alone, so the training and validation sets (same seed,
 * different salts) pose the same task. The noise (stddev 0.5) hides the
 * class in any one pixel; the blocks make it visible to convolutions and
 * pooling, so a small net learns it within an epoch or two, like a real
 * image set. Only the prototypes are held, (classes, numel) floats, and a
 * table of 2^16 normal noise values: a sample's noise is the window of the
 * table at an offset drawn for the sample, so reading costs one draw a
 * sample, not one per pixel (scaling studies measure the model, not this).
 *
 * Counters of the ODY_STREAM_SYNTH stream: sample i uses c0 = salt << 40 | i
 * (the label from c1 = UINT64_MAX, its noise window from c1 = UINT64_MAX - 1);
 * prototype k uses c0 = 2^63 | k, the noise table c0 = 2^63 - 1. Hence
 * i < 2^40 and salt < 2^23.
 */
#include "data/data_internal.h"

#include <string.h>

#define SYNTH_MAX_SAMPLES ((int64_t)1 << 40)
#define SYNTH_MAX_SALT ((uint64_t)1 << 23)
#define SYNTH_MAX_NUMEL ((int64_t)1 << 28)
#define SYNTH_PROTOTYPE_C0 ((uint64_t)1 << 63)
#define SYNTH_NOISE 0.5f
#define SYNTH_TABLE ((size_t)1 << 16) /* noise values to draw windows from */
#define SYNTH_BLOCK 4

typedef struct {
    ody_dataset ds;
    uint64_t seed, salt;
    float *prototypes; /* (classes, numel) */
    size_t prototype_bytes;
    float *noise;      /* (SYNTH_TABLE + numel) normal(0, SYNTH_NOISE), wrapped around */
} synthetic_dataset;

static int32_t label_of(const synthetic_dataset *d, ody_rng_key key, uint64_t c0)
{
    uint32_t w[4];
    ody_philox(key, c0, UINT64_MAX, w);
    /* Multiply-shift: uniform over the classes without a modulo bias worth naming. */
    return (int32_t)(((uint64_t)w[0] * (uint64_t)d->ds.num_classes) >> 32);
}

static ody_status synthetic_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n,
                                 float *x, int32_t *y)
{
    const synthetic_dataset *d = (const synthetic_dataset *)ds;
    ody_rng_key key = {.seed = d->seed, .stream = ODY_STREAM_SYNTH};
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    for (int r = 0; r < n; r++) {
        uint64_t c0 = (d->salt << 40) | (uint64_t)indices[r];
        float *row = x + (size_t)r * numel;
        y[r] = label_of(d, key, c0);
        const float *proto = d->prototypes + (size_t)y[r] * numel;
        uint32_t w[4];
        ody_philox(key, c0, UINT64_MAX - 1, w);
        const float *noise = d->noise + (w[0] & (SYNTH_TABLE - 1));
        for (size_t e = 0; e < numel; e++)
            row[e] = proto[e] + noise[e];
    }
    return ODY_OK;
}

static void synthetic_destroy(ody_dataset *ds, ody_ctx *ctx)
{
    synthetic_dataset *d = (synthetic_dataset *)ds;
    ody_free(ctx, d->prototypes, d->prototype_bytes);
    ody_free(ctx, d->noise, (SYNTH_TABLE + (size_t)ody_shape_numel(&ds->sample_shape)) * sizeof(float));
    ody_free(ctx, d, sizeof *d);
}

/* Element e of class k's prototype: the uniform value of its block, the
 * block being (channel, row / 4, column / 4), or e / 16 for a flat shape. */
static void make_prototype(uint64_t seed, int k, ody_shape shape, float *out)
{
    ody_rng_key key = {.seed = seed, .stream = ODY_STREAM_SYNTH};
    int64_t numel = ody_shape_numel(&shape);
    int64_t w = shape.ndim >= 2 ? shape.dims[shape.ndim - 1] : numel;
    int64_t h = shape.ndim >= 2 ? shape.dims[shape.ndim - 2] : 1;
    for (int64_t e = 0; e < numel; e++) {
        int64_t col = e % w, row = (e / w) % h, plane = e / (w * h), block;
        if (shape.ndim >= 2)
            block = (plane * ((h + SYNTH_BLOCK - 1) / SYNTH_BLOCK) + row / SYNTH_BLOCK) * w +
                    col / SYNTH_BLOCK;
        else
            block = e / (SYNTH_BLOCK * SYNTH_BLOCK);
        uint32_t r[4];
        ody_philox(key, SYNTH_PROTOTYPE_C0 | (uint64_t)k, (uint64_t)block, r);
        out[e] = ody_u32_to_unit(r[0]);
    }
}

static const ody_dataset_ops synthetic_ops = {
    .kind = "synthetic", .read = synthetic_read, .destroy = synthetic_destroy};

static ody_status check_request(ody_ctx *ctx, int64_t n, ody_shape shape, int classes,
                                uint64_t salt)
{
    bool shape_ok = shape.ndim >= 1 && shape.ndim <= ODY_MAX_DIMS;
    for (int i = 0; shape_ok && i < shape.ndim; i++)
        shape_ok = shape.dims[i] > 0 && shape.dims[i] <= SYNTH_MAX_NUMEL;
    if (shape_ok)
        shape_ok = ody_shape_numel(&shape) <= SYNTH_MAX_NUMEL;
    if (!shape_ok)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "synthetic: sample shape must have 1 to %d positive "
                        "dimensions and at most %lld elements",
                        ODY_MAX_DIMS, (long long)SYNTH_MAX_NUMEL);
    if (n < 0 || n >= SYNTH_MAX_SAMPLES)
        return ody_fail(ctx, ODY_ERR_CONFIG, "synthetic: %lld samples is not in [0, 2^40)",
                        (long long)n);
    if (classes < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "synthetic: %d classes (need at least 1)", classes);
    if (salt >= SYNTH_MAX_SALT)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "synthetic: salt %llu is not below 2^23",
                        (unsigned long long)salt);
    return ODY_OK;
}

ody_status ody_synthetic_open(ody_ctx *ctx, int64_t n, ody_shape shape, int classes, uint64_t seed,
                              uint64_t salt, ody_dataset **out)
{
    *out = NULL;
    ody_status st = check_request(ctx, n, shape, classes, salt);
    if (st != ODY_OK)
        return st;
    size_t numel = (size_t)ody_shape_numel(&shape);
    size_t bytes = (size_t)classes * numel * sizeof(float);
    void *prototypes = NULL;
    st = ody_alloc(ctx, bytes, "synthetic class prototypes", &prototypes);
    if (st == ODY_OK)
        st = ody_data_new(ctx, sizeof(synthetic_dataset), &synthetic_ops, "synthetic", out);
    if (st != ODY_OK) {
        ody_free(ctx, prototypes, bytes);
        return st;
    }
    synthetic_dataset *d = (synthetic_dataset *)*out;
    for (int k = 0; k < classes; k++)
        make_prototype(seed, k, shape, (float *)prototypes + (size_t)k * numel);
    d->seed = seed;
    d->salt = salt;
    d->prototypes = prototypes;
    d->prototype_bytes = bytes;
    d->ds.sample_shape = shape;
    /* The noise table, extended by one sample so a window never wraps. */
    size_t noise_floats = SYNTH_TABLE + numel;
    void *noise = NULL;
    st = ody_alloc(ctx, noise_floats * sizeof(float), "synthetic noise table", &noise);
    if (st != ODY_OK) {
        synthetic_destroy(&d->ds, ctx);
        *out = NULL;
        return st;
    }
    ody_rng_normal((ody_rng_key){.seed = seed, .stream = ODY_STREAM_SYNTH},
                   SYNTH_PROTOTYPE_C0 - 1, SYNTH_TABLE, SYNTH_NOISE, noise);
    float *table = noise;
    for (size_t e = 0; e < numel; e++) /* periodic: numel may exceed the table */
        table[SYNTH_TABLE + e] = table[e];
    d->noise = noise;
    d->ds.n = n;
    d->ds.num_classes = classes;
    d->ds.norm = (ody_normalize){.scale = 1.0f, .mean = 0.0f, .std = 1.0f};
    d->ds.bytes_held = bytes + noise_floats * sizeof(float);
    return ODY_OK;
}
