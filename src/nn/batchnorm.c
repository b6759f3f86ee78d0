/*
 * batchnorm: normalise each channel (of a (C, H, W) input, over N, H and
 * W) or each feature (of an (F) input, over N) as PyTorch's BatchNorm2d
 * and BatchNorm1d define it: y = (x - mean) / sqrt(var + eps) * weight +
 * bias, with the batch's mean and biased variance in training and the
 * running statistics in evaluation.
 *
 * The batch is what forward is given: in deterministic mode a chunk of the
 * global batch at a fixed position (ghost batches of
 * distributed.chunk_size), so a row's output does not depend on the rank
 * count; otherwise the rank's share of the batch, as PyTorch DDP without
 * SyncBatchNorm does.
 *
 * Running statistics (buffers running_mean, running_var) move once per
 * optimizer step, the same on every rank: forward adds the batch's mean
 * and unbiased variance, weighted by its share of the step's rows, into
 * the buffers' gradient slots; the gradient sum (exact in deterministic
 * mode) makes that the step's weighted mean over its chunks; after the
 * optimizer step, update_buffers sets running = (1 - momentum) * running
 * + momentum * that. With one chunk per step this is PyTorch's update.
 *
 * Sums run per (row, channel) in float over 8 lanes, then in double
 * across rows, in a fixed order: the same input gives the same bits on
 * every rank.
 */
#include "core/cpu_internal.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    ody_layer base;
    int c;  /* channels (features) */
    int hw; /* elements per channel and row: H*W, or 1 */
    float momentum, eps;
    bool relu;   /* a relu after it runs fused: y = max(0, ...), and backward masks by y > 0 */
    bool global; /* statistics over the step's global batch (lockstep runs), not the chunk */
} bn_layer;

enum { BN_WEIGHT = 0, BN_BIAS, BN_RUNNING_MEAN, BN_RUNNING_VAR };

/*
 * saved: the batch's mean and 1/sqrt(var + eps) per channel, for backward;
 * over the global batch also the mean of g and of g * xhat over it (the
 * totals of ODY_SYNC_GRAD).
 */
enum { SAVED_MEAN = 0, SAVED_INVSTD, SAVED_GMEAN, SAVED_GXMEAN };

static size_t bn_saved(const ody_layer *l, int max_batch)
{
    (void)max_batch;
    const bn_layer *b = (const bn_layer *)l;
    return (b->global ? 4 : 2) * (size_t)b->c;
}

/*
 * The sums below run over 8 float lanes, element e in lane e % 8, as two
 * 4-float GCC vectors (SSE registers at the build's baseline; lanes 0-3
 * and 4-7), then the lanes in order and the tail in double. Written as
 * plain loops over a[8], GCC vectorised them with a shuffle per pair of
 * elements, and with the relu's test on y not at all: a branch per element
 * (ResNet-20's batchnorm backward took 17 cycles an element); as 8-float
 * vectors, wider than SSE, it split the comparison into scalar ones.
 */
typedef float lanes4 __attribute__((vector_size(16)));
typedef int32_t mask4 __attribute__((vector_size(16)));

static inline lanes4 load4(const float *p)
{
    lanes4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* t += the 8 lanes lo (0-3) and hi (4-7), in order, in double. */
static inline void add_lanes(double *t, lanes4 lo, lanes4 hi)
{
    for (int k = 0; k < 4; k++)
        *t += lo[k];
    for (int k = 0; k < 4; k++)
        *t += hi[k];
}

/* The scalar tails [e, len) of the lane sums below (every level's), in double. */
static inline __attribute__((always_inline)) void moments_tail(const float *x, int e, int len, float shift,
                                                               double *t1, double *t2)
{
    for (; e < len; e++) {
        double d = (double)x[e] - shift;
        *t1 += d;
        *t2 += d * d;
    }
}

static inline __attribute__((always_inline)) void dots_tail(const float *dy, const float *x, const float *y, int e,
                                                            int len, float mean, double *s1, double *s2)
{
    for (; e < len; e++) {
        float g = y && !(y[e] > 0.0f) ? 0.0f : dy[e];
        *s1 += g;
        *s2 += (double)g * (x[e] - mean);
    }
}

/*
 * Sums of d = x - shift and d^2 over x[0..len), added into s1, s2 in
 * double. The shift (the channel's first value) keeps E[d^2] - E[d]^2 from
 * cancelling when the mean is large against the spread.
 */
static void lane_moments(const float *restrict x, int len, float shift, double *s1, double *s2)
{
    lanes4 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    int e = 0;
    for (; e + 8 <= len; e += 8) {
        lanes4 d0 = load4(x + e) - shift, d1 = load4(x + e + 4) - shift;
        a0 += d0;
        a1 += d1;
        b0 += d0 * d0;
        b1 += d1 * d1;
    }
    double t1 = 0.0, t2 = 0.0;
    add_lanes(&t1, a0, a1);
    add_lanes(&t2, b0, b1);
    moments_tail(x, e, len, shift, &t1, &t2);
    *s1 += t1;
    *s2 += t2;
}

/* g where y > 0, else 0 (NaN y: 0), as bits. */
static inline lanes4 relu_pass(lanes4 g, lanes4 y)
{
    return (lanes4)((mask4)g & (y > 0.0f));
}

/* sum of g and of g * (x - mean) over [0..len), g = dy (masked by y > 0 with relu), as lane_moments. */
static void lane_dots(const float *restrict dy, const float *restrict x, const float *restrict y, int len,
                      float mean, double *sdy, double *sdyx)
{
    lanes4 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    int e = 0;
    for (; e + 8 <= len; e += 8) {
        lanes4 g0 = load4(dy + e), g1 = load4(dy + e + 4);
        if (y) { /* the same test for every element: hoisted */
            g0 = relu_pass(g0, load4(y + e));
            g1 = relu_pass(g1, load4(y + e + 4));
        }
        a0 += g0;
        a1 += g1;
        b0 += g0 * (load4(x + e) - mean);
        b1 += g1 * (load4(x + e + 4) - mean);
    }
    double s1 = 0.0, s2 = 0.0;
    add_lanes(&s1, a0, a1);
    add_lanes(&s2, b0, b1);
    dots_tail(dy, x, y, e, len, mean, &s1, &s2);
    *sdy += s1;
    *sdyx += s2;
}

#define BODY static inline __attribute__((always_inline))

/* y = x * scale + shift (then max(0, .) with relu) over one (row, channel) block. */
BODY void affine_body(float *restrict y, const float *restrict x, int len, float scale, float shift, bool relu)
{
    if (relu) {
        for (int e = 0; e < len; e++) {
            float v = x[e] * scale + shift;
            y[e] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (int e = 0; e < len; e++)
            y[e] = x[e] * scale + shift;
    }
}

/* dx = k * (g - a - (x - mu) * bterm), g = dy (where y > 0 with y, dy read always: it vectorises). */
BODY void dx_body(float *restrict dx, const float *restrict dy, const float *restrict x, const float *restrict y,
                  int len, float k, float a, float mu, float bterm)
{
    if (y)
        for (int e = 0; e < len; e++) {
            float g = dy[e];
            dx[e] = k * ((y[e] > 0.0f ? g : 0.0f) - a - (x[e] - mu) * bterm);
        }
    else
        for (int e = 0; e < len; e++)
            dx[e] = k * (dy[e] - a - (x[e] - mu) * bterm);
}

static void affine(float *restrict y, const float *restrict x, int len, float scale, float shift, bool relu)
{
    affine_body(y, x, len, scale, shift, relu);
}

static void input_grad(float *restrict dx, const float *restrict dy, const float *restrict x,
                       const float *restrict y, int len, float k, float a, float mu, float bterm)
{
    dx_body(dx, dy, x, y, len, k, a, mu, bterm);
}

/*
 * The loops over one (row, channel) block, at the build's baseline (above)
 * and for AVX-512 (below, where ody_cpu_isa_active says so): each element
 * takes the same operations (ISO C: no contraction into FMAs) and each of
 * the 8 lanes its elements in the same order, so every level gives the
 * same bits (test_batchnorm_pinned_bits runs at each). At AVX-512 the
 * element-wise loops run 16 wide and the 8 lanes are one 8-float vector.
 */
typedef struct {
    void (*moments)(const float *x, int len, float shift, double *s1, double *s2);
    void (*dots)(const float *dy, const float *x, const float *y, int len, float mean, double *sdy, double *sdyx);
    void (*affine)(float *y, const float *x, int len, float scale, float shift, bool relu);
    void (*input_grad)(float *dx, const float *dy, const float *x, const float *y, int len, float k, float a,
                       float mu, float bterm);
} bn_loops;

static const bn_loops baseline_loops = {lane_moments, lane_dots, affine, input_grad};

#ifdef ODY_TARGET_AVX512
typedef float lanes8 __attribute__((vector_size(32)));
typedef int32_t mask8 __attribute__((vector_size(32)));

ODY_TARGET_AVX512 static inline lanes8 load8(const float *p)
{
    lanes8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* t += the 8 lanes, in order, in double (add_lanes' order). */
ODY_TARGET_AVX512 static inline void add_lanes8(double *t, lanes8 v)
{
    for (int k = 0; k < 8; k++)
        *t += v[k];
}

ODY_TARGET_AVX512 static void moments_avx512(const float *restrict x, int len, float shift, double *s1, double *s2)
{
    lanes8 a = {0}, b = {0};
    int e = 0;
    for (; e + 8 <= len; e += 8) {
        lanes8 d = load8(x + e) - shift;
        a += d;
        b += d * d;
    }
    double t1 = 0.0, t2 = 0.0;
    add_lanes8(&t1, a);
    add_lanes8(&t2, b);
    moments_tail(x, e, len, shift, &t1, &t2);
    *s1 += t1;
    *s2 += t2;
}

ODY_TARGET_AVX512 static void dots_avx512(const float *restrict dy, const float *restrict x, const float *restrict y,
                                          int len, float mean, double *sdy, double *sdyx)
{
    lanes8 a = {0}, b = {0};
    int e = 0;
    for (; e + 8 <= len; e += 8) {
        lanes8 g = load8(dy + e);
        if (y)
            g = (lanes8)((mask8)g & (load8(y + e) > 0.0f));
        a += g;
        b += g * (load8(x + e) - mean);
    }
    double s1 = 0.0, s2 = 0.0;
    add_lanes8(&s1, a);
    add_lanes8(&s2, b);
    dots_tail(dy, x, y, e, len, mean, &s1, &s2);
    *sdy += s1;
    *sdyx += s2;
}

ODY_TARGET_AVX512 static void affine_avx512(float *restrict y, const float *restrict x, int len, float scale,
                                            float shift, bool relu)
{
    affine_body(y, x, len, scale, shift, relu);
}

ODY_TARGET_AVX512 static void input_grad_avx512(float *restrict dx, const float *restrict dy,
                                                const float *restrict x, const float *restrict y, int len, float k,
                                                float a, float mu, float bterm)
{
    dx_body(dx, dy, x, y, len, k, a, mu, bterm);
}

static const bn_loops avx512_loops = {moments_avx512, dots_avx512, affine_avx512, input_grad_avx512};
#endif

static const bn_loops *bn_loops_active(void)
{
#ifdef ODY_TARGET_AVX512
    if (ody_cpu_isa_active() >= ODY_ISA_AVX512)
        return &avx512_loops;
#endif
    return &baseline_loops;
}

/*
 * Scratch: per channel two double sums (first, 4 * C floats), then three
 * floats. The passes below go through the batch in memory order (rows
 * outer, channels inner: one stream the prefetchers follow, not N jumps
 * of a channel's stride) while each channel's sums still add its blocks
 * in row order: the same bits as channel by channel.
 */
static size_t bn_scratch(const ody_layer *l, int max_batch)
{
    (void)max_batch;
    return 7 * (size_t)((const bn_layer *)l)->c;
}

/* The batch's statistics into saved (mean, invstd); their weighted share into the buffers' gradient slots. */
static void batch_stats(bn_layer *b, const ody_forward_info *info, int n, const float *in)
{
    const int c = b->c, hw = b->hw;
    const double count = (double)n * hw;
    float *mean = b->base.saved, *invstd = mean + c;
    ody_param *rm = &b->base.params[BN_RUNNING_MEAN], *rv = &b->base.params[BN_RUNNING_VAR];
    double share = info->batch_rows > 0 ? (double)n / (double)info->batch_rows : 0.0;
    double *s1 = (double *)b->base.scratch, *s2 = s1 + c;
    float *shift = (float *)(s2 + c);
    for (int ch = 0; ch < c; ch++) {
        s1[ch] = s2[ch] = 0.0;
        shift[ch] = in[(size_t)ch * hw];
    }
    const bn_loops *loops = bn_loops_active();
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            loops->moments(in + ((size_t)i * c + ch) * hw, hw, shift[ch], &s1[ch], &s2[ch]);
    for (int ch = 0; ch < c; ch++) {
        double d = s1[ch] / count, q = s2[ch] - s1[ch] * d; /* sum of (x - mean)^2 */
        q = q > 0.0 ? q : 0.0;
        double var = q / count;
        mean[ch] = (float)(shift[ch] + d);
        invstd[ch] = (float)(1.0 / sqrt(var + b->eps));
        if (share > 0.0) {
            rm->grad[ch] += (float)(share * (shift[ch] + d));
            rv->grad[ch] += (float)(share * (count > 1.0 ? q / (count - 1.0) : var));
        }
    }
}

static void bn_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    bn_layer *b = (bn_layer *)l;
    const int c = b->c, hw = b->hw;
    const float *w = l->params[BN_WEIGHT].value, *bias = l->params[BN_BIAS].value;
    bool training = nn_training(info);
    if (training && !b->global) /* over the global batch, sync_take has set them */
        batch_stats(b, info, n, in);
    const float *mean = training ? l->saved : l->params[BN_RUNNING_MEAN].value;
    float *scale = l->scratch, *shift = scale + c;
    for (int ch = 0; ch < c; ch++) {
        float is = training ? l->saved[c + ch]
                            : (float)(1.0 / sqrt((double)l->params[BN_RUNNING_VAR].value[ch] + b->eps));
        scale[ch] = w[ch] * is;
        shift[ch] = bias[ch] - mean[ch] * scale[ch];
    }
    const bn_loops *loops = bn_loops_active();
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t at = ((size_t)i * c + ch) * hw;
            loops->affine(out + at, in + at, hw, scale[ch], shift[ch], b->relu);
        }
}

/*
 * With g = dy (times [y > 0] with the fused relu) and xhat = (x - mean) *
 * invstd: dbias += sum g, dweight += sum g * xhat, dx = weight * invstd *
 * (g - mean g - xhat * mean(g * xhat)) over the n * hw elements of each
 * channel.
 */
static void bn_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in, const float *out,
                        const float *dout, float *din)
{
    (void)info;
    bn_layer *b = (bn_layer *)l;
    const int c = b->c, hw = b->hw;
    const float *mean = l->saved, *invstd = l->saved + c, *w = l->params[BN_WEIGHT].value;
    float *dw = l->params[BN_WEIGHT].grad, *db = l->params[BN_BIAS].grad;
    const double count = (double)n * hw;
    const bn_loops *loops = bn_loops_active();
    double *sdy = (double *)l->scratch, *sdyx = sdy + c;
    float *k = (float *)(sdyx + c), *a = k + c, *bterm = a + c;
    for (int ch = 0; ch < c; ch++)
        sdy[ch] = sdyx[ch] = 0.0;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t at = ((size_t)i * c + ch) * hw;
            loops->dots(dout + at, in + at, b->relu ? out + at : NULL, hw, mean[ch], &sdy[ch], &sdyx[ch]);
        }
    for (int ch = 0; ch < c; ch++) {
        double sdyxhat = sdyx[ch] * invstd[ch];
        db[ch] += (float)sdy[ch];
        dw[ch] += (float)sdyxhat;
        /* dx = k * (g - a - (x - mean) * bterm): a = mean g, bterm = invstd * mean(g * xhat), over
         * the chunk, or over the global batch (saved by sync_take) */
        k[ch] = w[ch] * invstd[ch];
        a[ch] = (float)(sdy[ch] / count);
        bterm[ch] = (float)(sdyxhat / count) * invstd[ch];
        if (b->global) {
            a[ch] = l->saved[SAVED_GMEAN * c + ch];
            bterm[ch] = l->saved[SAVED_GXMEAN * c + ch] * invstd[ch];
        }
    }
    if (!din)
        return;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t at = ((size_t)i * c + ch) * hw;
            loops->input_grad(din + at, dout + at, in + at, b->relu ? out + at : NULL, hw, k[ch], a[ch], mean[ch],
                              bterm[ch]);
        }
}

/* A relu right after it runs inside it (fusion on). */
static int bn_fuse(ody_layer *l, ody_layer *const *next, int count)
{
    bn_layer *b = (bn_layer *)l;
    b->relu = count > 0 && strcmp(next[0]->ops->kind, "relu") == 0;
    return b->relu ? 1 : 0;
}

/* ------------------------------------------------ over the global batch */

/* Per chunk: the channel sums of x (MEAN), of (x - mean)^2 (VAR), of g and g * (x - mean) (GRAD). */
static int bn_sync_len(const ody_layer *l, int phase)
{
    const bn_layer *b = (const bn_layer *)l;
    return b->global ? (phase == ODY_SYNC_GRAD ? 2 : 1) * b->c : 0;
}

static void bn_sync_part(ody_layer *l, int phase, int n, const float *in, const float *out, const float *dout,
                         double *part)
{
    bn_layer *b = (bn_layer *)l;
    const int c = b->c, hw = b->hw;
    const float *mean = l->saved + SAVED_MEAN * c;
    const bn_loops *loops = bn_loops_active();
    double *s1 = (double *)l->scratch, *s2 = s1 + c;
    for (int ch = 0; ch < c; ch++)
        s1[ch] = s2[ch] = 0.0;
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            size_t at = ((size_t)i * c + ch) * hw;
            if (phase == ODY_SYNC_GRAD)
                loops->dots(dout + at, in + at, b->relu ? out + at : NULL, hw, mean[ch], &s1[ch], &s2[ch]);
            else /* sums of x - shift and its square: shift 0 for the mean, the mean for the variance */
                loops->moments(in + at, hw, phase == ODY_SYNC_MEAN ? 0.0f : mean[ch], &s1[ch], &s2[ch]);
        }
    for (int ch = 0; ch < c; ch++) {
        if (phase == ODY_SYNC_GRAD) {
            part[ch] = s1[ch];
            part[c + ch] = s2[ch];
        } else {
            part[ch] = phase == ODY_SYNC_MEAN ? s1[ch] : s2[ch];
        }
    }
}

/*
 * The totals over the step's rows: the mean (MEAN); the variance, 1/sqrt
 * and, on the owner, the step's statistics into the buffers' gradient
 * slots at full weight (VAR); the means of g and g * xhat (GRAD).
 */
static void bn_sync_take(ody_layer *l, int phase, const double *total, int64_t rows, bool owner)
{
    bn_layer *b = (bn_layer *)l;
    const int c = b->c;
    const double count = (double)rows * b->hw;
    float *saved = l->saved;
    for (int ch = 0; ch < c; ch++) {
        if (phase == ODY_SYNC_MEAN) {
            saved[SAVED_MEAN * c + ch] = (float)(total[ch] / count);
        } else if (phase == ODY_SYNC_VAR) {
            double var = total[ch] / count;
            saved[SAVED_INVSTD * c + ch] = (float)(1.0 / sqrt(var + b->eps));
            if (owner) {
                l->params[BN_RUNNING_MEAN].grad[ch] += saved[SAVED_MEAN * c + ch];
                l->params[BN_RUNNING_VAR].grad[ch] += (float)(count > 1.0 ? total[ch] / (count - 1.0) : var);
            }
        } else {
            saved[SAVED_GMEAN * c + ch] = (float)(total[ch] / count);
            saved[SAVED_GXMEAN * c + ch] = (float)(total[c + ch] * saved[SAVED_INVSTD * c + ch] / count);
        }
    }
}

static void bn_update_buffers(ody_layer *l)
{
    const bn_layer *b = (const bn_layer *)l;
    for (int t = BN_RUNNING_MEAN; t <= BN_RUNNING_VAR; t++) {
        ody_param *p = &l->params[t];
        for (int ch = 0; ch < b->c; ch++)
            p->value[ch] = (1.0f - b->momentum) * p->value[ch] + b->momentum * p->grad[ch];
    }
}

static const char *bn_describe(const ody_layer *l)
{
    const bn_layer *b = (const bn_layer *)l;
    static const char *const text[2][2][2] = {
        {{"per feature, chunk statistics", "per feature, chunk statistics, relu fused"},
         {"per channel, chunk statistics", "per channel, chunk statistics, relu fused"}},
        {{"per feature, global-batch statistics", "per feature, global-batch statistics, relu fused"},
         {"per channel, global-batch statistics", "per channel, global-batch statistics, relu fused"}}};
    return text[b->global][b->hw > 1][b->relu];
}

static const ody_layer_ops bn_ops = {
    .kind = "batchnorm",
    .scratch_floats = bn_scratch,
    .saved_floats = bn_saved,
    .forward = bn_forward,
    .backward = bn_backward,
    .update_buffers = bn_update_buffers,
    .describe = bn_describe,
    .fuse = bn_fuse,
    .sync_len = bn_sync_len,
    .sync_part = bn_sync_part,
    .sync_take = bn_sync_take,
};

ody_status nn_batchnorm_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    char shape[64];
    if (in_shape.ndim != 3 && in_shape.ndim != 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "batchnorm normalises (C, H, W) per channel or (F) per feature, "
                        "not %s (a flatten before it makes (F))", ody_shape_format(&in_shape, shape, sizeof shape));
    ody_layer *l;
    ody_status st = nn_layer_new(ctx, sizeof(bn_layer), &bn_ops, in_shape, &l);
    if (st != ODY_OK)
        return st;
    bn_layer *b = (bn_layer *)l;
    b->c = in_shape.dims[0];
    b->hw = in_shape.ndim == 3 ? in_shape.dims[1] * in_shape.dims[2] : 1;
    b->momentum = (float)spec->args[NN_BN_MOMENTUM];
    b->eps = (float)spec->args[NN_BN_EPS];
    b->global = nn_arg(spec, NN_BN_STATISTICS) == 1;
    l->out_shape = in_shape;
    l->nparams = 4;
    const char *names[] = {"weight", "bias", "running_mean", "running_var"};
    const ody_init inits[] = {ODY_INIT_ONES, ODY_INIT_ZERO, ODY_INIT_ZERO, ODY_INIT_ONES};
    for (int t = 0; t < 4; t++) {
        nn_param_set(l, t, names[t], ody_shape1(b->c), b->c, b->c);
        l->params[t].init = inits[t];
        l->params[t].buffer = t >= BN_RUNNING_MEAN;
    }
    *out = l;
    return ODY_OK;
}
