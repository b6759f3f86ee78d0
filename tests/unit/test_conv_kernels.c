/*
 * Unit tests: the CPU levels of conv2d's direct kernels (core/cpu.c,
 * nn/conv_kernels*.c). ODY_CPU_ISA picks the level of the whole process
 * (ctest runs test_nn and this file once per level); here every level
 * this CPU has is also run side by side on the same sample and compared
 * with the portable one, loop by loop, and the selection's errors are
 * checked.
 */
#include "ody_test.h"

#include <math.h>

#include "nn/conv_internal.h"

#define AGREE_TOL 1e-5 /* relative to the largest magnitude of the portable result */

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void fill(uint64_t stream, size_t n, float *out)
{
    ody_rng_uniform((ody_rng_key){.seed = 7, .stream = (uint32_t)stream}, 0, n, -1.0f, 1.0f, out);
}

/* Everything one sample's forward and backward produce at one level. */
typedef struct {
    float *pooled, *conv, *dw, *din, dbias[64];
    size_t npooled, nconv, ndw, ndin;
} sample_result;

/* Buffers for one geometry, as conv2d.c carves them. */
typedef struct {
    nn_conv_geom g;
    float *w, *b, *x, *dpooled, *dconv;
    float *wt, *bias, *xpad, *y, *tmp, *wq, *acc, *dint, *grad;
    int32_t *winoff, *arg, *rowoff, *tapoff, *off;
} sample_work;

static void work_make(const nn_window *win, int oc, sample_work *s)
{
    nn_conv_geom_make(win, oc, &s->g);
    const nn_conv_geom *g = &s->g;
    size_t taps = (size_t)win->c * win->k * win->k, plane = (size_t)win->oh * win->ow;
    size_t pooled = (size_t)(win->oh / 2) * (win->ow / 2);
    s->w = falloc(oc * taps);
    s->b = falloc(oc);
    s->x = falloc((size_t)win->c * win->h * win->w);
    s->dpooled = falloc(oc * pooled);
    s->dconv = falloc(oc * plane);
    fill(1, oc * taps, s->w);
    fill(2, oc, s->b);
    fill(3, (size_t)win->c * win->h * win->w, s->x);
    fill(4, oc * pooled, s->dpooled);
    fill(5, oc * plane, s->dconv);
    s->wt = falloc(taps * g->ocp);
    s->bias = falloc(g->ocp);
    s->xpad = falloc(nn_conv_padded_floats(g));
    s->y = falloc(plane * g->ocp);
    s->tmp = falloc(2 * pooled * g->ocp + 1);
    s->wq = falloc((size_t)oc * g->taps * NN_VEC);
    s->acc = falloc((size_t)oc * g->rows * NN_VEC);
    s->dint = falloc(nn_conv_dint_floats(g));
    s->grad = falloc(plane + NN_SLACK);
    s->winoff = (int32_t *)falloc(plane);
    s->arg = (int32_t *)falloc(oc * pooled + 1);
    s->rowoff = (int32_t *)falloc(g->rows);
    s->tapoff = (int32_t *)falloc(g->taps);
    s->off = (int32_t *)falloc(plane + NN_SLACK);
}

/* The work of case c = {C, H, W, OC, K, stride, pad}. */
static void case_work(ody_ctx *ctx, const int c[7], sample_work *s)
{
    nn_window win;
    ody_shape in = {3, {c[0], c[1], c[2]}};
    assert_int_equal(nn_window_make(ctx, "conv2d", in, c[4], c[5], c[6], &win), ODY_OK);
    work_make(&win, c[3], s);
}

static void work_free(sample_work *s)
{
    void *all[] = {s->w, s->b, s->x, s->dpooled, s->dconv, s->wt, s->bias, s->xpad, s->y, s->tmp, s->wq,
                   s->acc, s->dint, s->grad, s->winoff, s->arg, s->rowoff, s->tapoff, s->off};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* dW, db and din of one sample at level k on pixel-major copies (conv2d.c's hwc_backward). */
static void backward_hwc(const nn_conv_kernels *k, sample_work *s, sample_result *r)
{
    const nn_conv_geom *g = &s->g;
    nn_hwc_work work;
    size_t floats = nn_conv_hwc_carve(g, NULL, &work);
    float *buf = aligned_alloc(64, floats * sizeof *buf);
    assert_non_null(buf);
    memset(buf, 0xFF, floats * sizeof *buf); /* NaNs: what the kernels read must be written first */
    nn_conv_hwc_carve(g, buf, &work);
    nn_conv_hwc_prepare(g, s->w, &work, true);
    memset(r->dbias, 0, sizeof r->dbias);
    k->hwc_backward(g, s->xpad, r->pooled, s->dpooled, s->arg, &work, r->dbias, r->din);
    nn_conv_hwc_fold(g, work.hacc, r->dw);
    free(buf);
}

/*
 * dW, db and din of one sample from the terms of each channel (conv2d.c's
 * direct_backward); fused, on pixel-major copies where the level has them
 * and hwc is true.
 */
static void backward(const nn_conv_kernels *k, sample_work *s, bool fused, bool hwc, sample_result *r)
{
    const nn_conv_geom *g = &s->g;
    if (fused && hwc && k->hwc_backward && nn_conv_hwc_fits(g)) {
        backward_hwc(k, s, r);
        return;
    }
    int plane = g->win.oh * g->win.ow, pooled = (g->win.oh / 2) * (g->win.ow / 2);
    size_t filter = (size_t)g->rows * NN_VEC;
    nn_conv_pack_backward(g, s->w, s->wq, s->rowoff, s->tapoff);
    memset(s->acc, 0, g->oc * filter * sizeof *s->acc);
    memset(s->dint, 0, nn_conv_dint_floats(g) * sizeof *s->dint);
    for (int o = 0; o < g->oc; o++) {
        nn_conv_terms t = {.off = s->off, .grad = s->grad};
        if (fused)
            k->gather_terms(s->dpooled + (size_t)o * pooled, r->pooled + (size_t)o * pooled,
                            s->arg + (size_t)o * pooled, pooled, &t);
        else
            k->gather_terms(s->dconv + (size_t)o * plane, NULL, s->winoff, plane, &t);
        r->dbias[o] = k->weight_grad(g, s->xpad, s->rowoff, &t, s->acc + o * filter);
        k->input_grad(g, s->wq + (size_t)o * g->taps * NN_VEC, s->tapoff, &t, s->dint);
    }
    nn_conv_fold_weight_grad(g, s->acc, r->dw);
    const nn_window *w = &g->win;
    for (int y = 0; y < w->h; y++) { /* nn_conv_unpad with level k */
        size_t first = ((size_t)(y + w->pad) * g->wp + w->pad) * g->cp;
        k->transpose(s->dint + first, g->cp, w->w, w->c, r->din + (size_t)y * w->w, (size_t)w->h * w->w);
    }
}

/* Forward (fused with relu + pool, and alone) and backward of one sample at level k. */
static void run_sample(const nn_conv_kernels *k, sample_work *s, bool fused, bool hwc, sample_result *r)
{
    const nn_conv_geom *g = &s->g;
    int plane = g->win.oh * g->win.ow;
    nn_conv_pack_forward(g, s->w, s->b, s->wt, s->bias);
    nn_conv_window_offsets(g, s->winoff);
    nn_conv_pad_clear(g, s->xpad);
    nn_conv_pad(g, s->x, s->xpad);
    k->direct(g, s->xpad, s->wt, s->bias, s->y);
    k->to_channels(g, s->y, plane, r->conv);
    k->pool_relu(g, s->y, s->winoff, s->tmp, r->pooled, s->arg);
    memset(r->dw, 0, r->ndw * sizeof *r->dw);
    backward(k, s, fused, hwc, r);
}

static void result_make(const sample_work *s, sample_result *r)
{
    const nn_window *w = &s->g.win;
    r->npooled = (size_t)s->g.oc * (w->oh / 2) * (w->ow / 2);
    r->nconv = (size_t)s->g.oc * w->oh * w->ow;
    r->ndw = (size_t)s->g.oc * w->c * w->k * w->k;
    r->ndin = (size_t)w->c * w->h * w->w;
    r->pooled = falloc(r->npooled);
    r->conv = falloc(r->nconv);
    r->dw = falloc(r->ndw);
    r->din = falloc(r->ndin);
}

static void result_free(sample_result *r)
{
    free(r->pooled);
    free(r->conv);
    free(r->dw);
    free(r->din);
}

static void assert_agree(const float *got, const float *want, size_t n, const char *what, const char *isa)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= AGREE_TOL * fmax(scale, 1e-30))) {
            print_error("%s[%zu] at %s: %.9g, portable %.9g (scale %.3g)\n", what, i, isa, got[i], want[i], scale);
            fail();
        }
}

static void test_levels_agree_with_portable(void **state)
{
    ody_ctx *ctx = *state;
    static const struct {
        int c, h, w, oc, k, stride, pad;
    } cases[] = {
        {1, 28, 28, 6, 5, 1, 2},  /* LeNet-5's conv1: AVX-512 vectorises over pixels */
        {6, 14, 14, 16, 5, 1, 0}, /* LeNet-5's conv2: one 16-float vector of channels */
        {5, 20, 21, 8, 3, 1, 0},  /* 8 channels over pixels, rows of 19: a partial vector */
        {2, 7, 9, 3, 3, 1, 0},    /* conv output 5x7: its last row and column unpooled */
        {3, 9, 8, 10, 3, 2, 1},   /* stride 2 and padding; channels beyond a vector */
        {4, 12, 12, 32, 3, 1, 1}, /* two 16-float vectors */
        {9, 10, 11, 17, 9, 1, 1}, /* kernel rows wider than a vector; 9 input channels */
        {1, 11, 6, 2, 2, 3, 1},   /* stride 3 */
        {3, 11, 13, 20, 5, 1, 2}, /* pixel-major backward: padding, 20 channels (a partial 16), 11x13 */
        {7, 9, 9, 5, 4, 1, 1},    /* pixel-major, kernel rows of 28 floats, blocks of 35 (7 channels: the most) */
        {8, 9, 9, 5, 4, 1, 1},    /* 8 channels: the terms path */
        {2, 6, 6, 4, 1, 1, 0},    /* pixel-major, 1x1 */
    };
    int levels = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nn_window win;
        ody_shape in = {3, {cases[c].c, cases[c].h, cases[c].w}};
        assert_int_equal(nn_window_make(ctx, "conv2d", in, cases[c].k, cases[c].stride, cases[c].pad, &win), ODY_OK);
        sample_work s;
        work_make(&win, cases[c].oc, &s);
        for (int fused = 0; fused < 2; fused++) {
            sample_result want, got;
            result_make(&s, &want);
            result_make(&s, &got);
            run_sample(&nn_conv_kernels_portable, &s, fused, true, &want);
            for (int isa = ODY_ISA_AVX2; isa <= (int)ody_cpu_isa_best(); isa++) {
                const nn_conv_kernels *k = nn_conv_kernels_for((ody_cpu_isa)isa);
                assert_non_null(k);
                assert_int_equal(k->isa, isa);
                run_sample(k, &s, fused, true, &got);
                const char *name = ody_cpu_isa_name((ody_cpu_isa)isa);
                assert_agree(got.conv, want.conv, want.nconv, "conv output", name);
                assert_agree(got.pooled, want.pooled, want.npooled, "pooled output", name);
                assert_agree(got.dw, want.dw, want.ndw, "weight gradient", name);
                assert_agree(got.dbias, want.dbias, (size_t)s.g.oc, "bias gradient", name);
                assert_agree(got.din, want.din, want.ndin, "input gradient", name);
                levels++;
            }
            result_free(&want);
            result_free(&got);
        }
        work_free(&s);
    }
    if (ody_cpu_isa_best() == ODY_ISA_PORTABLE)
        skip(); /* nothing to compare with on this CPU */
    assert_true(levels > 0);
}

/* A level runs each sample alone: the same sample gives the same bits after any other. */
static void test_levels_are_repeatable(void **state)
{
    ody_ctx *ctx = *state;
    nn_window win;
    ody_shape in = {3, {6, 14, 14}};
    assert_int_equal(nn_window_make(ctx, "conv2d", in, 5, 1, 0, &win), ODY_OK);
    sample_work s;
    work_make(&win, 16, &s);
    for (int isa = 0; isa <= (int)ody_cpu_isa_best(); isa++) {
        const nn_conv_kernels *k = nn_conv_kernels_for((ody_cpu_isa)isa);
        sample_result a, b;
        result_make(&s, &a);
        result_make(&s, &b);
        run_sample(k, &s, true, true, &a);
        fill(9, (size_t)6 * 14 * 14, s.x); /* another sample between the two */
        run_sample(k, &s, true, true, &b);
        fill(3, (size_t)6 * 14 * 14, s.x);
        run_sample(k, &s, true, true, &b);
        assert_memory_equal(a.pooled, b.pooled, a.npooled * sizeof(float));
        assert_memory_equal(a.dw, b.dw, a.ndw * sizeof(float));
        assert_memory_equal(a.din, b.din, a.ndin * sizeof(float));
        result_free(&a);
        result_free(&b);
    }
    work_free(&s);
}

/*
 * The pixel-major fused backward sums each weight's and bias's terms in
 * the order of the terms path at the same level (the same bits); its
 * input gradient only agrees (another order of each element's parts).
 */
static void test_hwc_backward_bits(void **state)
{
    ody_ctx *ctx = *state;
    static const int cases[][7] = {{6, 14, 14, 16, 5, 1, 0}, {3, 11, 13, 20, 5, 1, 2}, {4, 12, 12, 32, 3, 1, 1}};
    int checked = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sample_work s;
        case_work(ctx, cases[c], &s);
        assert_true(nn_conv_hwc_fits(&s.g));
        for (int isa = 0; isa <= (int)ody_cpu_isa_best(); isa++) {
            const nn_conv_kernels *k = nn_conv_kernels_for((ody_cpu_isa)isa);
            if (!k->hwc_backward)
                continue;
            sample_result terms, hwc;
            result_make(&s, &terms);
            result_make(&s, &hwc);
            run_sample(k, &s, true, false, &terms);
            run_sample(k, &s, true, true, &hwc);
            assert_memory_equal(hwc.dw, terms.dw, terms.ndw * sizeof(float));
            assert_memory_equal(hwc.dbias, terms.dbias, (size_t)s.g.oc * sizeof(float));
            assert_agree(hwc.din, terms.din, terms.ndin, "input gradient (pixel-major)", ody_cpu_isa_name(k->isa));
            result_free(&terms);
            result_free(&hwc);
            checked++;
        }
        work_free(&s);
    }
    if (!checked)
        skip(); /* no level of this CPU has it */
}

/*
 * weight_grad_pair gives two weight_grad calls' bits: each channel's terms
 * in its own order, counts equal, unequal either way round, or zero.
 */
static void test_weight_grad_pair_bits(void **state)
{
    ody_ctx *ctx = *state;
    static const int cases[][7] = {{1, 28, 28, 6, 5, 1, 2}, {2, 7, 9, 3, 3, 1, 0}, {1, 11, 6, 2, 2, 3, 1}};
    static const int counts[][2] = {{0, 0}, {5, 5}, {0, 7}, {9, 2}, {3, 40}, {196, 150}};
    int checked = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sample_work s;
        case_work(ctx, cases[c], &s);
        const nn_conv_geom *g = &s.g;
        assert_true(g->rows <= 8);
        int plane = g->win.oh * g->win.ow;
        nn_conv_pack_backward(g, s.w, s.wq, s.rowoff, s.tapoff);
        nn_conv_window_offsets(g, s.winoff);
        nn_conv_pad_clear(g, s.xpad);
        nn_conv_pad(g, s.x, s.xpad);
        size_t filter = (size_t)g->rows * NN_VEC;
        float *grad2 = falloc((size_t)plane + NN_SLACK), *acc1 = falloc(2 * filter), *acc2 = falloc(2 * filter);
        int32_t *off2 = (int32_t *)falloc((size_t)plane + NN_SLACK);
        for (size_t n = 0; n < sizeof counts / sizeof counts[0]; n++) {
            nn_conv_terms t[2] = {{.off = s.off, .grad = s.grad}, {.off = off2, .grad = grad2}};
            for (int k = 0; k < 2; k++) {
                t[k].count = counts[n][k] < plane ? counts[n][k] : plane;
                fill(7 + k, (size_t)t[k].count, t[k].grad);
                for (int e = 0; e < t[k].count; e++) /* windows in a scattered order */
                    t[k].off[e] = s.winoff[(e * 7 + k * 3) % plane];
            }
            for (int isa = 0; isa <= (int)ody_cpu_isa_best(); isa++) {
                const nn_conv_kernels *kern = nn_conv_kernels_for((ody_cpu_isa)isa);
                if (!kern || !kern->weight_grad_pair)
                    continue;
                fill(9, 2 * filter, acc1); /* both start from the same (non-zero) sums */
                memcpy(acc2, acc1, 2 * filter * sizeof *acc1);
                float want[2], got[2];
                for (int k = 0; k < 2; k++)
                    want[k] = kern->weight_grad(g, s.xpad, s.rowoff, &t[k], acc1 + k * filter);
                kern->weight_grad_pair(g, s.xpad, s.rowoff, t, (float *const[2]){acc2, acc2 + filter}, got);
                assert_memory_equal(acc2, acc1, 2 * filter * sizeof *acc1);
                assert_memory_equal(got, want, sizeof want);
                checked++;
            }
        }
        free(grad2);
        free(acc1);
        free(acc2);
        free(off2);
        work_free(&s);
    }
    if (!checked)
        skip(); /* no level of this CPU has it */
}

/*
 * A same-size layer of few channels read unpadded (direct_same, with the
 * lane masks standing in for the padding) gives the y of pad + direct at
 * the same level, bit for bit, every output written; other shapes have
 * no masks.
 */
static void test_same_forward_bits(void **state)
{
    ody_ctx *ctx = *state;
    static const int cases[][7] = {
        {1, 28, 28, 6, 5, 1, 2}, /* LeNet-5's conv1: 49 whole vectors a channel, 4 at a time */
        {3, 11, 13, 8, 3, 1, 1}, /* 8 channels (2 vectors at a time), a partial last vector */
        {2, 9, 8, 5, 5, 1, 2},   /* rows of 8: a vector spans 2 rows and the padding at both ends */
        {1, 8, 9, 1, 7, 1, 3},   /* 7x7 (no constant-K code), one channel */
        {4, 10, 9, 7, 3, 1, 1},  /* 7 channels, 4 inputs */
        {2, 12, 10, 3, 5, 1, 2}, /* 120 pixels: 7 whole vectors and a partial one */
    };
    static const int others[][7] = {{1, 28, 28, 6, 5, 1, 1}, {1, 28, 28, 6, 5, 2, 2}, {1, 28, 28, 9, 5, 1, 2},
                                    {1, 6, 6, 2, 3, 1, 1},   {1, 28, 28, 6, 5, 1, 0}};
    for (size_t c = 0; c < sizeof others / sizeof others[0]; c++) {
        sample_work s;
        case_work(ctx, others[c], &s);
        assert_int_equal(nn_conv_same_masks(&s.g), 0);
        work_free(&s);
    }
    int checked = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sample_work s;
        case_work(ctx, cases[c], &s);
        const nn_conv_geom *g = &s.g;
        size_t count = nn_conv_same_masks(g), plane = (size_t)g->win.oh * g->win.ow, ny = plane * g->ocp;
        assert_int_equal(count, (plane + 15) / 16 * g->win.k * g->win.k);
        uint16_t *masks = calloc(count, sizeof *masks);
        float *want = falloc(g->oc * plane), *got = falloc(g->oc * plane);
        assert_non_null(masks);
        nn_conv_same_fill(g, masks);
        nn_conv_pack_forward(g, s.w, s.b, s.wt, s.bias);
        for (int isa = 0; isa <= (int)ody_cpu_isa_best(); isa++) {
            const nn_conv_kernels *k = nn_conv_kernels_for((ody_cpu_isa)isa);
            if (!k || !k->direct_same)
                continue;
            nn_conv_pad_clear(g, s.xpad);
            nn_conv_pad(g, s.x, s.xpad);
            memset(s.y, 0xFF, ny * sizeof *s.y); /* NaNs: every output must be written */
            k->direct(g, s.xpad, s.wt, s.bias, s.y);
            k->to_channels(g, s.y, (int)plane, want);
            memset(s.y, 0xFF, ny * sizeof *s.y);
            k->direct_same(g, s.x, masks, s.wt, s.bias, s.y);
            k->to_channels(g, s.y, (int)plane, got);
            for (size_t i = 0; i < g->oc * plane; i++)
                assert_false(isnan(got[i]));
            assert_memory_equal(got, want, g->oc * plane * sizeof *got);
            checked++;
        }
        free(masks);
        free(want);
        free(got);
        work_free(&s);
    }
    if (!checked)
        skip(); /* no level of this CPU has it */
}

/*
 * winograd (F(2, 5) along rows, where it fits) gives direct's y to within
 * a few roundings: every output within 1e-5 of the sum of its terms'
 * magnitudes of the exact sum (in double), on shapes with 1 to 5 tile
 * pairs a row, padding, and 1 and 2 groups of 16 channels. Other shapes
 * do not fit.
 */
static void test_winograd_forward(void **state)
{
    ody_ctx *ctx = *state;
    static const int cases[][7] = {
        {6, 14, 14, 16, 5, 1, 0}, /* LeNet-5's conv2: 5 tile pairs a row */
        {3, 8, 8, 32, 5, 1, 0},   /* 2 groups of 16 channels, 2 pairs */
        {2, 6, 6, 16, 5, 1, 2},   /* padded, 3 pairs */
        {4, 10, 10, 16, 5, 1, 2}, /* padded rows of 14, 5 pairs */
        {1, 6, 12, 16, 5, 1, 0},  /* 4 pairs, 2 rows */
        {5, 5, 6, 16, 5, 1, 0},   /* 1 pair, 1 row */
    };
    static const int others[][7] = {{6, 14, 14, 16, 5, 2, 0},  /* stride 2 */
                                    {6, 14, 14, 16, 3, 1, 0},  /* 3x3 */
                                    {6, 14, 15, 16, 5, 1, 0},  /* odd width */
                                    {6, 14, 14, 8, 5, 1, 0},   /* half a vector of channels */
                                    {6, 16, 16, 16, 5, 1, 0}}; /* 6 pairs */
    for (size_t c = 0; c < sizeof others / sizeof others[0]; c++) {
        sample_work s;
        case_work(ctx, others[c], &s);
        assert_false(nn_conv_winograd_fits(&s.g));
        work_free(&s);
    }
    int checked = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sample_work s;
        case_work(ctx, cases[c], &s);
        const nn_conv_geom *g = &s.g;
        const nn_window *w = &g->win;
        assert_int_equal(nn_conv_winograd_fits(g), nn_conv_kernels_active()->winograd != NULL);
        size_t plane = (size_t)w->oh * w->ow, ny = plane * g->ocp, taps = (size_t)w->c * w->k * w->k;
        float *u = falloc(nn_conv_winograd_u_floats(g)), *vt = falloc(nn_conv_winograd_vt_floats(g));
        nn_conv_pack_forward(g, s.w, s.b, s.wt, s.bias);
        nn_conv_pad_clear(g, s.xpad);
        nn_conv_pad(g, s.x, s.xpad);
        for (int isa = 0; isa <= (int)ody_cpu_isa_best(); isa++) {
            const nn_conv_kernels *k = nn_conv_kernels_for((ody_cpu_isa)isa);
            if (!k || !k->winograd)
                continue;
            k->winograd_pack(g, s.wt, u);
            memset(s.y, 0xFF, ny * sizeof *s.y); /* NaNs: every output must be written */
            k->winograd(g, s.xpad, u, s.bias, vt, s.y);
            for (int o = 0; o < g->oc; o++)
                for (size_t p = 0; p < plane; p++) {
                    int oy = (int)(p / (size_t)w->ow), ox = (int)(p % (size_t)w->ow);
                    double sum = s.b[o], size = fabs(s.b[o]);
                    for (int ci = 0; ci < w->c; ci++)
                        for (int kh = 0; kh < w->k; kh++)
                            for (int kw = 0; kw < w->k; kw++) {
                                double term = (double)s.w[o * taps + (size_t)(ci * w->k + kh) * w->k + kw] *
                                              s.xpad[((size_t)ci * g->hp + oy + kh) * g->wp + ox + kw];
                                sum += term;
                                size += fabs(term);
                            }
                    float got = s.y[p * g->ocp + o];
                    if (!(fabs(got - sum) <= 1e-5 * size))
                        fail_msg("case %zu, channel %d, pixel %zu: %.9g against %.9g (terms %.3g)", c, o, p,
                                 (double)got, sum, size);
                }
            checked++;
        }
        free(u);
        free(vt);
        work_free(&s);
    }
    if (!checked)
        skip(); /* no level of this CPU has it */
}

/* ODY_CPU_ISA as ctest sets it picks the level; unknown names and levels above the CPU's are errors. */
static void test_isa_selection(void **state)
{
    ody_ctx *ctx = *state;
    const char *env = getenv("ODY_CPU_ISA");
    char asked[32] = "";
    snprintf(asked, sizeof asked, "%s", env ? env : "");
    ody_cpu_isa isa, best = ody_cpu_isa_best();
    ody_status st = ody_cpu_isa_select(ctx, &isa);
    char why[256];
    snprintf(why, sizeof why, "%s", st == ODY_OK ? "" : ody_ctx_error(ctx));
    if (st == ODY_OK)
        assert_int_equal(ody_cpu_isa_active(), isa);
    assert_string_equal(ody_cpu_isa_name(nn_conv_kernels_active()->isa), ody_cpu_isa_name(ody_cpu_isa_active()));

    assert_int_equal(setenv("ODY_CPU_ISA", "sse9", 1), 0);
    assert_int_equal(ody_cpu_isa_select(ctx, &isa), ODY_ERR_USAGE);
    assert_non_null(strstr(ody_ctx_error(ctx), "ODY_CPU_ISA=sse9 is not known (portable, avx2 or avx512)"));
    assert_int_equal(setenv("ODY_CPU_ISA", "portable", 1), 0);
    assert_int_equal(ody_cpu_isa_select(ctx, &isa), ODY_OK);
    assert_int_equal(isa, ODY_ISA_PORTABLE);
    if (best < ODY_ISA_AVX512) {
        assert_int_equal(setenv("ODY_CPU_ISA", "avx512", 1), 0);
        assert_int_equal(ody_cpu_isa_select(ctx, &isa), ODY_ERR_USAGE);
        assert_non_null(strstr(ody_ctx_error(ctx), "ODY_CPU_ISA=avx512: this CPU (or this build) has no avx512"));
        assert_int_equal(isa, best);
    }
    if (*asked)
        setenv("ODY_CPU_ISA", asked, 1);
    else
        unsetenv("ODY_CPU_ISA");
    if (st != ODY_OK) { /* a level this CPU lacks: the tests of this run cover the best instead */
        print_message("%s\n", why);
        skip();
    }
}

#define CTX_TEST(fn) cmocka_unit_test_setup_teardown(fn, ody_test_ctx_setup, ody_test_ctx_teardown)

static const struct CMUnitTest group[] = {
    CTX_TEST(test_isa_selection),
    CTX_TEST(test_levels_agree_with_portable),
    CTX_TEST(test_levels_are_repeatable),
    CTX_TEST(test_hwc_backward_bits),
    CTX_TEST(test_weight_grad_pair_bits),
    CTX_TEST(test_same_forward_bits),
    CTX_TEST(test_winograd_forward),
};

ODY_TEST_MAIN(group)
