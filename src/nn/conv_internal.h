/*
 * conv2d's two algorithms, shared by conv2d.c (the layer: it picks one,
 * and runs direct alone or fused with the relu and 2x2 max pool after it),
 * conv_kernels.c (the direct loops: portable C, and the dispatch to
 * conv_kernels_avx2.c and conv_kernels_avx512.c, chosen at run time) and
 * conv_gemm.c (im2col + OpenBLAS sgemm). Internal to src/nn.
 *
 * The direct convolution runs one sample at a time on buffers of a fixed
 * size (independent of the batch), in these layouts:
 *
 *   xpad (C, HP, WP) + slack   the sample with its zero padding
 *   wt   (C*K*K, OCP)          weights transposed: one row of OCP outputs per tap
 *   y    (OH*OW, OCP)          output, pixel-major: each pixel's channels are
 *                              contiguous, so the kernel vectorises over them
 *                              (the AVX-512 level's loops for at most 8
 *                              output channels write it (OC, OH*OW) instead,
 *                              and read it so: y is the level's own)
 *   acc  (OC, ROWS, 8)         dW as ROWS vector rows (c, kh, kw/8) of 8
 *                              floats; lanes beyond the kernel's width unused
 *   dint (HP*WP, CP)           input gradient, pixel-major
 *   wq   (OC, K*K, CP)         a filter per tap as channel vectors
 *
 * OCP and CP are OC and C rounded up to whole vectors of 8 floats, zero
 * beyond. The slack (16 floats after xpad) lets an 8- or 16-wide row read
 * run past the last row of the plane.
 */
#ifndef ODYSSEY_NN_CONV_INTERNAL_H
#define ODYSSEY_NN_CONV_INTERNAL_H

#include "core/cpu_internal.h"
#include "nn/nn_internal.h"

enum { NN_VEC = 8, NN_SLACK = 16 };

typedef struct {
    nn_window win; /* input (c, h, w), kernel, stride, pad, output (oh, ow) */
    int oc;        /* output channels */
    int ocp;       /* oc rounded up to whole vectors */
    int hp, wp;    /* padded input plane */
    int kv;        /* vectors per kernel row: ceil(k / 8) */
    int rows;      /* vector rows of one filter in acc: c * k * kv */
    int cp;        /* c rounded up to whole vectors */
    int taps;      /* channel vectors of one filter in wq: k * k * cp / 8 */
} nn_conv_geom;

void nn_conv_geom_make(const nn_window *win, int oc, nn_conv_geom *g);
/* Floats of xpad, slack included, and of dint. */
size_t nn_conv_padded_floats(const nn_conv_geom *g);
size_t nn_conv_dint_floats(const nn_conv_geom *g);

/*
 * Gradient terms of one output channel of one sample: the position of
 * each output with a non-zero gradient, as the offset of its window's
 * top-left corner in xpad (channel 0), and the gradient.
 */
typedef struct {
    int32_t *off;
    float *grad;
    int count;
} nn_conv_terms;

/* Zero xpad: its borders and slack, which nn_conv_pad leaves alone. */
void nn_conv_pad_clear(const nn_conv_geom *g, float *xpad);
/* The inside of xpad = x (C, H, W). */
void nn_conv_pad(const nn_conv_geom *g, const float *x, float *xpad);
/* din (C, H, W) = the inside of a pixel-major padded plane, `stride` floats a pixel (dint: CP). */
void nn_conv_unpad(const nn_conv_geom *g, const float *dint, int stride, float *din);
/* wt (C*K*K, OCP) and bias (OCP) from W (OC, C, K, K) and b (OC), zero-filled beyond OC. */
void nn_conv_pack_forward(const nn_conv_geom *g, const float *w, const float *b, float *wt, float *bias);
/*
 * wq (OC, K*K, CP) from W; rowoff (ROWS): each acc row's offset in xpad
 * from a window's corner; tapoff (TAPS): each wq vector's offset in dint
 * from a window's corner. wq and tapoff NULL: no input gradient to come.
 */
void nn_conv_pack_backward(const nn_conv_geom *g, const float *w, float *wq, int32_t *rowoff,
                           int32_t *tapoff);
/* winoff (OH*OW): the offset of each output position's window corner in xpad, or in dint / CP. */
void nn_conv_window_offsets(const nn_conv_geom *g, int32_t *winoff);
/* dW (OC, C, K, K) += acc (OC, ROWS, 8), the lanes inside the kernel. */
void nn_conv_fold_weight_grad(const nn_conv_geom *g, const float *acc, float *dw);

/* y (OH*OW, OCP) = the convolution of xpad plus the bias. */
void nn_conv_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y);
/*
 * A same-size convolution (stride 1, padding, K = 2 * pad + 1: the output
 * plane is the input's) of at most 8 output channels (LeNet-5's conv1)
 * can run on the unpadded sample at a level that has direct_same: output
 * pixel p's tap (kh, kw) reads input element p + (kh - pad) * W + kw - pad
 * of its channel, so 16 consecutive pixels of the plane, across row ends,
 * read 16 consecutive floats, and lane masks (16 bits per 16 pixels and
 * tap, the lanes whose tap is inside the input) stand in for the padding.
 * nn_conv_same_masks is the number of masks, [vector][kh][kw] (0: not
 * such a layer); nn_conv_same_active says whether the active level runs
 * the layer so; nn_conv_same_fill writes them (once: conv2d keeps them).
 * nn_conv_direct_same's y is nn_conv_pad + nn_conv_direct's, bit for bit.
 */
size_t nn_conv_same_masks(const nn_conv_geom *g);
bool nn_conv_same_active(const nn_conv_geom *g);
void nn_conv_same_fill(const nn_conv_geom *g, uint16_t *masks);
void nn_conv_direct_same(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                         const float *bias, float *y);
/* dst (OC, pixels) = src (pixels, OCP): pixel-major to channel-major. */
void nn_conv_to_channels(const nn_conv_geom *g, const float *src, int pixels, float *dst);
/*
 * relu(2x2 max pool, stride 2) of y, written channel-major: out (OC, OH/2,
 * OW/2) and arg, winoff (the window offset) of each window's maximum;
 * ties go to the first in row-major order. tmp holds 2 * (OH/2) * (OW/2) *
 * OCP floats.
 */
void nn_conv_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                       float *out, int32_t *arg);
/*
 * Set t to the candidates i < n with grad[i] != 0 and, when y is not NULL,
 * y[i] > 0 (a relu passes them): their grad and off[i], in order. t's
 * arrays hold n + NN_SLACK entries (whole vectors are written, up to 16
 * floats at the AVX-512 level).
 */
void nn_conv_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t);
/*
 * acc (ROWS, 8) of one output channel += sum over terms of grad * window
 * rows of xpad. Returns the sum of the terms' gradients, the bias
 * gradient, added in their order (the order the training trajectory's
 * rounding has always had: tests compare trajectories across rank counts).
 */
float nn_conv_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                          const nn_conv_terms *t, float *acc);
/* dint += sum over terms of grad * the wq vectors of one output channel at each window. */
void nn_conv_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                        const nn_conv_terms *t, float *dint);

/*
 * The fused backward on pixel-major copies, all output channels of a
 * sample at once (levels that have it: AVX-512). A window's rows of C
 * channels are then contiguous: a kernel row of the weight gradient is
 * K * C floats (two 16-float vectors at most), and the input gradient of
 * one pooled window (K + 1 rows of K + 1 pixels, whichever of its four
 * positions won) is summed in registers over every output channel, and
 * slides along the pooled row, adding to dhwc the pixels it leaves
 * behind. For geometries with nn_conv_hwc_fits:
 *
 *   xhwc  (HP*WP, C) + slack   the padded sample, pixel-major
 *   dhwc  (HP*WP, C) + slack   its input gradient, pixel-major
 *   wrow  (OC16, 2, K, 48)     filter row kh of channel o placed in a row
 *                              of K + 1 pixels from pixel dx (0 or 1):
 *                              float (dx + kw) * C + c, zero elsewhere
 *                              (OC16: OC rounded up to whole 16s)
 *   hacc  (OC, K, 32)          dW: kernel row kh's floats kw * C + c
 *   tgrad, toff, tmask         each pooled window's terms (below)
 *   ty   (PH*PW, OC16)         the pooled output, pixel-major
 */
enum { NN_HWC_ROW = 32, NN_HWC_WROW = 48, NN_HWC_SLACK = 64 };

typedef struct {
    float *xhwc, *dhwc, *wrow, *hacc, *grad;
    int32_t *off;
    /* each pooled window's terms by channel (16 per group): gradient, wrow offset, and the masks of
     * live channels whose argmax is in the window's top row (low 16 bits) or bottom row (high 16) */
    float *tgrad;
    int32_t *toff;
    uint32_t *tmask;
    float *ty;
} nn_hwc_work;

/* Stride 1, 2 <= C <= 7 (one channel's rows are contiguous already; 2 pixels within a vector), K <= 5,
 * K * C <= 32 and (K + 1) * C <= 48. */
bool nn_conv_hwc_fits(const nn_conv_geom *g);
/* Point work's buffers into base (64-byte aligned), or with base NULL only count; returns the floats used. */
size_t nn_conv_hwc_carve(const nn_conv_geom *g, float *base, nn_hwc_work *work);
/* wrow from W (once per backward call); hacc and the slack of xhwc and dhwc zeroed. */
void nn_conv_hwc_prepare(const nn_conv_geom *g, const float *w, const nn_hwc_work *work, bool input_grad);
/* dW (OC, C, K, K) += hacc. */
void nn_conv_hwc_fold(const nn_conv_geom *g, const float *hacc, float *dw);

/*
 * The direct loops of one instruction set. The functions above with the
 * same names call those of the process's level (ody_cpu_isa_active, fixed
 * at its first use). Each level computes every sample alone, in a fixed
 * order, so its results do not depend on how a batch is split; two levels
 * may differ in the last bits (FMA against separate multiply and add, and
 * the order of a sum's terms), by about 1e-6 relative.
 */
typedef struct {
    ody_cpu_isa isa;
    void (*direct)(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y);
    /* direct of a same-size layer from the unpadded sample x (C, H, W) and its masks, where
     * nn_conv_same_masks(g) > 0 (NULL: the level has none): direct's y, bits and all. */
    void (*direct_same)(const nn_conv_geom *g, const float *x, const uint16_t *masks, const float *wt,
                        const float *bias, float *y);
    /*
     * Where nn_conv_winograd_fits(g) (NULL: the level has none): direct's y
     * by F(2, 5) Winograd along rows, with new sums (not direct's bits;
     * within a few float roundings of them). u (nn_conv_winograd_u_floats)
     * is made from wt by winograd_pack; vt (nn_conv_winograd_vt_floats) is
     * winograd's own work.
     */
    void (*winograd_pack)(const nn_conv_geom *g, const float *wt, float *u);
    void (*winograd)(const nn_conv_geom *g, const float *xpad, const float *u, const float *bias, float *vt,
                     float *y);
    void (*pool_relu)(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp, float *out,
                      int32_t *arg);
    void (*gather_terms)(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t);
    float (*weight_grad)(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                         const nn_conv_terms *t, float *acc);
    /*
     * weight_grad of two output channels at once, where g->rows <= 8 (NULL:
     * the level has none): acc[k] += channel k's terms, bias[k] = the sum
     * of its gradients, each in its terms' order (two weight_grad calls'
     * bits). The two bias sums are two chains side by side: one channel's
     * alone bounds LeNet-5's conv1 at 4 cycles a term.
     */
    void (*weight_grad_pair)(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                             const nn_conv_terms t[2], float *const acc[2], float bias[2]);
    void (*input_grad)(const nn_conv_geom *g, const float *wq, const int32_t *tapoff, const nn_conv_terms *t,
                       float *dint);
    /* nn_conv_to_channels of what direct wrote. */
    void (*to_channels)(const nn_conv_geom *g, const float *y, int pixels, float *dst);
    /*
     * One sample's fused backward on pixel-major copies (NULL: the level
     * has none): xpad is the padded sample (C, HP, WP), read within its
     * C * HP * WP floats (unpadded layers pass the input itself); out,
     * dout and arg are the sample's pooled output, its
     * gradient and the argmax window offsets, (OC, PH*PW). hacc and dbias
     * += its weight and bias gradients, the terms of each channel in
     * weight_grad's order (the same bits); din (when not NULL) = its input
     * gradient, (C, H, W).
     */
    void (*hwc_backward)(const nn_conv_geom *g, const float *xpad, const float *out, const float *dout,
                         const int32_t *arg, const nn_hwc_work *work, float *dbias, float *din);
    /* nn_conv_pad (NULL: the level has none, the generic copy runs). */
    void (*pad)(const nn_conv_geom *g, const float *x, float *xpad);
    /* dst[c * dst_stride + p] = src[p * stride + c] for p < pixels, c < channels (as bits). */
    void (*transpose)(const float *src, int stride, int pixels, int channels, float *dst, size_t dst_stride);
} nn_conv_kernels;

/*
 * The active level has winograd, and g suits it: stride 1, a 5x5 kernel,
 * output channels in whole 16-float vectors, an even output width of at
 * most 10 (its 6 products of up to 5 tile pairs in registers) and padded
 * rows of at most 16 floats (LeNet-5's conv2).
 */
bool nn_conv_winograd_fits(const nn_conv_geom *g);
size_t nn_conv_winograd_u_floats(const nn_conv_geom *g);
size_t nn_conv_winograd_vt_floats(const nn_conv_geom *g);

/* winograd's layouts: the kernel's taps, the transform's points, the lanes of a transformed row (tiles). */
enum { NN_WINO_K = 5, NN_WINO_POINTS = 6, NN_WINO_LANES = 8 };
/* u: the NN_WINO_POINTS vectors of 16 channels of group grp, input channel c, kernel row kh. */
static inline size_t nn_wino_u_at(const nn_conv_geom *g, int grp, int c, int kh)
{
    return (((size_t)grp * g->win.c + c) * NN_WINO_K + kh) * NN_WINO_POINTS * 16;
}
/* vt: the NN_WINO_POINTS rows of NN_WINO_LANES floats of padded row y of input channel c. */
static inline size_t nn_wino_vt_at(const nn_conv_geom *g, int c, int y)
{
    return ((size_t)c * g->hp + y) * NN_WINO_POINTS * NN_WINO_LANES;
}

/* The loops of a level, or NULL when this build has none for it (a level below is then used). */
const nn_conv_kernels *nn_conv_kernels_for(ody_cpu_isa isa);
/* Those of ody_cpu_isa_active(). */
const nn_conv_kernels *nn_conv_kernels_active(void);

/* For the files of each level: */
extern const nn_conv_kernels nn_conv_kernels_portable, nn_conv_kernels_avx2, nn_conv_kernels_avx512;
/* Items [lo, hi) of part `part` of `parts` nearly equal parts of n (inline: it runs per block). */
static inline void nn_conv_segment(int n, int part, int parts, int *lo, int *hi)
{
    *lo = (int)((long)part * n / parts);
    *hi = (int)((long)(part + 1) * n / parts);
}
/* Candidates [i, n) of gather_terms, appended to t. */
void nn_conv_gather_tail(const float *grad, const float *y, const int32_t *off, int i, int n, nn_conv_terms *t);
/* The AVX2 loops (conv_kernels_avx2.c), which the AVX-512 level shares. */
void nn_conv_avx2_direct(const nn_conv_geom *g, const float *xpad, const float *wt, const float *bias, float *y);
void nn_conv_avx2_pool_relu(const nn_conv_geom *g, const float *y, const int32_t *winoff, float *tmp,
                            float *out, int32_t *arg);
void nn_conv_avx2_gather_terms(const float *grad, const float *y, const int32_t *off, int n, nn_conv_terms *t);
float nn_conv_avx2_weight_grad(const nn_conv_geom *g, const float *xpad, const int32_t *rowoff,
                               const nn_conv_terms *t, float *acc);
void nn_conv_avx2_input_grad(const nn_conv_geom *g, const float *wq, const int32_t *tapoff,
                             const nn_conv_terms *t, float *dint);
void nn_conv_avx2_transpose(const float *src, int stride, int pixels, int channels, float *dst,
                            size_t dst_stride);
/* Pixels [p, pixels) of transpose, one float at a time. */
void nn_conv_transpose_tail(const float *src, int stride, int p, int pixels, int channels, float *dst,
                            size_t dst_stride);

/*
 * The gemm algorithm (conv_gemm.c) on W (OC, C, K, K), b (OC), in (n, C,
 * H, W) and out (n, OC, OH, OW), in groups of samples whose size depends
 * only on g. scratch holds nn_conv_gemm_scratch_floats(g) floats.
 */
size_t nn_conv_gemm_scratch_floats(const nn_conv_geom *g);
/* out = conv(in) + b. */
void nn_conv_gemm_forward(const nn_conv_geom *g, const float *w, const float *b, float *scratch, int n,
                          const float *in, float *out);
/* dw (OC, C, K, K) and db (OC) += this batch's gradients; din (when not NULL) = the input gradient. */
void nn_conv_gemm_backward(const nn_conv_geom *g, const float *w, float *dw, float *db, float *scratch,
                           int n, const float *in, const float *dout, float *din);

#endif /* ODYSSEY_NN_CONV_INTERNAL_H */
