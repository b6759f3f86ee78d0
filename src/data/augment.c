/*
 * data: training-data augmentation, torchvision's RandomCrop(padding=p)
 * then RandomHorizontalFlip(0.5) on (C, H, W) images.
 *
 * A sample's draw comes from one Philox block at counter (epoch, data-set
 * index) of ODY_STREAM_AUGMENT: word 0 the crop row, word 1 the crop
 * column, word 2 the flip. Nothing else goes in, so the rank that reads a
 * sample, the thread it is read on and where a run was resumed change
 * nothing; and the flip does not depend on the padding.
 */
#include "data/data_internal.h"

/* Uniform in [0, span) from 32 random bits (multiply-shift: a bias below span / 2^32). */
static int uniform_below(uint32_t word, int span)
{
    return (int)(((uint64_t)word * (uint64_t)span) >> 32);
}

ody_augment_draw ody_augment_choose(const ody_augment_options *opt, uint64_t seed, int64_t epoch,
                                    int64_t index)
{
    uint32_t w[4];
    ody_philox((ody_rng_key){.seed = seed, .stream = ODY_STREAM_AUGMENT}, (uint64_t)epoch,
               (uint64_t)index, w);
    int span = 2 * opt->crop_padding + 1;
    return (ody_augment_draw){.dy = uniform_below(w[0], span),
                              .dx = uniform_below(w[1], span),
                              .flip = opt->horizontal_flip && (w[2] >> 31)};
}

float ody_augment_fill(ody_normalize norm)
{
    /* ody_normalize_table's expression for the byte 0 (float images: scale 1, the same value) */
    return ((float)0 * norm.scale - norm.mean) / norm.std;
}

/*
 * One plane: out[y][x] = padded[y + dy][x' + dx] with x' = W-1-x when
 * flipped, where padded[r][c] = in[r - p][c - p] inside the image and fill
 * outside it. `in` is a copy (scratch), `out` the sample's plane.
 */
static void crop_plane(const float *in, float *out, int height, int width, int padding,
                       ody_augment_draw d, float fill)
{
    for (int y = 0; y < height; y++) {
        int src_y = y + d.dy - padding;
        float *row = out + (size_t)y * width;
        for (int x = 0; x < width; x++) {
            int src_x = (d.flip ? width - 1 - x : x) + d.dx - padding;
            bool inside = src_y >= 0 && src_y < height && src_x >= 0 && src_x < width;
            row[x] = inside ? in[(size_t)src_y * width + src_x] : fill;
        }
    }
}

void ody_augment_apply(float *x, ody_shape shape, int padding, ody_augment_draw d, float fill,
                       float *scratch)
{
    int channels = (int)shape.dims[0], height = (int)shape.dims[1], width = (int)shape.dims[2];
    size_t plane = (size_t)height * width;
    if (!d.flip && d.dy == padding && d.dx == padding)
        return; /* the window is the image itself */
    for (int c = 0; c < channels; c++) {
        float *p = x + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++)
            scratch[i] = p[i];
        crop_plane(scratch, p, height, width, padding, d, fill);
    }
}

ody_status ody_augment_check(ody_ctx *ctx, const ody_augment_options *opt, const ody_shape *shape,
                             const char *what)
{
    if (opt->crop_padding == 0 && !opt->horizontal_flip)
        return ODY_OK;
    const char *key = opt->crop_padding > 0 ? "data.crop_padding" : "data.horizontal_flip";
    char text[64];
    ody_shape_format(shape, text, sizeof text);
    if (shape->ndim != 3)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: augmentation needs image samples (C, H, W), but the samples are %s "
                        "(%s)",
                        key, text, what);
    int64_t side = shape->dims[1] < shape->dims[2] ? shape->dims[1] : shape->dims[2];
    if (opt->crop_padding < 0)
        return ody_fail(ctx, ODY_ERR_CONFIG, "%s: %d is negative", key, opt->crop_padding);
    if (opt->crop_padding > side / 2)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "%s: %d is more than half the image (samples %s, %s): at most %lld",
                        key, opt->crop_padding, text, what, (long long)(side / 2));
    return ODY_OK;
}
