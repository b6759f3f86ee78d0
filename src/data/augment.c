/*
 * data: training-data augmentation, torchvision's RandomCrop(padding=p)
 * then RandomHorizontalFlip(0.5), then RandomErasing(p), on (C, H, W)
 * images.
 *
 * A sample's crop and flip come from one Philox block at counter (epoch,
 * data-set index) of ODY_STREAM_AUGMENT: word 0 the crop row, word 1 the
 * crop column, word 2 the flip. Its erasing comes from ODY_STREAM_ERASE:
 * the block at (epoch, index) decides whether, attempt a = 1..10 uses the
 * block at (epoch + a * 2^48, index) for area, aspect ratio, row and
 * column. Nothing else goes in, so the rank that reads a sample, the thread
 * it is read on and where a run was resumed change nothing; the flip does
 * not depend on the padding, nor the crop on the erasing.
 */
#include <math.h>

#include "data/data_internal.h"

/* Uniform in [0, span) from 32 random bits (multiply-shift: a bias below span / 2^32). */
static int uniform_below(uint32_t word, int span)
{
    return (int)(((uint64_t)word * (uint64_t)span) >> 32);
}

/* Uniform in [lo, hi) from 32 random bits. */
static double uniform_in(uint32_t word, double lo, double hi)
{
    return lo + (hi - lo) * ((double)word * (1.0 / 4294967296.0));
}

/*
 * torchvision's RandomErasing.get_params for value 0: with probability p,
 * the first of up to ODY_ERASE_ATTEMPTS rectangles that fits inside the
 * image (h < H and w < W); none when the coin says no or none fits.
 * Python's round() rounds halves to even, as nearbyint does.
 */
static void choose_erase(double p, int height, int width, ody_rng_key key, int64_t epoch,
                         int64_t index, ody_augment_draw *d)
{
    uint32_t w[4];
    ody_philox(key, (uint64_t)epoch, (uint64_t)index, w);
    if (!(uniform_in(w[0], 0.0, 1.0) < p))
        return;
    const double area = (double)height * (double)width;
    const double log_lo = log(ODY_ERASE_RATIO_MIN), log_hi = log(ODY_ERASE_RATIO_MAX);
    for (uint64_t a = 1; a <= ODY_ERASE_ATTEMPTS; a++) {
        ody_philox(key, (uint64_t)epoch + (a << 48), (uint64_t)index, w);
        double erase_area = area * uniform_in(w[0], ODY_ERASE_SCALE_MIN, ODY_ERASE_SCALE_MAX);
        double aspect = exp(uniform_in(w[1], log_lo, log_hi));
        int h = (int)nearbyint(sqrt(erase_area * aspect));
        int wd = (int)nearbyint(sqrt(erase_area / aspect));
        if (!(h < height && wd < width))
            continue;
        if (h > 0 && wd > 0) { /* an empty rectangle erases nothing */
            d->ey = uniform_below(w[2], height - h + 1);
            d->ex = uniform_below(w[3], width - wd + 1);
            d->eh = h;
            d->ew = wd;
        }
        return;
    }
}

ody_augment_draw ody_augment_choose(const ody_augment_options *opt, const ody_shape *shape,
                                    uint64_t seed, int64_t epoch, int64_t index)
{
    uint32_t w[4];
    ody_philox((ody_rng_key){.seed = seed, .stream = ODY_STREAM_AUGMENT}, (uint64_t)epoch,
               (uint64_t)index, w);
    int span = 2 * opt->crop_padding + 1;
    ody_augment_draw d = {.dy = uniform_below(w[0], span),
                          .dx = uniform_below(w[1], span),
                          .flip = opt->horizontal_flip && (w[2] >> 31)};
    if (opt->random_erasing > 0 && shape->ndim == 3)
        choose_erase(opt->random_erasing, (int)shape->dims[1], (int)shape->dims[2],
                     (ody_rng_key){.seed = seed, .stream = ODY_STREAM_ERASE}, epoch, index, &d);
    return d;
}

ody_augment_options ody_augment_options_of(const ody_data_options *d)
{
    return (ody_augment_options){.crop_padding = d->crop_padding,
                                 .horizontal_flip = d->horizontal_flip,
                                 .random_erasing = d->random_erasing};
}

bool ody_augment_active(const ody_augment_options *opt)
{
    return opt->crop_padding > 0 || opt->horizontal_flip || opt->random_erasing > 0;
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
    bool moved = d.flip || d.dy != padding || d.dx != padding; /* else the window is the image */
    for (int c = 0; c < channels; c++) {
        float *p = x + (size_t)c * plane;
        if (moved) {
            for (size_t i = 0; i < plane; i++)
                scratch[i] = p[i];
            crop_plane(scratch, p, height, width, padding, d, fill);
        }
        for (int y = d.ey; y < d.ey + d.eh; y++)
            for (int i = d.ex; i < d.ex + d.ew; i++)
                p[(size_t)y * width + i] = 0.0f;
    }
}

ody_status ody_augment_check(ody_ctx *ctx, const ody_augment_options *opt, const ody_shape *shape,
                             const char *what)
{
    if (!(opt->random_erasing >= 0 && opt->random_erasing <= 1))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "data.random_erasing: %g is not a probability (0 to 1)",
                        opt->random_erasing);
    if (!ody_augment_active(opt))
        return ODY_OK;
    const char *key = opt->crop_padding > 0 ? "data.crop_padding"
                      : opt->horizontal_flip ? "data.horizontal_flip"
                                             : "data.random_erasing";
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
