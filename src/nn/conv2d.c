/*
 * conv2d: 2-D convolution with stride and zero padding, by one of three
 * algorithms (its argument `algorithm`, or model.conv_algorithm):
 *
 *   W (OC, C, K, K) params[0], PyTorch's layout; b (OC) params[1]
 *   in (n, C, H, W) -> out (n, OC, OH, OW)
 *
 * gemm: im2col + OpenBLAS sgemm over groups of samples (conv_gemm.c);
 * never fused. direct: the kernels of conv_kernels.c, one sample at a
 * time on work buffers whose size does not depend on the batch, as below.
 * auto picks one per layer from its shape and the layers after it
 * (choose_algorithm, with the measurements behind it); an auto layer run
 * fused direct computes its forward by Winograd F(2, 5) where the level
 * has it and the shape suits it (nn_conv_winograd_fits: LeNet-5's conv2),
 * 6 products for 2 outputs of a kernel row instead of 10, with new sums.
 *
 * Direct forward pads the sample (a same-size layer of few channels reads
 * it unpadded where the level can: nn_conv_same_masks), computes it
 * pixel-major (y) and writes it channel-major. Backward lists each output
 * channel's non-zero output gradients as terms and adds grad * window into
 * dW (and grad * filter into din): after a relu and a max pool most are
 * zero, and they cost nothing.
 *
 * onednn: oneDNN's primitives (dnnl_op.c), in fp32 or bf16; a relu
 * after it runs fused as a post-op (its output is the step's; backward
 * masks the gradient by it), and a 2x2 max pool after that relu runs
 * fused too, on the convolution's output in oneDNN's blocked layout (only
 * the pooled output is reordered back). The default backend's auto picks
 * it for all but LeNet-sized filters followed by relu + 2x2 max pool.
 *
 * Fused (direct only): when the model runs it with the relu and the 2x2
 * max pool after it as one step (conv2d_fuse), forward writes the pooled
 * output relu(max(window)) and the argmax directly, and backward takes the
 * gradient of the pooled output: its terms are the pooled outputs that are
 * positive, at their argmax. The conv and relu outputs are never stored.
 * The pool layer's saved buffer holds the argmax as the window offset in
 * xpad (where the pool alone keeps the position in its input plane). At a
 * level with a pixel-major backward (AVX-512) and a shape it takes
 * (nn_conv_hwc_fits: LeNet-5's conv2), fused backward runs on pixel-major
 * copies of the sample instead, all output channels at once
 * (hwc_backward): the same weight and bias gradient bits, the input
 * gradient's parts added in another order.
 */
#include "nn/conv_internal.h"
#include "nn/nn_dnnl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ody_layer base;
    nn_conv_geom geom;
    ody_conv_algorithm algorithm; /* DIRECT, GEMM or ONEDNN */
    bool automatic;               /* chosen by choose_algorithm */
    bool winograd;                /* auto and fused direct, where it fits: forward by nn_conv_winograd */
    ody_backend backend;          /* ONEDNN or OPENBLAS */
    bool bf16;                    /* compute in bf16 (onednn only) */
    ody_layer *pool; /* the maxpool2d this layer runs fused with (direct only), or NULL */
    bool relu;       /* onednn: the relu after it runs fused, as a post-op */
    bool relu_pool;  /* onednn: and the 2x2 max pool after the relu too, on oneDNN's layout */
    nn_dnnl_op *dnnl; /* the onednn algorithm's plans (made by conv2d_prepare) */
    /* direct (made by conv2d_prepare): each output's window offset in xpad (nn_conv_window_offsets),
     * and a same-size layer's lane masks (nn_conv_same_active) or NULL */
    int32_t *winoff;
    uint16_t *same_masks;
    char description[64];
} conv2d_layer;

/* The work buffers of forward and of backward, carved from the layer's scratch. */
typedef struct {
    float *wt, *bias, *xpad, *y, *pooled;
    float *u, *vt; /* winograd's (nn_conv_winograd_fits; else NULL) */
} forward_buffers;

typedef struct {
    float *xpad, *dint, *wq, *acc, *grad, *grad2;
    int32_t *rowoff, *tapoff, *off, *off2; /* grad2, off2: a second channel's terms */
    nn_hwc_work hwc; /* the pixel-major fused backward's (nn_conv_hwc_fits; else empty) */
} backward_buffers;

_Static_assert(sizeof(int32_t) == sizeof(float), "offsets live in the float scratch");

/* The next n floats from base (in aligned pieces); with base NULL only count them. */
static float *take(float *base, size_t *used, size_t n)
{
    float *p = base ? base + *used : NULL;
    *used += ody_arena_round(n);
    return p;
}

static size_t forward_carve(const nn_conv_geom *g, float *base, forward_buffers *f)
{
    size_t used = 0;
    f->wt = take(base, &used, (size_t)g->win.c * g->win.k * g->win.k * g->ocp);
    f->bias = take(base, &used, (size_t)g->ocp);
    f->xpad = take(base, &used, nn_conv_padded_floats(g));
    f->y = take(base, &used, (size_t)g->win.oh * g->win.ow * g->ocp);
    f->pooled = take(base, &used, 2 * (size_t)(g->win.oh / 2) * (g->win.ow / 2) * g->ocp);
    f->u = f->vt = NULL;
    if (nn_conv_winograd_fits(g)) {
        f->u = take(base, &used, nn_conv_winograd_u_floats(g));
        f->vt = take(base, &used, nn_conv_winograd_vt_floats(g));
    }
    return used;
}

static size_t backward_carve(const nn_conv_geom *g, float *base, backward_buffers *b)
{
    size_t used = 0, plane = (size_t)g->win.oh * g->win.ow;
    b->xpad = take(base, &used, nn_conv_padded_floats(g));
    b->dint = take(base, &used, nn_conv_dint_floats(g));
    b->wq = take(base, &used, (size_t)g->oc * g->taps * NN_VEC);
    b->acc = take(base, &used, (size_t)g->oc * g->rows * NN_VEC);
    b->grad = take(base, &used, plane + NN_SLACK);
    b->rowoff = (int32_t *)take(base, &used, (size_t)g->rows);
    b->tapoff = (int32_t *)take(base, &used, (size_t)g->taps);
    b->off = (int32_t *)take(base, &used, plane + NN_SLACK);
    b->grad2 = take(base, &used, plane + NN_SLACK);
    b->off2 = (int32_t *)take(base, &used, plane + NN_SLACK);
    b->hwc = (nn_hwc_work){0};
    if (nn_conv_hwc_fits(g)) {
        nn_hwc_work counted;
        float *at = take(base, &used, nn_conv_hwc_carve(g, NULL, &counted));
        if (at)
            nn_conv_hwc_carve(g, at, &b->hwc);
    }
    return used;
}

static size_t conv2d_scratch_floats(const ody_layer *l, int max_batch)
{
    const conv2d_layer *c = (const conv2d_layer *)l;
    if (c->algorithm == ODY_CONV_GEMM)
        return nn_conv_gemm_scratch_floats(&c->geom);
    if (c->algorithm == ODY_CONV_ONEDNN)
        return 0; /* oneDNN's staging buffers are the op's own (dnnl_op.c) */
    forward_buffers f;
    backward_buffers b;
    size_t fwd = forward_carve(&c->geom, NULL, &f), bwd = backward_carve(&c->geom, NULL, &b);
    return fwd > bwd ? fwd : bwd;
}

static void direct_forward(conv2d_layer *c, int n, const float *in, float *out)
{
    ody_layer *l = &c->base;
    const nn_conv_geom *g = &c->geom;
    forward_buffers f;
    forward_carve(g, l->scratch, &f);
    nn_conv_pack_forward(g, l->params[0].value, l->params[1].value, f.wt, f.bias);
    const nn_conv_kernels *k = nn_conv_kernels_active();
    if (c->winograd)
        k->winograd_pack(g, f.wt, f.u);
    const uint16_t *same = c->same_masks; /* from the sample itself, without xpad */
    if (!same)
        nn_conv_pad_clear(g, f.xpad);
    int plane = g->win.oh * g->win.ow;
    size_t in_numel = nn_numel(l->in_shape);
    size_t out_numel = nn_numel(c->pool ? c->pool->out_shape : l->out_shape);
    for (int s = 0; s < n; s++) {
        if (same) {
            nn_conv_direct_same(g, in + s * in_numel, same, f.wt, f.bias, f.y);
        } else {
            nn_conv_pad(g, in + s * in_numel, f.xpad);
            if (c->winograd)
                k->winograd(g, f.xpad, f.u, f.bias, f.vt, f.y);
            else
                nn_conv_direct(g, f.xpad, f.wt, f.bias, f.y);
        }
        if (c->pool)
            nn_conv_pool_relu(g, f.y, c->winoff, f.pooled, out + s * out_numel,
                              (int32_t *)c->pool->saved + s * out_numel);
        else
            nn_conv_to_channels(g, f.y, plane, out + s * out_numel);
    }
}

/*
 * Terms of channel o of sample s. Alone: the non-zero entries of its dout
 * plane. Fused: the pooled outputs that are positive (the relu passed
 * them) with a non-zero gradient, at the window offsets forward saved.
 */
static void channel_terms(const conv2d_layer *c, int s, int o, const float *out, const float *dout,
                          const int32_t *winoff, nn_conv_terms *t)
{
    const nn_conv_geom *g = &c->geom;
    if (!c->pool) {
        int plane = g->win.oh * g->win.ow;
        nn_conv_gather_terms(dout + ((size_t)s * g->oc + o) * plane, NULL, winoff, plane, t);
        return;
    }
    int plane = (int)(nn_numel(c->pool->out_shape) / (size_t)g->oc);
    size_t at = ((size_t)s * g->oc + o) * plane;
    nn_conv_gather_terms(dout + at, out + at, (const int32_t *)c->pool->saved + at, plane, t);
}

/*
 * Fused, at a level with the pixel-major backward (the AVX-512 one): all
 * channels of a sample at once (conv_internal.h, nn_hwc_work). Its weight
 * and bias gradients are the same bits as the terms path's below; its
 * input gradient adds each element's parts in another order.
 */
static void hwc_backward(conv2d_layer *c, const backward_buffers *b, const nn_conv_kernels *k, int n,
                         const float *in, const float *out, const float *dout, float *din)
{
    ody_layer *l = &c->base;
    const nn_conv_geom *g = &c->geom;
    nn_conv_hwc_prepare(g, l->params[0].value, &b->hwc, din != NULL);
    if (g->win.pad)
        nn_conv_pad_clear(g, b->xpad);
    size_t in_numel = nn_numel(l->in_shape), pooled = nn_numel(c->pool->out_shape);
    const int32_t *arg = (const int32_t *)c->pool->saved;
    for (int s = 0; s < n; s++) {
        const float *x = in + s * in_numel; /* without padding: already the padded sample */
        if (g->win.pad) {
            nn_conv_pad(g, x, b->xpad);
            x = b->xpad;
        }
        size_t at = s * pooled;
        k->hwc_backward(g, x, out + at, dout + at, arg + at, &b->hwc, l->params[1].grad,
                        din ? din + s * in_numel : NULL);
    }
    nn_conv_hwc_fold(g, b->hwc.hacc, l->params[0].grad);
}

static void direct_backward(conv2d_layer *c, int n, const float *in, const float *out, const float *dout,
                            float *din)
{
    ody_layer *l = &c->base;
    const nn_conv_geom *g = &c->geom;
    backward_buffers b;
    backward_carve(g, l->scratch, &b);
    const nn_conv_kernels *k = nn_conv_kernels_active();
    if (c->pool && k->hwc_backward && nn_conv_hwc_fits(g)) {
        hwc_backward(c, &b, k, n, in, out, dout, din);
        return;
    }
    nn_conv_pack_backward(g, l->params[0].value, din ? b.wq : NULL, b.rowoff, din ? b.tapoff : NULL);
    nn_conv_pad_clear(g, b.xpad);
    size_t filter = (size_t)g->rows * NN_VEC, taps = (size_t)g->taps * NN_VEC, in_numel = nn_numel(l->in_shape);
    memset(b.acc, 0, g->oc * filter * sizeof *b.acc);
    float *dbias = l->params[1].grad;
    bool pairs = k->weight_grad_pair && g->rows <= 8; /* two channels' weight gradients at once */
    for (int s = 0; s < n; s++) {
        nn_conv_pad(g, in + s * in_numel, b.xpad);
        if (din)
            memset(b.dint, 0, nn_conv_dint_floats(g) * sizeof *b.dint);
        for (int o = 0; o < g->oc; o += pairs ? 2 : 1) {
            nn_conv_terms t[2] = {{.off = b.off, .grad = b.grad}, {.off = b.off2, .grad = b.grad2}};
            int chans = pairs && o + 1 < g->oc ? 2 : 1;
            for (int j = 0; j < chans; j++)
                channel_terms(c, s, o + j, out, dout, c->winoff, &t[j]);
            if (chans == 2) {
                float bias[2];
                k->weight_grad_pair(g, b.xpad, b.rowoff, t, (float *const[2]){b.acc + o * filter,
                                    b.acc + (o + 1) * filter}, bias);
                dbias[o] += bias[0];
                dbias[o + 1] += bias[1];
            } else {
                dbias[o] += nn_conv_weight_grad(g, b.xpad, b.rowoff, &t[0], b.acc + o * filter);
            }
            for (int j = 0; j < chans && din; j++)
                nn_conv_input_grad(g, b.wq + (o + j) * taps, b.tapoff, &t[j], b.dint);
        }
        if (din)
            nn_conv_unpad(g, b.dint, g->cp, din + s * in_numel);
    }
    nn_conv_fold_weight_grad(g, b.acc, l->params[0].grad);
}

static void conv2d_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    conv2d_layer *c = (conv2d_layer *)l;
    if (c->algorithm == ODY_CONV_GEMM)
        nn_conv_gemm_forward(&c->geom, l->params[0].value, l->params[1].value, l->scratch, n, in, out);
    else if (c->algorithm == ODY_CONV_ONEDNN)
        nn_keep_failure(l, nn_dnnl_op_forward(c->dnnl, l->params[0].value, l->params[1].value, n, in, out));
    else
        direct_forward(c, n, in, out);
}

static void conv2d_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                            const float *out, const float *dout, float *din)
{
    conv2d_layer *c = (conv2d_layer *)l;
    if (c->algorithm == ODY_CONV_GEMM)
        nn_conv_gemm_backward(&c->geom, l->params[0].value, l->params[0].grad, l->params[1].grad, l->scratch,
                              n, in, dout, din);
    else if (c->algorithm == ODY_CONV_ONEDNN)
        nn_keep_failure(l, nn_dnnl_op_backward(c->dnnl, l->params[0].value, l->params[0].grad,
                                               l->params[1].grad, n, in, out, dout, din));
    else
        direct_backward(c, n, in, out, dout, din);
}

/*
 * auto, from measurements: forward + backward (with the input gradient) of
 * a batch of 64 on one thread (AMD EPYC, OpenBLAS 0.3.21, AVX2), as the time
 * direct takes over the time gemm takes (above 1 gemm wins). The machine
 * was shared: repeated runs differ by up to 30%, and the rule keeps clear
 * of the even cases.
 *
 *   layer (C->OC, kernel,   alone,   alone, half     conv -> relu -> 2x2 max pool:
 *   stride, input side)     dense    of dout zero    direct fused / gemm, relu, pool
 *   1->6 5, 28 (LeNet)       1.84     1.10           0.44
 *   6->16 5, 14 (LeNet)      0.64     0.68           0.35
 *   8->8 3, 32               0.63     0.40           0.21
 *   16->16 3, 16             1.15     0.87           0.32
 *   64->16 3, 16             1.21     0.71           0.43
 *   12->24 3, 16             1.59     0.99           0.48
 *   16->32 3, 16             1.59     1.03           0.60
 *   32->32 3, 16             1.36     0.94           0.56
 *   16->32 3 s2, 32          1.61     0.97           0.50
 *   8->48 3, 16              1.60     0.93           0.45
 *   32->48 3, 16             2.12     1.22           0.64
 *   3->64 3, 32              2.20     1.34           0.47
 *   32->64 3, 16             2.03     1.87           1.07
 *   32->64 3 s2, 16          2.03     1.26           0.85
 *   32->64 3, 32             1.97     1.20           0.60
 *   32->64 3 s2, 32          2.15     1.25           0.78
 *   64->128 3, 16            2.61     1.49           0.83
 *   64->128 3 s2, 16         2.52     1.40           1.06
 *   64->128 3, 32            2.51     1.50           0.81
 *   64->128 3 s2, 32         2.48     1.54           0.91
 *   96->192 3, 16            2.83     1.62           0.93
 *   128->256 3, 16           2.99     1.59           0.99
 *   128->256 3 s2, 8         3.10     1.95           1.47
 *
 * Forward the two are even (both near the core's peak on wide layers);
 * backward decides. Direct's backward skips zero output gradients, and
 * fused with a relu and a 2x2 max pool it sees at most a quarter of them
 * and stores no conv or relu output: it won that block on 41 of the 48
 * shapes measured; below 256 channels gemm's two wins were by 7% at most
 * (at 256 it won 5 of 7, by 5-47%: ask for it there). Alone, after a relu
 * that zeroes about half of its output gradient, gemm won from 48 output
 * channels on (28 of 29 shapes), where its sgemms have rows enough; at 32
 * the two are even, below that direct wins (LeNet-5's conv1 alone: even).
 * So auto is:
 *
 *   a relu and a 2x2 max pool follow (fusion on)   direct, fused
 *   otherwise, OC >= 48                            gemm
 *   otherwise                                      direct
 *
 * LeNet-5's conv1 and conv2 are direct either way. A layer of 24 to 32
 * channels whose output gradient is dense (tanh or avgpool after it) runs
 * 1.3-2x faster as gemm: ask for it with algorithm 2.
 */
enum { GEMM_MIN_OUT_CHANNELS = 48 };

/*
 * With the onednn backend (the default), auto is oneDNN's convolution
 * except where the direct kernels fused with a relu and 2x2 max pool
 * measured faster: small filters (C*K*K taps up to DIRECT_MAX_TAPS, as
 * LeNet-5's conv1 and conv2: 25 and 150) followed by relu + pool, where
 * oneDNN reaches 2-65 GFLOP/s (tests/bench/README.md, "oneDNN backend").
 * bf16 compute is oneDNN's alone.
 */
enum { DIRECT_MAX_TAPS = 150 };

static ody_conv_algorithm choose_algorithm(const conv2d_layer *c, bool fusable)
{
    const nn_conv_geom *g = &c->geom;
    if (c->backend == ODY_BACKEND_OPENBLAS)
        return !fusable && g->oc >= GEMM_MIN_OUT_CHANNELS ? ODY_CONV_GEMM : ODY_CONV_DIRECT;
    if (c->bf16)
        return ODY_CONV_ONEDNN;
    int taps = g->win.c * g->win.k * g->win.k;
    return fusable && taps <= DIRECT_MAX_TAPS ? ODY_CONV_DIRECT : ODY_CONV_ONEDNN;
}

/* A relu and a 2x2 max pool at stride 2 without padding among the count layers next. */
static bool relu_pool_follows(ody_layer *const *next, int count)
{
    if (count < 2 || strcmp(next[0]->ops->kind, "relu") != 0 || strcmp(next[1]->ops->kind, "maxpool2d") != 0)
        return false;
    const nn_window *pool = &((const nn_pool_layer *)next[1])->win;
    return pool->k == 2 && pool->stride == 2 && pool->pad == 0;
}

/*
 * Settle auto now that the layers after this one are known (count 0: fusion
 * off), and absorb a following relu and 2x2 max pool when running direct.
 */
static int conv2d_fuse(ody_layer *l, ody_layer *const *next, int count)
{
    conv2d_layer *c = (conv2d_layer *)l;
    if (l->lockstep) /* fused, it would keep the pooled argmax or the conv output from forward to backward */
        count = 0;
    bool fusable = relu_pool_follows(next, count);
    if (c->automatic)
        c->algorithm = choose_algorithm(c, fusable);
    c->pool = fusable && c->algorithm == ODY_CONV_DIRECT ? next[1] : NULL;
    c->winograd = c->automatic && c->pool && nn_conv_winograd_fits(&c->geom);
    c->relu = c->algorithm == ODY_CONV_ONEDNN && count >= 1 && strcmp(next[0]->ops->kind, "relu") == 0;
    c->relu_pool = c->algorithm == ODY_CONV_ONEDNN && fusable && c->geom.win.oh % 2 == 0 && c->geom.win.ow % 2 == 0;
    return c->pool || c->relu_pool ? 2 : c->relu ? 1 : 0;
}

static const char *conv2d_describe(const ody_layer *l)
{
    conv2d_layer *c = (conv2d_layer *)l;
    const char *what = c->algorithm == ODY_CONV_GEMM    ? "gemm"
                       : c->winograd                       ? "direct, winograd forward"
                       : c->algorithm == ODY_CONV_DIRECT   ? "direct"
                                                           : "onednn";
    snprintf(c->description, sizeof c->description, "%s%s%s%s%s%s", what,
             c->algorithm == ODY_CONV_ONEDNN ? " " : "",
             c->algorithm == ODY_CONV_ONEDNN && c->dnnl ? nn_dnnl_op_impl(c->dnnl) : "",
             c->bf16 && c->algorithm == ODY_CONV_ONEDNN ? " bf16" : "",
             c->relu_pool ? " + relu + pool" : c->relu ? " + relu" : "",
             c->automatic ? " (auto)" : "");
    return c->description;
}

/*
 * Make the onednn algorithm's primitives for the batch. When oneDNN has no
 * kernel for the shape on this CPU, a layer left at auto falls back to
 * what the openblas backend would run (and says so); one that asked for
 * onednn, or for bf16, fails with the reason.
 */
static ody_status prepare_onednn(ody_ctx *ctx, conv2d_layer *c, int max_batch)
{
    ody_layer *l = &c->base;
    ody_status st = ODY_OK;
    if (!c->dnnl)
        st = nn_dnnl_op_create(ctx,
                               &(nn_dnnl_shape){.kind = NN_DNNL_CONVOLUTION, .conv = c->geom, .bf16 = c->bf16,
                                                .stateless = l->lockstep,
                                                .layer = l->name, .relu = c->relu,
                                                .pool_k = c->relu_pool ? 2 : 0},
                               &c->dnnl);
    if (st == ODY_OK)
        st = nn_dnnl_op_plan(c->dnnl, max_batch);
    if (st == ODY_OK && strncmp(nn_dnnl_op_impl(c->dnnl), "ref", 3) == 0)
        ody_log(ctx, ODY_LOG_WARN, "%s: oneDNN has no JIT kernel for this CPU (%s: its slow reference code); "
                "model.backend: openblas may be faster", l->name, nn_dnnl_op_impl(c->dnnl));
    if (st == ODY_OK || st == ODY_ERR_NOMEM || !c->automatic || c->bf16)
        return st;
    ody_log(ctx, ODY_LOG_WARN, "%s: %s; running the openblas backend's algorithm instead", l->name,
            ody_ctx_error(ctx));
    ody_ctx_clear_error(ctx);
    nn_dnnl_op_destroy(c->dnnl);
    c->dnnl = NULL;
    c->backend = ODY_BACKEND_OPENBLAS;
    c->algorithm = choose_algorithm(c, false);
    if (c->relu) /* the model has planned the relu (and pool) into this step: gemm/direct cannot run them */
        return ody_fail(ctx, ODY_ERR_CONFIG, "oneDNN cannot run %s with its relu here; set model.backend: openblas",
                        l->name);
    return ODY_OK;
}

/* The direct algorithm's tables, which depend on the shape alone: made once. */
static ody_status prepare_direct(ody_ctx *ctx, conv2d_layer *c)
{
    const nn_conv_geom *g = &c->geom;
    if (!c->winoff) {
        c->winoff = malloc((size_t)g->win.oh * g->win.ow * sizeof *c->winoff);
        if (!c->winoff)
            return ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory for the convolution's window offsets",
                            c->base.name);
        nn_conv_window_offsets(g, c->winoff);
    }
    if (!c->same_masks && nn_conv_same_active(g)) {
        c->same_masks = malloc(nn_conv_same_masks(g) * sizeof *c->same_masks);
        if (!c->same_masks)
            return ody_fail(ctx, ODY_ERR_NOMEM, "%s: out of memory for the convolution's lane masks", c->base.name);
        nn_conv_same_fill(g, c->same_masks);
    }
    return ODY_OK;
}

static ody_status conv2d_prepare(ody_ctx *ctx, ody_layer *l, int max_batch)
{
    conv2d_layer *c = (conv2d_layer *)l;
    ody_status st = c->algorithm == ODY_CONV_ONEDNN ? prepare_onednn(ctx, c, max_batch) : ODY_OK;
    if (st == ODY_OK && c->algorithm == ODY_CONV_DIRECT) /* also where oneDNN fell back to it */
        st = prepare_direct(ctx, c);
    return st;
}

static ody_status conv2d_plan(ody_ctx *ctx, ody_layer *l, int n)
{
    conv2d_layer *c = (conv2d_layer *)l;
    return c->dnnl ? nn_dnnl_op_plan_batch(c->dnnl, n) : ODY_OK;
}

static void conv2d_destroy(ody_layer *l)
{
    conv2d_layer *c = (conv2d_layer *)l;
    nn_dnnl_op_destroy(c->dnnl);
    c->dnnl = NULL;
    free(c->winoff);
    free(c->same_masks);
    c->winoff = NULL;
    c->same_masks = NULL;
}

static const ody_layer_ops conv2d_ops = {
    .kind = "conv2d",
    .scratch_floats = conv2d_scratch_floats,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .fuse = conv2d_fuse,
    .describe = conv2d_describe,
    .prepare = conv2d_prepare,
    .plan = conv2d_plan,
    .destroy = conv2d_destroy,
};

ody_conv_algorithm ody_conv2d_algorithm(const ody_layer *l)
{
    return l->ops == &conv2d_ops ? ((const conv2d_layer *)l)->algorithm : ODY_CONV_AUTO;
}

ody_status nn_conv2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out)
{
    *out = NULL;
    nn_window win;
    int k = nn_arg(spec, NN_CONV_KERNEL);
    ody_status st = nn_window_make(ctx, "conv2d", in_shape, k, nn_arg(spec, NN_CONV_STRIDE),
                                   nn_arg(spec, NN_CONV_PADDING), &win);
    if (st != ODY_OK)
        return st;
    int64_t padded = (int64_t)win.c * (win.h + 2 * win.pad) * (win.w + 2 * win.pad);
    if (padded > INT32_MAX - 64) /* offsets into a padded sample are int32 */
        return ody_fail(ctx, ODY_ERR_CONFIG, "conv2d input of %lld padded floats per sample is too large",
                        (long long)padded);
    ody_layer *l;
    if ((st = nn_layer_new(ctx, sizeof(conv2d_layer), &conv2d_ops, in_shape, &l)) != ODY_OK)
        return st;
    conv2d_layer *c = (conv2d_layer *)l;
    int oc = nn_arg(spec, NN_CONV_OUT_CHANNELS);
    nn_conv_geom_make(&win, oc, &c->geom);
    c->algorithm = (ody_conv_algorithm)nn_arg(spec, NN_CONV_ALGORITHM);
    c->automatic = c->algorithm == ODY_CONV_AUTO;
    c->backend = spec->backend;
    c->bf16 = spec->bf16;
    if (c->algorithm == ODY_CONV_ONEDNN && c->backend == ODY_BACKEND_OPENBLAS)
        st = ody_fail(ctx, ODY_ERR_CONFIG, "algorithm onednn needs model.backend: onednn");
    if (st != ODY_OK) {
        nn_layer_free(ctx, l);
        return st;
    }
    if (c->automatic)
        c->algorithm = choose_algorithm(c, false); /* until conv2d_fuse sees what follows */
    l->out_shape = ody_shape3(oc, win.oh, win.ow);
    int64_t fan_in = (int64_t)win.c * k * k, fan_out = (int64_t)oc * k * k;
    nn_param_set(l, 0, "weight", ody_shape4(oc, win.c, k, k), fan_in, fan_out);
    nn_param_set(l, 1, "bias", ody_shape1(oc), fan_in, fan_out);
    *out = l;
    return ODY_OK;
}
