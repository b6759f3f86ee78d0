/*
 * Unit tests: nn (layers, losses, model, registry).
 *
 * Every layer kind is checked against a naive double-precision reference
 * written here: the float forward must match it, and the float backward
 * (input gradient and every parameter gradient) must match central finite
 * differences of the reference on L = sum(r .* out) for a fixed random r.
 */
#include "ody_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odyssey/io.h"
#include "odyssey/nn.h"

#include "nn/conv_internal.h" /* whether the level has winograd */

#define EPS 1e-6       /* finite-difference step, on the double reference */
#define FWD_TOL 1e-5   /* float forward vs double reference, relative */
#define GRAD_TOL 2e-5  /* float backward vs finite differences, relative */

/* ----------------------------------------------------------------- helpers */

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void frand(uint64_t c0, size_t n, float lo, float hi, float *out)
{
    ody_rng_uniform((ody_rng_key){.seed = 777, .stream = 99}, c0, n, lo, hi, out);
}

static size_t numel(ody_shape s) { return (size_t)ody_shape_numel(&s); }

/* |a - b| <= tol (1 + |b|), with a message naming what and where on failure. */
static void assert_close(double a, double b, double tol, const char *what, size_t i)
{
    if (!(fabs(a - b) <= tol * (1.0 + fabs(b)))) {
        print_error("%s[%zu]: got %.9g, want %.9g\n", what, i, a, b);
        fail();
    }
}

static ody_layer_spec make_spec(ody_ctx *ctx, const char *kind, int nargs, const double *args)
{
    ody_layer_spec s;
    assert_int_equal(ody_layer_spec_default(ctx, kind, &s), ODY_OK);
    for (int i = 0; i < nargs; i++)
        s.args[i] = args[i];
    return s;
}

static ody_model *one_layer(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in, int n)
{
    ody_model *m = NULL;
    ody_status st = ody_model_create_from_specs(ctx, "one", spec, 1, in, &m);
    if (st != ODY_OK)
        print_error("%s\n", ody_ctx_error(ctx));
    assert_int_equal(st, ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, m, n), ODY_OK);
    return m;
}

/* ------------------------------------------------- double-precision references */

typedef void (*ref_fn)(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                       const double *x, double *const *w, double *y);

/* Output side of a window dimension; asserted against the layer's own shape. */
static int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

static void ref_conv2d(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                       const double *x, double *const *w, double *y)
{
    int oc_n = (int)spec->args[0], k = (int)spec->args[1], s = (int)spec->args[2], p = (int)spec->args[3];
    int c_n = (int)in.dims[0], h = (int)in.dims[1], wd = (int)in.dims[2];
    int oh = out_size(h, k, s, p), ow = out_size(wd, k, s, p);
    for (int b = 0; b < n; b++)
        for (int oc = 0; oc < oc_n; oc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double sum = w[1][oc];
                    for (int c = 0; c < c_n; c++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s + ky - p, ix = ox * s + kx - p;
                                if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                                    sum += w[0][((oc * c_n + c) * k + ky) * k + kx] *
                                           x[((b * c_n + c) * h + iy) * wd + ix];
                            }
                    y[((b * oc_n + oc) * oh + oy) * ow + ox] = sum;
                }
}

/* Both pools: max ignores padding (-inf); avg divides by k*k (padding counts as zero). */
static void ref_pool(const ody_layer_spec *spec, ody_shape in, int n, const double *x, double *y, bool max)
{
    int k = (int)spec->args[0], s = spec->args[1] ? (int)spec->args[1] : k, p = (int)spec->args[2];
    int c_n = (int)in.dims[0], h = (int)in.dims[1], wd = (int)in.dims[2];
    int oh = out_size(h, k, s, p), ow = out_size(wd, k, s, p);
    for (int b = 0; b < n * c_n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double acc = max ? -INFINITY : 0.0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s + ky - p, ix = ox * s + kx - p;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd)
                            continue;
                        double v = x[(b * h + iy) * wd + ix];
                        acc = max ? fmax(acc, v) : acc + v;
                    }
                y[(b * oh + oy) * ow + ox] = max ? acc : acc / (k * k);
            }
}

static void ref_maxpool2d(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                          const double *x, double *const *w, double *y)
{
    ref_pool(spec, in, n, x, y, true);
}

static void ref_avgpool2d(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                          const double *x, double *const *w, double *y)
{
    ref_pool(spec, in, n, x, y, false);
}

static void ref_linear(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                       const double *x, double *const *w, double *y)
{
    int out_n = (int)spec->args[0], in_n = (int)numel(in);
    for (int b = 0; b < n; b++)
        for (int o = 0; o < out_n; o++) {
            double sum = w[1][o];
            for (int i = 0; i < in_n; i++)
                sum += w[0][o * in_n + i] * x[b * in_n + i];
            y[b * out_n + o] = sum;
        }
}

/* Element-wise kinds: relu, tanh, sigmoid, flatten. */
static double elementwise(const char *kind, double v)
{
    if (strcmp(kind, "relu") == 0)
        return v > 0 ? v : 0;
    if (strcmp(kind, "tanh") == 0)
        return tanh(v);
    if (strcmp(kind, "sigmoid") == 0)
        return 1.0 / (1.0 + exp(-v));
    return v;
}

static void ref_elementwise(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                            const double *x, double *const *w, double *y)
{
    for (size_t i = 0; i < (size_t)n * numel(in); i++)
        y[i] = elementwise(spec->kind, x[i]);
}

/* The documented dropout mask of element e of a sample, in layer number 1. */
static double ref_mask(const ody_forward_info *info, int64_t id, size_t e, float p)
{
    uint32_t w[4];
    ody_philox((ody_rng_key){info->seed, ODY_STREAM_DROPOUT}, info->step << 16 | 1,
               (uint64_t)id << 32 | (e / 4), w);
    return ody_u32_to_unit(w[e % 4]) >= p ? 1.0 / (1.0 - (double)p) : 0.0;
}

static void ref_dropout(const ody_layer_spec *spec, ody_shape in, const ody_forward_info *info, int n,
                        const double *x, double *const *w, double *y)
{
    size_t m = numel(in);
    for (int b = 0; b < n; b++)
        for (size_t e = 0; e < m; e++)
            y[b * m + e] = x[b * m + e] *
                           (info->training ? ref_mask(info, info->sample_ids[b], e, (float)spec->args[0]) : 1);
}

/* ------------------------------------------------------- gradient checking */

typedef struct {
    const ody_layer_spec *spec;
    ody_shape in;
    const ody_forward_info *info;
    int n;
    ref_fn ref;
    double *x, *w[ODY_LAYER_MAX_PARAMS], *r, *y;
    size_t ny;
} problem;

/* L = sum(r .* ref(x, w)) */
static double objective(problem *p)
{
    p->ref(p->spec, p->in, p->info, p->n, p->x, p->w, p->y);
    double sum = 0;
    for (size_t i = 0; i < p->ny; i++)
        sum += p->r[i] * p->y[i];
    return sum;
}

/* Compare analytic[0..count) with central differences of L in v[0..count). */
static void check_fd(problem *p, double *v, size_t count, const float *analytic, const char *what)
{
    for (size_t j = 0; j < count; j++) {
        double keep = v[j];
        v[j] = keep + EPS;
        double plus = objective(p);
        v[j] = keep - EPS;
        double minus = objective(p);
        v[j] = keep;
        assert_close(analytic[j], (plus - minus) / (2 * EPS), GRAD_TOL, what, j);
    }
}

static double *to_double(const float *f, size_t n)
{
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    return d;
}

/*
 * Build the layer alone, give it random parameters and input, and check its
 * forward against ref and its backward against finite differences. About
 * zero_share of the output gradient r is exactly zero (as after a relu).
 */
static void check_layer(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in, int n, ref_fn ref,
                        const ody_forward_info *info, float zero_share)
{
    ody_model *m = one_layer(ctx, spec, in, n);
    ody_layer *l = m->layers[0];
    size_t nx = (size_t)n * numel(in), ny = (size_t)n * numel(l->out_shape);
    float *x = falloc(nx), *r = falloc(ny), *din = falloc(nx);
    frand(1, nx, -1, 1, x);
    frand(2, ny, -1, 1, r);
    for (size_t i = 0; i < ny; i++)
        r[i] = fabsf(r[i]) < zero_share ? 0.0f : r[i];
    frand(3, m->params.size, -1, 1, m->params.data);
    problem p = {.spec = spec, .in = in, .info = info, .n = n, .ref = ref, .x = to_double(x, nx),
                 .r = to_double(r, ny), .y = dalloc(ny), .ny = ny};
    for (int t = 0; t < l->nparams; t++)
        p.w[t] = to_double(l->params[t].value, numel(l->params[t].shape));

    const float *out = ody_model_forward(m, info, n, x);
    objective(&p);
    for (size_t i = 0; i < ny; i++)
        assert_close(out[i], p.y[i], FWD_TOL, "forward", i);

    ody_model_zero_grad(m);
    l->ops->backward(l, info, n, x, out, r, din);
    check_fd(&p, p.x, nx, din, "input gradient");
    for (int t = 0; t < l->nparams; t++)
        check_fd(&p, p.w[t], numel(l->params[t].shape), l->params[t].grad, l->params[t].name);

    for (int t = 0; t < l->nparams; t++)
        free(p.w[t]);
    free(p.x), free(p.r), free(p.y), free(x), free(r), free(din);
    ody_model_destroy(ctx, m);
}

typedef struct {
    double args[5];
    ody_shape in;
    int n;
} layer_case;

static void check_cases(ody_ctx *ctx, const char *kind, ref_fn ref, const layer_case *cases, int ncases,
                        float zero_share)
{
    int64_t ids[8] = {11, 3, 250, 7, 19, 4, 100, 2};
    ody_forward_info info = {.training = true, .seed = 5, .step = 9, .sample_ids = ids};
    for (int i = 0; i < ncases; i++) {
        ody_layer_spec spec = make_spec(ctx, kind, 5, cases[i].args);
        check_layer(ctx, &spec, cases[i].in, cases[i].n, ref, &info, zero_share);
    }
}

#define CHECK_CASES(ctx, kind, ref, cases) \
    check_cases(ctx, kind, ref, cases, (int)(sizeof cases / sizeof cases[0]), 0.0f)

/* ------------------------------------------------------------ layer tests */

/* conv2d (out_channels, kernel, stride, padding); the algorithm is set by each test. */
static const layer_case conv_cases[] = {
    {{2, 3, 1, 0}, {3, {1, 5, 5}}, 2},
    {{3, 3, 2, 1}, {3, {2, 6, 7}}, 3},  /* stride 2, odd sizes, non-square */
    {{2, 5, 1, 2}, {3, {3, 4, 4}}, 2},  /* kernel larger than the input itself */
    {{2, 5, 1, 1}, {3, {2, 3, 3}}, 2},  /* kernel == padded input: 1x1 output */
    {{2, 2, 3, 0}, {3, {1, 7, 5}}, 2},  /* stride 3 does not divide evenly */
    {{4, 1, 1, 0}, {3, {3, 2, 3}}, 1},  /* 1x1 kernel */
    {{10, 3, 1, 1}, {3, {2, 4, 5}}, 2}, /* output channels beyond one vector of 8 */
    {{2, 9, 1, 3}, {3, {1, 5, 6}}, 1},  /* kernel rows wider than a vector */
    {{3, 2, 1, 0}, {3, {9, 3, 3}}, 2},  /* input channels beyond one vector */
    {{17, 2, 1, 0}, {3, {1, 3, 4}}, 1}, /* three channel vectors: a pair and one alone */
    {{2, 3, 1, 1}, {3, {1, 5, 26}}, 1}, /* long rows: register blocks of 8 and 9 pixels */
    {{9, 3, 1, 1}, {3, {1, 3, 13}}, 1}, /* long rows, two channel vectors: blocks of 4 and 5 */
    {{3, 3, 3, 2}, {3, {2, 8, 7}}, 3},  /* stride 3 with padding, several samples */
};

enum { NCONV_CASES = (int)(sizeof conv_cases / sizeof conv_cases[0]) };

/* Every conv case with `algorithm`, against the reference and finite differences. */
static void check_conv_cases(ody_ctx *ctx, ody_conv_algorithm algorithm)
{
    layer_case cases[NCONV_CASES];
    memcpy(cases, conv_cases, sizeof cases);
    for (int i = 0; i < NCONV_CASES; i++)
        cases[i].args[4] = algorithm;
    check_cases(ctx, "conv2d", ref_conv2d, cases, NCONV_CASES, 0.0f);
    /* Output gradients with exact zeros: only the non-zero ones become terms of direct. */
    check_cases(ctx, "conv2d", ref_conv2d, cases, NCONV_CASES, 0.6f);
}

static void test_conv2d_gradients(void **state) { check_conv_cases(*state, ODY_CONV_DIRECT); }

static void test_conv2d_gemm_gradients(void **state) { check_conv_cases(*state, ODY_CONV_GEMM); }

static void test_conv2d_onednn_gradients(void **state) { check_conv_cases(*state, ODY_CONV_ONEDNN); }

static const layer_case pool_cases[] = {
    {{2, 0, 0}, {3, {1, 4, 4}}, 2}, /* no overlap, stride = kernel */
    {{2, 0, 0}, {3, {2, 5, 7}}, 2}, /* the same on odd sizes: last row and column unused */
    {{3, 2, 1}, {3, {2, 5, 7}}, 2}, /* overlap and padding */
    {{3, 1, 0}, {3, {3, 5, 5}}, 1}, /* overlap */
    {{2, 3, 0}, {3, {1, 7, 6}}, 2}, /* gaps; stride does not divide evenly */
    {{2, 2, 1}, {3, {2, 3, 5}}, 3}, /* padding 1 with kernel 2 */
    {{4, 4, 2}, {3, {1, 4, 4}}, 2}, /* padding 2 */
};

static void test_maxpool2d_gradients(void **state)
{
    CHECK_CASES(*state, "maxpool2d", ref_maxpool2d, pool_cases);
}

static void test_avgpool2d_gradients(void **state)
{
    CHECK_CASES(*state, "avgpool2d", ref_avgpool2d, pool_cases);
}

static void test_linear_gradients(void **state)
{
    static const layer_case cases[] = {
        {{3}, {1, {5}}, 4},
        {{4}, {3, {2, 3, 3}}, 2}, /* (C, H, W) input taken as flattened */
        {{1}, {1, {7}}, 1},
    };
    CHECK_CASES(*state, "linear", ref_linear, cases); /* onednn (dnnl_sgemm) */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) { /* openblas (cblas_sgemm) */
        ody_layer_spec spec = make_spec(*state, "linear", 1, cases[i].args);
        spec.backend = ODY_BACKEND_OPENBLAS;
        int64_t ids[8] = {0};
        ody_forward_info info = {.training = true, .sample_ids = ids};
        check_layer(*state, &spec, cases[i].in, cases[i].n, ref_linear, &info, 0.0f);
    }
}

static void test_activation_and_flatten_gradients(void **state)
{
    static const layer_case cases[] = {
        {{0}, {3, {3, 4, 5}}, 2},
        {{0}, {1, {7}}, 3},
    };
    const char *kinds[] = {"relu", "tanh", "sigmoid", "flatten"};
    for (int k = 0; k < 4; k++)
        CHECK_CASES(*state, kinds[k], ref_elementwise, cases);
}

static void test_dropout_gradients(void **state)
{
    static const layer_case cases[] = {
        {{0.4}, {3, {2, 3, 5}}, 3},
        {{0.5}, {1, {9}}, 2},
    };
    CHECK_CASES(*state, "dropout", ref_dropout, cases);
}

static void test_layer_shapes(void **state)
{
    ody_ctx *ctx = *state;
    struct {
        const char *kind;
        double args[4];
        ody_shape in, out;
    } cases[] = {
        {"conv2d", {6, 5, 1, 2}, {3, {1, 28, 28}}, {3, {6, 28, 28}}},
        {"conv2d", {4, 3, 2, 1}, {3, {3, 8, 9}}, {3, {4, 4, 5}}},
        {"maxpool2d", {2, 0, 0}, {3, {6, 28, 28}}, {3, {6, 14, 14}}},
        {"avgpool2d", {3, 2, 1}, {3, {2, 6, 7}}, {3, {2, 3, 4}}},
        {"linear", {120}, {3, {16, 5, 5}}, {1, {120}}},
        {"flatten", {0}, {3, {16, 5, 5}}, {1, {400}}},
        {"tanh", {0}, {3, {2, 3, 4}}, {3, {2, 3, 4}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ody_layer_spec spec = make_spec(ctx, cases[i].kind, 4, cases[i].args);
        ody_model *m = one_layer(ctx, &spec, cases[i].in, 1);
        assert_true(ody_shape_equal(&m->layers[0]->out_shape, &cases[i].out));
        ody_model_destroy(ctx, m);
    }
}

/* ------------------------------------------------------------ fused steps */

/* conv2d (algorithm) -> relu -> maxpool2d (2x2) with fusion on or off, random parameters. */
static ody_model *conv_block_with(ody_ctx *ctx, const double *conv, ody_conv_algorithm algorithm, ody_shape in,
                                  int n, bool fused)
{
    double direct[5] = {conv[0], conv[1], conv[2], conv[3], algorithm};
    ody_layer_spec specs[3] = {make_spec(ctx, "conv2d", 5, direct), make_spec(ctx, "relu", 0, NULL),
                               make_spec(ctx, "maxpool2d", 1, (double[]){2})};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "block", specs, 3, in, &m), ODY_OK);
    assert_int_equal(ody_model_set_fusion(ctx, m, fused), ODY_OK);
    assert_int_equal(m->span[0], fused ? 3 : 1);
    assert_int_equal(ody_model_prepare(ctx, m, n), ODY_OK);
    frand(3, m->params.size, -1, 1, m->params.data);
    return m;
}

static ody_model *conv_block(ody_ctx *ctx, const double *conv, ody_shape in, int n, bool fused)
{
    return conv_block_with(ctx, conv, ODY_CONV_DIRECT, in, n, fused);
}

/* Backward through every step of m, the first one's input gradient included (into din). */
static void backward_all(ody_model *m, int n, const float *x, const float *dout, float *din, float *tmp[2])
{
    for (int last = m->nlayers - 1, k = 0; last >= 0; k ^= 1) {
        int start = last;
        while (m->span[start] == 0)
            start--;
        ody_layer *l = m->layers[start];
        float *d = start == 0 ? din : tmp[k];
        l->ops->backward(l, NULL, n, start ? m->acts[start - 1] : x, m->acts[last], dout, d);
        dout = d;
        last = start - 1;
    }
}

/*
 * Two conv blocks of the same parameters on the same n inputs (frand
 * seed) and output gradients (seed + 1): pooled outputs within out_tol,
 * input and parameter gradients within 1e-5. Returns the largest
 * difference of the pooled outputs.
 */
static double compare_blocks(ody_model *a, ody_model *b, int n, ody_shape in, uint64_t seed, double out_tol)
{
    size_t nx = (size_t)n * numel(in), ny = (size_t)n * numel(a->layers[2]->out_shape);
    size_t nconv = (size_t)n * numel(a->layers[0]->out_shape);
    float *x = falloc(nx), *dout = falloc(ny), *din_a = falloc(nx), *din_b = falloc(nx);
    float *tmp[2] = {falloc(nconv), falloc(nconv)};
    frand(seed, nx, -1, 1, x);
    frand(seed + 1, ny, -1, 1, dout);
    const float *ya = ody_model_forward(a, NULL, n, x), *yb = ody_model_forward(b, NULL, n, x);
    double most = 0;
    for (size_t i = 0; i < ny; i++) {
        assert_close(ya[i], yb[i], out_tol, "pooled output", i);
        most = fmax(most, fabs((double)ya[i] - yb[i]));
    }
    ody_model_zero_grad(a);
    ody_model_zero_grad(b);
    backward_all(a, n, x, dout, din_a, tmp);
    backward_all(b, n, x, dout, din_b, tmp);
    for (size_t i = 0; i < nx; i++)
        assert_close(din_a[i], din_b[i], 1e-5, "input gradient", i);
    for (size_t i = 0; i < a->grads.size; i++)
        assert_close(a->grads.data[i], b->grads.data[i], 1e-5, "parameter gradient", i);
    free(x), free(dout), free(din_a), free(din_b), free(tmp[0]), free(tmp[1]);
    return most;
}

static void test_fused_conv_relu_pool_matches_unfused(void **state)
{
    ody_ctx *ctx = *state;
    static const struct {
        double conv[4];
        ody_shape in;
        int n;
    } cases[] = {
        {{6, 5, 1, 2}, {3, {1, 28, 28}}, 3},  /* LeNet-5's conv1 */
        {{16, 5, 1, 0}, {3, {6, 14, 14}}, 2}, /* LeNet-5's conv2 */
        {{3, 3, 1, 0}, {3, {2, 7, 9}}, 2},    /* conv output 5x7: its last row and column unpooled */
        {{10, 3, 2, 1}, {3, {2, 9, 8}}, 2},   /* stride 2 and padding; channels beyond a vector */
        {{17, 9, 1, 1}, {3, {9, 10, 11}}, 1}, /* kernel rows wider than a vector; 9 input channels */
        {{2, 2, 3, 1}, {3, {1, 11, 6}}, 2},   /* stride 3 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n;
        ody_model *f = conv_block(ctx, cases[c].conv, cases[c].in, n, true);
        ody_model *u = conv_block(ctx, cases[c].conv, cases[c].in, n, false);
        assert_null(f->acts[0]); /* the conv and relu outputs of a fused step are not stored */
        assert_null(f->acts[1]);
        compare_blocks(f, u, n, cases[c].in, 20, 1e-6);
        ody_model_destroy(ctx, f);
        ody_model_destroy(ctx, u);
    }
}

/*
 * LeNet-5's conv2 at auto, fused, runs its forward by Winograd where the
 * level has it (conv_kernels_avx512.c): its pooled output within 1e-5 of
 * direct's, and the backward (direct's loops, from the pooled argmax that
 * forward chose) the same gradients to 1e-5.
 */
static void test_winograd_block_matches_direct(void **state)
{
    ody_ctx *ctx = *state;
    static const double conv[4] = {16, 5, 1, 0};
    const ody_shape in = {3, {6, 14, 14}};
    enum { N = 3 };
    ody_model *a = conv_block_with(ctx, conv, ODY_CONV_AUTO, in, N, true);
    ody_model *d = conv_block(ctx, conv, in, N, true);
    bool winograd = nn_conv_kernels_active()->winograd != NULL;
    assert_string_equal(a->layers[0]->ops->describe(a->layers[0]),
                        winograd ? "direct, winograd forward (auto)" : "direct (auto)");
    double most = compare_blocks(a, d, N, in, 40, 1e-5);
    print_message("winograd %s: largest difference of the pooled outputs %.3g\n", winograd ? "on" : "off", most);
    ody_model_destroy(ctx, a);
    ody_model_destroy(ctx, d);
}

static void test_fusion_plan_and_buffers(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = {.name = "lenet5", .num_classes = 10, .input_shape = {3, {1, 28, 28}}};
    ody_model *f = NULL, *u = NULL;
    assert_int_equal(ody_model_create(ctx, &o, &f), ODY_OK);
    assert_int_equal(ody_model_create(ctx, &o, &u), ODY_OK);
    assert_int_equal(ody_model_set_fusion(ctx, u, false), ODY_OK);
    /* conv+relu+pool twice, the second absorbing flatten (a view); fc, relu alone */
    static const int spans[] = {3, 0, 0, 4, 0, 0, 0, 1, 1, 1, 1, 1};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(f->span[i], spans[i]);
        assert_int_equal(u->span[i], 1);
    }
    assert_int_equal(ody_model_prepare(ctx, f, 100), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, u, 100), ODY_OK);
    assert_null(f->acts[5]); /* pool2's output is written as flatten's */
    assert_non_null(f->acts[6]);
    assert_true(f->prepared_bytes < u->prepared_bytes / 2); /* conv and relu outputs not stored */
    const ody_layer *conv = f->layers[0]; /* its work buffers do not grow with the batch */
    assert_int_equal(conv->ops->scratch_floats(conv, 1), conv->ops->scratch_floats(conv, 1000));
    assert_int_equal(ody_model_set_fusion(ctx, f, false), ODY_ERR_INTERNAL);
    ody_model_destroy(ctx, f);
    ody_model_destroy(ctx, u);
}

/* ---------------------------------------------------------------- dropout */

typedef struct {
    ody_ctx *ctx;
    ody_model *m;
    size_t per_sample;
} dropout_fixture;

static dropout_fixture dropout_layer(ody_ctx *ctx, double p, size_t per_sample, int max_batch)
{
    ody_layer_spec spec = make_spec(ctx, "dropout", 1, (double[]){p});
    return (dropout_fixture){ctx, one_layer(ctx, &spec, ody_shape1((int64_t)per_sample), max_batch),
                             per_sample};
}

/* Forward ones through the layer: the output is the mask. */
static const float *mask_of(dropout_fixture *f, uint64_t step, const int64_t *ids, int n, bool training)
{
    float *ones = falloc((size_t)n * f->per_sample);
    for (size_t i = 0; i < (size_t)n * f->per_sample; i++)
        ones[i] = 1.0f;
    ody_forward_info info = {.training = training, .seed = 42, .step = step, .sample_ids = ids};
    const float *out = ody_model_forward(f->m, &info, n, ones);
    free(ones);
    return out;
}

static void test_dropout_mask_is_keyed_by_sample(void **state)
{
    enum { M = 256 };
    dropout_fixture f = dropout_layer(*state, 0.5, M, 2);
    float a[M], b[M], c[M];
    int64_t ids[2] = {1234, 99};
    memcpy(a, mask_of(&f, 3, ids, 1, true), sizeof a);
    memcpy(b, mask_of(&f, 3, ids, 1, true), sizeof b);
    assert_memory_equal(a, b, sizeof a); /* same (seed, step, id): same mask */
    memcpy(c, mask_of(&f, 3, ids + 1, 1, true), sizeof c);
    assert_memory_not_equal(a, c, sizeof a); /* another sample: another mask */
    memcpy(c, mask_of(&f, 4, ids, 1, true), sizeof c);
    assert_memory_not_equal(a, c, sizeof a); /* another step: another mask */
    int64_t swapped[2] = {99, 1234};
    const float *two = mask_of(&f, 3, swapped, 2, true);
    assert_memory_equal(two + M, a, sizeof a); /* row position does not matter */
    for (int i = 0; i < M; i++)
        assert_true(a[i] == 0.0f || a[i] == 2.0f);
    ody_model_destroy(f.ctx, f.m);
}

static void test_dropout_rate_and_eval_identity(void **state)
{
    enum { M = 20000 };
    dropout_fixture f = dropout_layer(*state, 0.3, M, 1);
    int64_t id = 5;
    const float *mask = mask_of(&f, 0, &id, 1, true);
    int dropped = 0;
    for (int i = 0; i < M; i++)
        dropped += mask[i] == 0.0f;
    assert_true(fabs((double)dropped / M - 0.3) < 0.015);

    float *x = falloc(M);
    frand(7, M, -3, 3, x);
    ody_forward_info eval = {.training = false, .seed = 42, .sample_ids = &id};
    assert_memory_equal(ody_model_forward(f.m, &eval, 1, x), x, M * sizeof *x);
    assert_memory_equal(ody_model_forward(f.m, NULL, 1, x), x, M * sizeof *x);
    free(x);
    ody_model_destroy(f.ctx, f.m);
}

static void test_dropout_backward_matches_mask(void **state)
{
    enum { M = 100, N = 3 };
    dropout_fixture f = dropout_layer(*state, 0.25, M, N);
    int64_t ids[N] = {8, 1, 30};
    float mask[N * M], dout[N * M], din[N * M];
    memcpy(mask, mask_of(&f, 2, ids, N, true), sizeof mask);
    frand(8, N * M, -1, 1, dout);
    ody_forward_info info = {.training = true, .seed = 42, .step = 2, .sample_ids = ids};
    ody_layer *l = f.m->layers[0];
    l->ops->backward(l, &info, N, NULL, f.m->acts[0], dout, din);
    for (int i = 0; i < N * M; i++)
        assert_true(din[i] == dout[i] * mask[i]);
    ody_model_destroy(f.ctx, f.m);
}

/* ----------------------------------------------------------------- losses */

static double ref_loss(ody_loss_kind kind, int classes, const double *z, int label)
{
    double sum = 0, m = -INFINITY;
    for (int c = 0; c < classes; c++) {
        m = fmax(m, z[c]);
        sum += (z[c] - (c == label)) * (z[c] - (c == label));
    }
    if (kind == ODY_LOSS_MSE)
        return sum / classes;
    double e = 0;
    for (int c = 0; c < classes; c++)
        e += exp(z[c] - m);
    return m + log(e) - z[label];
}

/* ody_loss_forward_backward: the bits of ody_loss_forward and ody_loss_backward, each kind, with and without smoothing. */
static void test_loss_forward_backward_same_bits(void **state)
{
    (void)state;
    enum { N = 7, C = 10 };
    const int32_t labels[N] = {0, 9, 4, 3, 3, 1, 7};
    float z[N * C], loss[2][N], dz[2][N * C];
    frand(21, N * C, -8, 8, z);
    for (int kind = ODY_LOSS_CROSS_ENTROPY; kind <= ODY_LOSS_MSE; kind++)
        for (int smooth = 0; smooth < 2; smooth++) {
            double eps = smooth ? 0.1 : 0.0;
            int64_t hits[2] = {3, 3};
            ody_loss_forward(kind, eps, N, C, z, labels, loss[0], &hits[0]);
            ody_loss_backward(kind, eps, N, C, z, labels, 0.25f, dz[0]);
            ody_loss_forward_backward(kind, eps, N, C, z, labels, loss[1], &hits[1], 0.25f, dz[1]);
            assert_memory_equal(loss[0], loss[1], sizeof loss[0]);
            assert_memory_equal(dz[0], dz[1], sizeof dz[0]);
            assert_int_equal(hits[0], hits[1]);
        }
}

static void test_losses_match_finite_differences(void **state)
{
    enum { N = 4, C = 5 };
    const int32_t labels[N] = {0, 3, 4, 3};
    float z[N * C], loss[N], dz[N * C];
    frand(9, N * C, -3, 3, z);
    for (int kind = ODY_LOSS_CROSS_ENTROPY; kind <= ODY_LOSS_MSE; kind++) {
        ody_loss_forward(kind, 0.0, N, C, z, labels, loss, NULL);
        ody_loss_backward(kind, 0.0, N, C, z, labels, 0.5f, dz);
        for (int i = 0; i < N; i++) {
            double zd[C];
            for (int c = 0; c < C; c++)
                zd[c] = z[i * C + c];
            assert_close(loss[i], ref_loss(kind, C, zd, labels[i]), 1e-6, "loss", (size_t)i);
            for (int c = 0; c < C; c++) {
                double keep = zd[c];
                zd[c] = keep + EPS;
                double plus = ref_loss(kind, C, zd, labels[i]);
                zd[c] = keep - EPS;
                double minus = ref_loss(kind, C, zd, labels[i]);
                zd[c] = keep;
                assert_close(dz[i * C + c], 0.5 * (plus - minus) / (2 * EPS), GRAD_TOL, "dloss",
                             (size_t)(i * C + c));
            }
        }
    }
}

static void test_cross_entropy_is_stable(void **state)
{
    const float z[2 * 3] = {1000, 0, -1000, 1000, 1001, 999};
    const int32_t labels[2] = {0, 0};
    float loss[2], dz[6];
    int64_t correct = 0;
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.0, 2, 3, z, labels, loss, &correct);
    assert_true(isfinite(loss[0]) && isfinite(loss[1]));
    assert_true(fabs(loss[0]) < 1e-6);
    /* logsumexp(0, 1, -1) - 0 */
    assert_close(loss[1], log(1 + exp(1) + exp(-1)), 1e-6, "loss", 1);
    assert_int_equal(correct, 1);
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.0, 2, 3, z, labels, 1.0f, dz);
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(dz[i]));
    assert_true(fabs(dz[0]) < 1e-6 && fabs(dz[1]) < 1e-6);
}

static void test_mse_values_and_correct_counts(void **state)
{
    const float z[3 * 3] = {0.5f, -1, 2, 1, 0, 0, 0, 0.25f, 0.5f};
    const int32_t labels[3] = {2, 0, 1};
    float loss[3], dz[9];
    int64_t correct = 10;
    ody_loss_forward(ODY_LOSS_MSE, 0.0, 3, 3, z, labels, loss, &correct);
    assert_close(loss[0], (0.25 + 1 + 1) / 3.0, 1e-7, "mse", 0);
    assert_close(loss[1], 0.0, 1e-7, "mse", 1);
    assert_close(loss[2], (0 + 0.5625 + 0.25) / 3.0, 1e-7, "mse", 2);
    assert_int_equal(correct, 12); /* rows 0 and 1 right, row 2 wrong; added to 10 */
    ody_loss_backward(ODY_LOSS_MSE, 0.0, 3, 3, z, labels, 1.0f, dz);
    assert_close(dz[0], 2 * 0.5 / 3, 1e-7, "dmse", 0);
    assert_close(dz[2], 2 * 1.0 / 3, 1e-7, "dmse", 2);
    ody_loss_forward(ODY_LOSS_MSE, 0.0, 3, 3, z, labels, loss, NULL); /* correct may be NULL */
}

/* Smoothed cross-entropy in double: -sum_c q_c log softmax(z)_c, q = (1-eps) onehot + eps/K. */
static double ref_smoothed(int classes, const double *z, int label, double eps)
{
    double m = -INFINITY, e = 0, loss = 0;
    for (int c = 0; c < classes; c++)
        m = fmax(m, z[c]);
    for (int c = 0; c < classes; c++)
        e += exp(z[c] - m);
    for (int c = 0; c < classes; c++) {
        double q = (c == label ? 1.0 - eps : 0.0) + eps / classes;
        loss -= q * (z[c] - m - log(e));
    }
    return loss;
}

static void test_label_smoothing_matches_finite_differences(void **state)
{
    enum { N = 4, C = 5 };
    const int32_t labels[N] = {0, 3, 4, 3};
    const double eps_values[] = {0.1, 0.3, 0.9};
    float z[N * C], loss[N], dz[N * C];
    frand(19, N * C, -3, 3, z);
    for (size_t k = 0; k < sizeof eps_values / sizeof eps_values[0]; k++) {
        double eps = eps_values[k];
        ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, eps, N, C, z, labels, loss, NULL);
        ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, eps, N, C, z, labels, 0.5f, dz);
        for (int i = 0; i < N; i++) {
            double zd[C];
            for (int c = 0; c < C; c++)
                zd[c] = z[i * C + c];
            assert_close(loss[i], ref_smoothed(C, zd, labels[i], eps), 1e-6, "loss", (size_t)i);
            for (int c = 0; c < C; c++) {
                double keep = zd[c];
                zd[c] = keep + EPS;
                double plus = ref_smoothed(C, zd, labels[i], eps);
                zd[c] = keep - EPS;
                double minus = ref_smoothed(C, zd, labels[i], eps);
                zd[c] = keep;
                assert_close(dz[i * C + c], 0.5 * (plus - minus) / (2 * EPS), GRAD_TOL, "dloss",
                             (size_t)(i * C + c));
            }
        }
    }
}

/* Values worked out by hand. */
static void test_label_smoothing_hand_values(void **state)
{
    /* Equal logits: softmax 1/4 everywhere, so the loss is log 4 whatever the target; the
     * gradient is 1/4 - q: 1/4 - (0.8 + 0.05) at the label, 1/4 - 0.05 elsewhere (eps 0.2). */
    const float flat[4] = {0, 0, 0, 0};
    const int32_t label0 = 0;
    float loss, dz[4];
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.2, 1, 4, flat, &label0, &loss, NULL);
    assert_close(loss, log(4.0), 1e-7, "loss", 0);
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.2, 1, 4, flat, &label0, 1.0f, dz);
    assert_close(dz[0], -0.6, 1e-7, "dz", 0);
    for (int c = 1; c < 4; c++)
        assert_close(dz[c], 0.2, 1e-7, "dz", (size_t)c);
    /* softmax (1/4, 3/4), label 1, eps 0.2: q = (0.1, 0.9), loss = -(0.1 log 1/4 + 0.9 log 3/4),
     * gradient (0.25 - 0.1, 0.75 - 0.9). */
    const float two[2] = {0.0f, (float)log(3.0)};
    const int32_t label1 = 1;
    float dtwo[2];
    int64_t correct = 0;
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.2, 1, 2, two, &label1, &loss, &correct);
    assert_close(loss, -(0.1 * log(0.25) + 0.9 * log(0.75)), 1e-6, "loss", 1);
    assert_int_equal(correct, 1); /* accuracy is still argmax = label */
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.2, 1, 2, two, &label1, 1.0f, dtwo);
    assert_close(dtwo[0], 0.15, 1e-6, "dz", 0);
    assert_close(dtwo[1], -0.15, 1e-6, "dz", 1);
    /* Logits in the thousands stay finite: 0.9 x 0 + (0.1 / 3) x (0 + 1000 + 2000) = 100. */
    const float big[3] = {1000, 0, -1000};
    float dbig[3];
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.1, 1, 3, big, &label0, &loss, NULL);
    assert_close(loss, 100.0, 1e-6, "loss", 2);
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.1, 1, 3, big, &label0, 1.0f, dbig);
    assert_close(dbig[0], 1.0 - (0.9 + 0.1 / 3), 1e-6, "dz", 0);
    assert_close(dbig[2], -0.1 / 3, 1e-6, "dz", 2);
}

/* eps = 0 is plain cross-entropy, bit for bit: logsumexp(z) - z[y] and softmax(z) - onehot(y),
 * the same double operations as before label smoothing existed. */
static void test_label_smoothing_zero_is_plain(void **state)
{
    enum { N = 6, C = 7 };
    const int32_t labels[N] = {0, 6, 3, 3, 1, 5};
    float z[N * C], loss[N], dz[N * C], want_loss[N], want_dz[N * C];
    frand(23, N * C, -8, 8, z);
    for (int i = 0; i < N; i++) {
        const float *row = z + i * C;
        int best = 0;
        for (int c = 1; c < C; c++)
            best = row[c] > row[best] ? c : best;
        double m = row[best], sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += exp((double)row[c] - m);
        double lse = m + log(sum);
        want_loss[i] = (float)(lse - row[labels[i]]);
        for (int c = 0; c < C; c++)
            want_dz[i * C + c] = 0.25f * (float)(exp((double)row[c] - lse) - (c == labels[i]));
    }
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.0, N, C, z, labels, loss, NULL);
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.0, N, C, z, labels, 0.25f, dz);
    assert_memory_equal(loss, want_loss, sizeof loss);
    assert_memory_equal(dz, want_dz, sizeof dz);
}

/*
 * PyTorch 1.13's CrossEntropyLoss(label_smoothing=0.1) on fixed logits, computed once with
 *   import torch
 *   z = torch.tensor([[2.0, -1.0, 0.5, 0.0, 3.0], [-0.25, 1.5, 1.5, -2.0, 0.75],
 *                     [10.0, -10.0, 0.0, 5.0, -5.0]], dtype=torch.float64, requires_grad=True)
 *   y = torch.tensor([4, 1, 3])
 *   loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1, reduction='none')(z, y)
 *   loss.sum().backward(); print(loss.tolist(), z.grad.tolist())
 */
static void test_label_smoothing_matches_pytorch(void **state)
{
    enum { N = 3, C = 5 };
    const float z[N * C] = {2.0f,  -1.0f,  0.5f, 0.0f,  3.0f,  -0.25f, 1.5f, 1.5f,
                            -2.0f, 0.75f, 10.0f, -10.0f, 0.0f, 5.0f,  -5.0f};
    const int32_t labels[N] = {4, 1, 3};
    const double torch_loss[N] = {0.6274379118897064, 1.1044493972303835, 5.506760749435601};
    const double torch_grad[N * C] = {
        0.22233410352490532,  -0.00793489541994052, 0.0340720473289383,   0.012796354538433686,
        -0.2612676099723368,  0.04492974776246203,  -0.546355099773759,   0.35364490022624107,
        -0.008716901684074256, 0.1564973534691299,  0.9732620530147088,   -0.01999999795273432,
        -0.01995490597255739, -0.9133074529305841,  -0.019999696158833118};
    float loss[N], dz[N * C];
    int64_t correct = 0;
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.1, N, C, z, labels, loss, &correct);
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.1, N, C, z, labels, 1.0f, dz);
    for (int i = 0; i < N; i++)
        assert_close(loss[i], torch_loss[i], 1e-6, "loss", (size_t)i);
    for (int i = 0; i < N * C; i++)
        assert_close(dz[i], torch_grad[i], 1e-6, "dz", (size_t)i);
    assert_int_equal(correct, 2); /* rows 0 and 1 (the first of the tied maxima); not row 2 */
}

/* ------------------------------------------------------------------ model */

static ody_model_options lenet_options(void)
{
    return (ody_model_options){.name = "lenet5", .num_classes = 10, .input_shape = {3, {1, 28, 28}}};
}

static ody_model *create(ody_ctx *ctx, const ody_model_options *o)
{
    ody_model *m = NULL;
    ody_status st = ody_model_create(ctx, o, &m);
    if (st != ODY_OK)
        print_error("%s\n", ody_ctx_error(ctx));
    assert_int_equal(st, ODY_OK);
    return m;
}

static void assert_layers(const ody_model *m, const char *const *names, const char *const *kinds, int n)
{
    assert_int_equal(m->nlayers, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(m->layers[i]->name, names[i]);
        assert_string_equal(m->layers[i]->ops->kind, kinds[i]);
    }
}

static void test_lenet5_layout(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = lenet_options();
    ody_model *m = create(ctx, &o);
    static const char *const names[] = {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                        "flatten1", "fc1", "relu3", "fc2", "relu4", "fc3"};
    static const char *const kinds[] = {"conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d",
                                        "flatten", "linear", "relu", "linear", "relu", "linear"};
    assert_layers(m, names, kinds, 12);
    assert_int_equal(m->nparams, 61706);
    assert_int_equal(m->num_classes, 10);
    assert_true(ody_shape_equal(&m->layers[5]->out_shape, &(ody_shape){3, {16, 5, 5}}));
    assert_true(ody_shape_equal(&m->layers[7]->in_shape, &(ody_shape){1, {400}}));
    assert_int_equal(m->ntensors, 10);
    ody_param *w = ody_model_find_param(m, "fc1.weight");
    assert_non_null(w);
    assert_true(ody_shape_equal(&w->shape, &(ody_shape){2, {120, 400}}));
    assert_non_null(ody_model_find_param(m, "conv2.bias"));
    assert_null(ody_model_find_param(m, "conv3.weight"));
    assert_string_equal(m->tensors[0]->name, "conv1.weight");
    assert_string_equal(m->tensors[9]->name, "fc3.bias");
    size_t prev_end = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const ody_param *p = m->tensors[t];
        assert_int_equal(p->offset % ODY_ARENA_ALIGN, 0);
        assert_true(p->offset >= prev_end);
        assert_ptr_equal(p->value, m->params.data + p->offset);
        assert_ptr_equal(p->grad, m->grads.data + p->offset);
        prev_end = p->offset + numel(p->shape);
    }
    assert_int_equal(m->layer_range[0].begin, 0);
    assert_int_equal(m->layer_range[0].end, m->tensors[1]->offset + 6);
    assert_int_equal(m->layer_range[1].begin, m->layer_range[1].end); /* relu: empty */
    assert_int_equal(m->layer_range[11].end, prev_end);
    /* AUTO: ReLU-followed layers Kaiming, the output layer Xavier, biases zero. */
    assert_int_equal(m->tensors[0]->init, ODY_INIT_KAIMING_UNIFORM);
    assert_int_equal(m->tensors[1]->init, ODY_INIT_ZERO);
    assert_int_equal(m->tensors[8]->init, ODY_INIT_XAVIER_UNIFORM);
    ody_model_summary(ctx, m);
    ody_model_destroy(ctx, m);
}

static void test_lenet5_classic_and_dropout(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = lenet_options();
    strcpy(o.variant, "classic");
    o.dropout = 0.5;
    ody_model *m = create(ctx, &o);
    static const char *const names[] = {"conv1", "tanh1", "pool1", "conv2", "tanh2", "pool2", "flatten1",
                                        "dropout1", "fc1", "tanh3", "dropout2", "fc2", "tanh4",
                                        "dropout3", "fc3"};
    static const char *const kinds[] = {"conv2d", "tanh", "avgpool2d", "conv2d", "tanh", "avgpool2d",
                                        "flatten", "dropout", "linear", "tanh", "dropout", "linear",
                                        "tanh", "dropout", "linear"};
    assert_layers(m, names, kinds, 15);
    assert_int_equal(m->nparams, 61706);
    for (int t = 0; t < m->ntensors; t += 2)
        assert_int_equal(m->tensors[t]->init, ODY_INIT_XAVIER_UNIFORM);
    ody_model_destroy(ctx, m);
}

static void test_mlp_and_sequential(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = {.name = "mlp", .num_classes = 4, .input_shape = {3, {2, 3, 3}},
                           .activation = "sigmoid", .hidden_sizes = {7, 5}, .n_hidden = 2,
                           .dropout = 0.1};
    ody_model *m = create(ctx, &o);
    static const char *const names[] = {"flatten1", "fc1", "sigmoid1", "dropout1", "fc2", "sigmoid2",
                                        "dropout2", "fc3"};
    static const char *const kinds[] = {"flatten", "linear", "sigmoid", "dropout", "linear", "sigmoid",
                                        "dropout", "linear"};
    assert_layers(m, names, kinds, 8);
    assert_int_equal(m->nparams, (18 * 7 + 7) + (7 * 5 + 5) + (5 * 4 + 4));
    ody_model_destroy(ctx, m);

    ody_model_options s = {.name = "sequential", .num_classes = 3, .input_shape = {3, {1, 6, 6}}};
    s.layers[0] = make_spec(ctx, "conv2d", 4, (double[]){4, 3, 1, 1});
    s.layers[1] = make_spec(ctx, "relu", 0, NULL);
    s.layers[2] = make_spec(ctx, "avgpool2d", 1, (double[]){2});
    s.layers[3] = make_spec(ctx, "linear", 1, (double[]){3});
    s.layers[3].init = ODY_INIT_ZERO;
    s.n_layers = 4;
    m = create(ctx, &s);
    assert_int_equal(m->nparams, 4 * 9 + 4 + 36 * 3 + 3);
    assert_string_equal(m->layers[2]->name, "pool1");
    assert_int_equal(m->tensors[0]->init, ODY_INIT_KAIMING_UNIFORM);
    assert_int_equal(m->tensors[2]->init, ODY_INIT_ZERO);
    ody_model_destroy(ctx, m);
}

/* The error of creating a model from o, which must fail with ODY_ERR_CONFIG. */
static void expect_error(ody_ctx *ctx, const ody_model_options *o, const char *message)
{
    ody_model *m = (ody_model *)1;
    ody_status st = ody_model_create(ctx, o, &m);
    assert_int_equal(st, ODY_ERR_CONFIG);
    assert_null(m);
    if (!strstr(ody_ctx_error(ctx), message)) {
        print_error("error '%s' does not contain '%s'\n", ody_ctx_error(ctx), message);
        fail();
    }
}

static void test_bad_architectures_are_named(void **state)
{
    ody_ctx *ctx = *state;
    size_t before = ctx->bytes_allocated;
    ody_model_options o = lenet_options();
    o.input_shape = ody_shape3(1, 8, 8);
    expect_error(ctx, &o, "model lenet5: layer 4 (conv2d): kernel 5 is larger than its padded input 4x4");
    o = lenet_options();
    strcpy(o.variant, "fancy");
    expect_error(ctx, &o, "model.variant 'fancy'");
    o = lenet_options();
    strcpy(o.name, "resnet");
    expect_error(ctx, &o, "model.name 'resnet' is not known (known: lenet5, mlp, sequential)");
    o = lenet_options();
    o.num_classes = 0;
    expect_error(ctx, &o, "model.num_classes");
    o = lenet_options();
    o.dropout = 1.0;
    expect_error(ctx, &o, "model.dropout");

    ody_model_options s = {.name = "sequential", .num_classes = 3, .input_shape = {3, {1, 6, 6}}};
    s.n_layers = 2;
    s.layers[0] = make_spec(ctx, "flatten", 0, NULL);
    s.layers[1] = make_spec(ctx, "linear", 1, (double[]){5});
    expect_error(ctx, &s, "model.num_classes is 3 but the last layer gives 5 features");
    s.layers[1] = make_spec(ctx, "linear", 0, NULL);
    expect_error(ctx, &s, "layer 2 (linear): out_features is required");
    s.layers[0] = make_spec(ctx, "conv2d", 4, (double[]){2, 2.5, 1, 0});
    expect_error(ctx, &s, "layer 1 (conv2d): kernel_size = 2.5 is not a whole number");
    s.layers[0] = make_spec(ctx, "maxpool2d", 3, (double[]){2, 0, 2});
    expect_error(ctx, &s, "layer 1 (maxpool2d): padding 2 is more than half the kernel 2");
    s.layers[0] = make_spec(ctx, "dropout", 1, (double[]){1.5});
    expect_error(ctx, &s, "layer 1 (dropout): p = 1.5 is outside [0, 0.999]");
    strcpy(s.layers[0].kind, "conv3d");
    expect_error(ctx, &s, "layer 1: unknown layer type 'conv3d' (known: conv2d,");
    s.layers[0] = make_spec(ctx, "flatten", 0, NULL);
    s.layers[1] = make_spec(ctx, "conv2d", 2, (double[]){2, 3});
    expect_error(ctx, &s, "layer 2 (conv2d): conv2d needs a (C, H, W) input, got 36");

    ody_model_options mlp = {.name = "mlp", .num_classes = 2, .input_shape = {1, {4}}, .activation = "gelu"};
    expect_error(ctx, &mlp, "model.activation 'gelu'");
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "x", s.layers, 1, ody_shape3(1, 0, 4), &m),
                     ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(ctx), "input shape '1x0x4'"));
    assert_int_equal(ctx->bytes_allocated, before); /* failures leak nothing */
}

static void test_layer_table(void **state)
{
    int count = 0;
    const ody_layer_kind *kinds = ody_layer_kinds(&count);
    assert_int_equal(count, 11);
    for (int i = 0; i < count; i++) {
        assert_ptr_equal(ody_layer_kind_find(kinds[i].kind), &kinds[i]);
        assert_non_null(kinds[i].doc);
        for (int a = 0; a < kinds[i].nargs; a++)
            assert_non_null(kinds[i].args[a].doc);
    }
    const ody_layer_kind *conv = ody_layer_kind_find("conv2d");
    assert_int_equal(conv->nargs, 5);
    assert_string_equal(conv->args[0].key, "out_channels");
    assert_string_equal(conv->args[3].key, "padding");
    assert_string_equal(conv->args[4].key, "algorithm"); /* appended: the others keep their places */
    assert_null(ody_layer_kind_find("conv3d"));
    ody_layer_spec spec;
    assert_int_equal(ody_layer_spec_default(*state, "conv2d", &spec), ODY_OK);
    assert_true(spec.args[4] == ODY_CONV_AUTO);
    assert_int_equal(ody_layer_spec_default(*state, "maxpool2d", &spec), ODY_OK);
    assert_true(isnan(spec.args[0]) && spec.args[1] == 0 && spec.args[2] == 0);
    assert_int_equal(ody_layer_spec_default(*state, "dropout", &spec), ODY_OK);
    assert_true(spec.args[0] == 0.5);
    assert_int_equal(ody_layer_spec_default(*state, "nope", &spec), ODY_ERR_CONFIG);
    const char *const *names = ody_model_names();
    assert_string_equal(names[0], "lenet5");
    assert_string_equal(names[1], "mlp");
    assert_string_equal(names[2], "sequential");
    assert_null(names[3]);
}

static void test_init_is_seeded(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = lenet_options();
    ody_model *a = create(ctx, &o), *b = create(ctx, &o);
    ody_model_init_params(a, 1);
    ody_model_init_params(b, 1);
    assert_memory_equal(a->params.data, b->params.data, a->params.size * sizeof(float));
    ody_model_init_params(b, 2);
    assert_memory_not_equal(a->params.data, b->params.data, a->params.size * sizeof(float));
    float w0 = a->tensors[0]->value[0];
    ody_model_init_params(a, 1);
    assert_true(a->tensors[0]->value[0] == w0);
    ody_model_destroy(ctx, a);
    ody_model_destroy(ctx, b);
}

/* Mean and variance of a tensor. */
static void moments(const ody_param *p, double *mean, double *var)
{
    size_t n = numel(p->shape);
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) {
        s += p->value[i];
        q += (double)p->value[i] * p->value[i];
    }
    *mean = s / n;
    *var = q / n - *mean * *mean;
}

static void test_init_statistics(void **state)
{
    ody_ctx *ctx = *state;
    /* fc1: 600 -> 400 followed by relu; fc2: 400 -> 300, the output. */
    ody_model_options o = {.name = "mlp", .num_classes = 300, .input_shape = {1, {600}},
                           .hidden_sizes = {400}, .n_hidden = 1};
    const struct {
        ody_init init;
        double fc1_var, fc2_var;
    } cases[] = {
        {ODY_INIT_AUTO, 2.0 / 600, 2.0 / 700},          /* Kaiming, then Xavier */
        {ODY_INIT_KAIMING_NORMAL, 2.0 / 600, 2.0 / 400},
        {ODY_INIT_XAVIER_NORMAL, 2.0 / 1000, 2.0 / 700},
        {ODY_INIT_TORCH_DEFAULT, 1.0 / 1800, 1.0 / 1200}, /* U(+-1/sqrt(fan_in)) */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        o.init = cases[c].init;
        ody_model *m = create(ctx, &o);
        ody_model_init_params(m, 3);
        double mean, var;
        moments(ody_model_find_param(m, "fc1.weight"), &mean, &var);
        assert_true(fabs(mean) < 0.01 && fabs(var / cases[c].fc1_var - 1) < 0.03);
        moments(ody_model_find_param(m, "fc2.weight"), &mean, &var);
        assert_true(fabs(mean) < 0.01 && fabs(var / cases[c].fc2_var - 1) < 0.03);
        const ody_param *bias = ody_model_find_param(m, "fc1.bias");
        moments(bias, &mean, &var);
        if (cases[c].init == ODY_INIT_TORCH_DEFAULT) {
            assert_true(var > 0);
            for (int i = 0; i < 400; i++)
                assert_true(fabsf(bias->value[i]) <= 1 / sqrtf(600));
        } else {
            assert_true(mean == 0 && var == 0);
        }
        ody_model_destroy(ctx, m);
    }
}

/* A lenet5 with dropout and model.conv_algorithm, initialised and prepared for n rows. */
static ody_model *lenet_ready(ody_ctx *ctx, int n, const char *conv_algorithm)
{
    ody_model_options o = lenet_options();
    o.dropout = 0.3;
    snprintf(o.conv_algorithm, sizeof o.conv_algorithm, "%s", conv_algorithm);
    ody_model *m = create(ctx, &o);
    ody_model_init_params(m, 11);
    for (int t = 1; t < m->ntensors; t += 2) /* non-zero biases, to test them too */
        frand(4 + (uint64_t)t, numel(m->tensors[t]->shape), -0.1f, 0.1f, m->tensors[t]->value);
    assert_int_equal(ody_model_prepare(ctx, m, n), ODY_OK);
    return m;
}

static void test_batch_equals_samples(void **state)
{
    ody_ctx *ctx = *state;
    enum { N = 5, IN = 784, OUT = 10 };
    ody_model *m = lenet_ready(ctx, N, "auto");
    float x[N * IN], batch[N * OUT], dlogits[N * OUT];
    frand(5, N * IN, 0, 1, x);
    frand(6, N * OUT, -1, 1, dlogits);
    int64_t ids[N] = {40, 2, 17, 1000, 5};
    ody_forward_info info = {.training = true, .seed = 8, .step = 3, .sample_ids = ids};
    memcpy(batch, ody_model_forward(m, &info, N, x), sizeof batch);
    ody_model_zero_grad(m);
    ody_model_backward(m, &info, N, x, dlogits, NULL, NULL);
    float *grad = falloc(m->grads.size);
    memcpy(grad, m->grads.data, m->grads.size * sizeof *grad);

    ody_model_zero_grad(m); /* per-sample passes accumulate into the gradients */
    float gmax = 0;
    for (int s = 0; s < N; s++) {
        ody_forward_info one = info;
        one.sample_ids = &ids[s];
        const float *z = ody_model_forward(m, &one, 1, x + s * IN);
        for (int c = 0; c < OUT; c++)
            assert_close(z[c], batch[s * OUT + c], 1e-5, "logit", (size_t)(s * OUT + c));
        ody_model_backward(m, &one, 1, x + s * IN, dlogits + s * OUT, NULL, NULL);
    }
    for (size_t i = 0; i < m->grads.size; i++)
        gmax = fmaxf(gmax, fabsf(grad[i]));
    for (size_t i = 0; i < m->grads.size; i++)
        assert_close(m->grads.data[i] / gmax, grad[i] / gmax, 1e-5, "gradient", i);
    free(grad);
    ody_model_destroy(ctx, m);
}

static void test_lenet5_fused_matches_unfused(void **state)
{
    ody_ctx *ctx = *state;
    enum { N = 4, IN = 784, OUT = 10 };
    ody_model_options o = lenet_options();
    o.dropout = 0.3;
    ody_model *f = create(ctx, &o), *u = create(ctx, &o);
    assert_int_equal(ody_model_set_fusion(ctx, u, false), ODY_OK);
    ody_model_init_params(f, 11);
    ody_model_init_params(u, 11);
    assert_int_equal(ody_model_prepare(ctx, f, N), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, u, N), ODY_OK);
    float x[N * IN], dlogits[N * OUT], zf[N * OUT];
    frand(30, N * IN, 0, 1, x);
    frand(31, N * OUT, -1, 1, dlogits);
    int64_t ids[N] = {3, 9, 27, 81};
    ody_forward_info info = {.training = true, .seed = 4, .step = 2, .sample_ids = ids};
    memcpy(zf, ody_model_forward(f, &info, N, x), sizeof zf);
    const float *zu = ody_model_forward(u, &info, N, x);
    for (int i = 0; i < N * OUT; i++)
        assert_close(zf[i], zu[i], 1e-5, "logit", (size_t)i);
    ody_model_zero_grad(f);
    ody_model_zero_grad(u);
    ody_model_backward(f, &info, N, x, dlogits, NULL, NULL);
    ody_model_backward(u, &info, N, x, dlogits, NULL, NULL);
    float gmax = 0;
    for (size_t i = 0; i < u->grads.size; i++)
        gmax = fmaxf(gmax, fabsf(u->grads.data[i]));
    for (size_t i = 0; i < u->grads.size; i++)
        assert_close(f->grads.data[i] / gmax, u->grads.data[i] / gmax, 1e-5, "gradient", i);
    ody_model_destroy(ctx, f);
    ody_model_destroy(ctx, u);
}

/* ------------------------------------------------------ conv2d algorithms */

/* A conv2d alone running `algorithm`, with the parameters every such model gets (frand 3). */
static ody_model *conv_alone(ody_ctx *ctx, const double *conv, ody_conv_algorithm algorithm, ody_shape in,
                             int n)
{
    ody_layer_spec spec = make_spec(ctx, "conv2d", 4, conv);
    spec.args[4] = algorithm;
    ody_model *m = one_layer(ctx, &spec, in, n);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), algorithm);
    frand(3, m->params.size, -1, 1, m->params.data);
    return m;
}

/* a and b agree to tol relative to the largest |b|. */
static void assert_all_close(const float *a, const float *b, size_t n, double tol, const char *what)
{
    float big = 0;
    for (size_t i = 0; i < n; i++)
        big = fmaxf(big, fabsf(b[i]));
    big = big > 0 ? big : 1;
    for (size_t i = 0; i < n; i++)
        assert_close(a[i] / big, b[i] / big, tol, what, i);
}

static void test_conv2d_direct_matches_gemm(void **state)
{
    ody_ctx *ctx = *state;
    static const layer_case cases[] = {
        {{16, 5, 1, 0}, {3, {6, 14, 14}}, 4},  /* LeNet-5's conv2 */
        {{32, 3, 1, 1}, {3, {16, 24, 24}}, 5}, /* gemm in groups of 2 samples: 2, 2, 1 */
        {{64, 3, 1, 1}, {3, {32, 32, 32}}, 3}, /* wider than a group: one sample each */
        {{48, 3, 2, 1}, {3, {16, 16, 16}}, 7}, /* stride 2 */
        {{10, 5, 3, 2}, {3, {3, 13, 11}}, 3},  /* stride 3 and padding */
        {{7, 1, 2, 0}, {3, {5, 9, 9}}, 2},     /* 1x1 kernel, stride 2 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n;
        ody_model *d = conv_alone(ctx, cases[c].args, ODY_CONV_DIRECT, cases[c].in, n);
        ody_model *g = conv_alone(ctx, cases[c].args, ODY_CONV_GEMM, cases[c].in, n);
        ody_layer *ld = d->layers[0], *lg = g->layers[0];
        assert_int_equal(lg->ops->scratch_floats(lg, 1), lg->ops->scratch_floats(lg, 1000));
        size_t nx = (size_t)n * numel(cases[c].in), ny = (size_t)n * numel(ld->out_shape);
        float *x = falloc(nx), *dout = falloc(ny), *din_d = falloc(nx), *din_g = falloc(nx), *yd = falloc(ny);
        frand(40, nx, -1, 1, x);
        frand(41, ny, -1, 1, dout);
        for (size_t i = 0; i < ny; i += 3) /* some exact zeros, as after a relu */
            dout[i] = 0.0f;
        memcpy(yd, ody_model_forward(d, NULL, n, x), ny * sizeof *yd);
        const float *yg = ody_model_forward(g, NULL, n, x);
        assert_all_close(yg, yd, ny, 1e-5, "output");
        ody_model_zero_grad(d);
        ody_model_zero_grad(g);
        ld->ops->backward(ld, NULL, n, x, yd, dout, din_d);
        lg->ops->backward(lg, NULL, n, x, yg, dout, din_g);
        assert_all_close(din_g, din_d, nx, 1e-5, "input gradient");
        for (int t = 0; t < 2; t++)
            assert_all_close(lg->params[t].grad, ld->params[t].grad, numel(ld->params[t].shape), 1e-5,
                             ld->params[t].name);
        lg->ops->backward(lg, NULL, n, x, yg, dout, NULL); /* no input gradient: parameters accumulate */
        for (size_t i = 0; i < numel(ld->params[0].shape); i++)
            assert_close(lg->params[0].grad[i], 2 * ld->params[0].grad[i], 1e-4, "accumulated dW", i);
        free(x), free(dout), free(din_d), free(din_g), free(yd);
        ody_model_destroy(ctx, d);
        ody_model_destroy(ctx, g);
    }
}

static void test_lenet5_gemm_matches_direct(void **state)
{
    ody_ctx *ctx = *state;
    enum { N = 6, IN = 784, OUT = 10 };
    ody_model *d = lenet_ready(ctx, N, "direct"), *g = lenet_ready(ctx, N, "gemm");
    /* direct: conv+relu+pool fused; gemm: the conv layers alone, pool2 absorbing flatten */
    static const int direct_spans[] = {3, 0, 0, 4, 0, 0, 0}, gemm_spans[] = {1, 1, 1, 1, 1, 2, 0};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(d->span[i], direct_spans[i]);
        assert_int_equal(g->span[i], gemm_spans[i]);
    }
    for (int i = 0; i < 4; i += 3) {
        assert_int_equal(ody_conv2d_algorithm(d->layers[i]), ODY_CONV_DIRECT);
        assert_int_equal(ody_conv2d_algorithm(g->layers[i]), ODY_CONV_GEMM);
        assert_string_equal(g->layers[i]->ops->describe(g->layers[i]), "gemm");
    }
    float x[N * IN], dlogits[N * OUT], zd[N * OUT];
    frand(50, N * IN, 0, 1, x);
    frand(51, N * OUT, -1, 1, dlogits);
    int64_t ids[N] = {5, 8, 13, 21, 34, 55};
    ody_forward_info info = {.training = true, .seed = 6, .step = 1, .sample_ids = ids};
    memcpy(zd, ody_model_forward(d, &info, N, x), sizeof zd);
    assert_all_close(ody_model_forward(g, &info, N, x), zd, N * OUT, 1e-5, "logit");
    ody_model_zero_grad(d);
    ody_model_zero_grad(g);
    ody_model_backward(d, &info, N, x, dlogits, NULL, NULL);
    ody_model_backward(g, &info, N, x, dlogits, NULL, NULL);
    for (int t = 0; t < d->ntensors; t++)
        assert_all_close(g->tensors[t]->grad, d->tensors[t]->grad, numel(d->tensors[t]->shape), 1e-5,
                         d->tensors[t]->name);
    ody_model_summary(ctx, g);
    ody_model_destroy(ctx, d);
    ody_model_destroy(ctx, g);
}

/* The block conv (out_channels, 3x3, padding 1, algorithm) -> relu -> 2x2 max pool on in (openblas backend). */
static ody_model *wide_block_on(ody_ctx *ctx, ody_backend backend, int out_channels, ody_conv_algorithm algorithm,
                                ody_shape in)
{
    ody_layer_spec specs[3] = {make_spec(ctx, "conv2d", 5, (double[]){out_channels, 3, 1, 1, algorithm}),
                               make_spec(ctx, "relu", 0, NULL),
                               make_spec(ctx, "maxpool2d", 1, (double[]){2})};
    for (int i = 0; i < 3; i++)
        specs[i].backend = backend;
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "block", specs, 3, in, &m), ODY_OK);
    return m;
}

static ody_model *wide_block(ody_ctx *ctx, int out_channels, ody_conv_algorithm algorithm, ody_shape in)
{
    return wide_block_on(ctx, ODY_BACKEND_OPENBLAS, out_channels, algorithm, in);
}

static void test_conv_algorithm_auto(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = lenet_options(); /* every conv2d at auto */
    strcpy(o.backend, "openblas");
    for (int variant = 0; variant < 2; variant++) {
        strcpy(o.variant, variant ? "classic" : "modern");
        ody_model *m = create(ctx, &o);
        for (int i = 0; i < 4; i += 3) {
            assert_int_equal(ody_conv2d_algorithm(m->layers[i]), ODY_CONV_DIRECT);
            /* the modern conv2, fused, runs its forward by Winograd where the level has it */
            bool winograd = i == 3 && !variant && nn_conv_kernels_active()->winograd;
            assert_string_equal(m->layers[i]->ops->describe(m->layers[i]),
                                winograd ? "direct, winograd forward (auto)" : "direct (auto)");
        }
        assert_int_equal(m->span[0], variant ? 1 : 3); /* modern: fused */
        assert_int_equal(ody_conv2d_algorithm(m->layers[1]), ODY_CONV_AUTO); /* not a conv2d */
        ody_model_destroy(ctx, m);
    }
    ody_shape in = ody_shape3(32, 16, 16);
    ody_model *m = wide_block(ctx, 64, ODY_CONV_AUTO, in); /* fused direct beats gemm + relu + pool */
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    assert_int_equal(m->span[0], 3);
    assert_int_equal(ody_model_set_fusion(ctx, m, false), ODY_OK); /* alone, 64 channels: gemm */
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_GEMM);
    assert_string_equal(m->layers[0]->ops->describe(m->layers[0]), "gemm (auto)");
    assert_int_equal(ody_model_set_fusion(ctx, m, true), ODY_OK);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    ody_model_destroy(ctx, m);
    m = wide_block(ctx, 32, ODY_CONV_AUTO, in); /* 32 channels alone: direct */
    assert_int_equal(ody_model_set_fusion(ctx, m, false), ODY_OK);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    ody_model_destroy(ctx, m);
    m = wide_block(ctx, 64, ODY_CONV_GEMM, in); /* asked for: gemm, never fused */
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_GEMM);
    assert_int_equal(m->span[0], 1);
    ody_model_destroy(ctx, m);
    m = wide_block(ctx, 64, ODY_CONV_DIRECT, in); /* asked for: direct even alone */
    assert_int_equal(ody_model_set_fusion(ctx, m, false), ODY_OK);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    ody_model_destroy(ctx, m);
    const char *const *names = ody_conv_algorithm_names();
    assert_string_equal(names[ODY_CONV_AUTO], "auto");
    assert_string_equal(names[ODY_CONV_DIRECT], "direct");
    assert_string_equal(names[ODY_CONV_GEMM], "gemm");
    assert_string_equal(names[ODY_CONV_ONEDNN], "onednn");
    assert_null(names[4]);
}

/*
 * The onednn backend's auto: LeNet-5's small filters followed by relu and
 * pool run direct and fused; wider filters, and anything not followed by
 * relu + pool, run on oneDNN; bf16 puts every conv2d on oneDNN.
 */
static void test_conv_algorithm_auto_onednn(void **state)
{
    ody_ctx *ctx = *state;
    ody_model_options o = lenet_options(); /* every conv2d at auto, backend default (onednn) */
    ody_model *m = create(ctx, &o);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    assert_int_equal(ody_conv2d_algorithm(m->layers[3]), ODY_CONV_DIRECT);
    assert_int_equal(m->span[0], 3);
    ody_model_destroy(ctx, m);
    strcpy(o.variant, "classic"); /* tanh and average pooling: nothing to fuse */
    m = create(ctx, &o);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_ONEDNN);
    assert_int_equal(ody_model_prepare(ctx, m, 4), ODY_OK);
    assert_non_null(strstr(m->layers[0]->ops->describe(m->layers[0]), "onednn"));
    ody_model_destroy(ctx, m);
    ody_shape in = ody_shape3(32, 16, 16);
    m = wide_block_on(ctx, ODY_BACKEND_ONEDNN, 64, ODY_CONV_AUTO, in); /* 288 taps: onednn, relu + pool fused */
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_ONEDNN);
    assert_int_equal(m->span[0], 3);
    assert_int_equal(ody_model_prepare(ctx, m, 2), ODY_OK);
    assert_non_null(strstr(m->layers[0]->ops->describe(m->layers[0]), "+ relu + pool"));
    ody_model_destroy(ctx, m);
    m = wide_block_on(ctx, ODY_BACKEND_ONEDNN, 64, ODY_CONV_AUTO, in);
    assert_int_equal(ody_model_set_fusion(ctx, m, false), ODY_OK); /* fusion off: the relu alone */
    assert_int_equal(m->span[0], 1);
    ody_model_destroy(ctx, m);
    if (ody_bf16_supported(ctx) == ODY_OK) {
        strcpy(o.variant, "modern");
        o.compute_bf16 = true;
        m = create(ctx, &o);
        assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_ONEDNN);
        assert_int_equal(ody_model_prepare(ctx, m, 4), ODY_OK);
        assert_non_null(strstr(m->layers[0]->ops->describe(m->layers[0]), "bf16"));
        ody_model_destroy(ctx, m);
        strcpy(o.backend, "openblas"); /* bf16 is oneDNN's alone */
        assert_int_equal(ody_model_create(ctx, &o, &m), ODY_ERR_CONFIG);
        assert_non_null(strstr(ody_ctx_error(ctx), "needs model.backend: onednn"));
    }
    ody_ctx_clear_error(ctx);
}

/*
 * oneDNN against the direct kernels on one block, in fp32 (1e-5) and in
 * bf16 (inputs and weights rounded to 8 bits of mantissa: 3e-2 of the
 * largest value), forward and both gradients.
 */
static void check_onednn_matches_direct(ody_ctx *ctx, bool bf16, double tol)
{
    ody_shape in = ody_shape3(8, 12, 12);
    int n = 5;
    ody_layer_spec d = make_spec(ctx, "conv2d", 5, (double[]){24, 3, 1, 1, ODY_CONV_DIRECT});
    ody_layer_spec o = make_spec(ctx, "conv2d", 5, (double[]){24, 3, 1, 1, ODY_CONV_ONEDNN});
    o.bf16 = bf16;
    ody_model *md = NULL, *mo = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "direct", &d, 1, in, &md), ODY_OK);
    assert_int_equal(ody_model_create_from_specs(ctx, "onednn", &o, 1, in, &mo), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, md, n), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, mo, n), ODY_OK);
    frand(3, md->params.size, -0.3f, 0.3f, md->params.data);
    memcpy(mo->params.data, md->params.data, md->params.size * sizeof(float));
    size_t nx = (size_t)n * numel(in), ny = (size_t)n * numel(md->layers[0]->out_shape);
    float *x = falloc(nx), *dy = falloc(ny), *dxd = falloc(nx), *dxo = falloc(nx);
    frand(30, nx, -1, 1, x);
    frand(31, ny, -1, 1, dy);
    const float *yd = ody_model_forward(md, NULL, n, x), *yo = ody_model_forward(mo, NULL, n, x);
    for (size_t i = 0; i < ny; i++)
        assert_close(yo[i], yd[i], tol, "output", i);
    ody_model_zero_grad(md);
    ody_model_zero_grad(mo);
    md->layers[0]->ops->backward(md->layers[0], NULL, n, x, yd, dy, dxd);
    mo->layers[0]->ops->backward(mo->layers[0], NULL, n, x, yo, dy, dxo);
    /* Twice on oneDNN: its gradients add up like the direct kernels' do. */
    mo->layers[0]->ops->backward(mo->layers[0], NULL, n, x, yo, dy, dxo);
    for (size_t i = 0; i < nx; i++)
        assert_close(dxo[i], dxd[i], tol, "input gradient", i);
    for (size_t i = 0; i < md->grads.size; i++)
        assert_close(mo->grads.data[i], 2 * md->grads.data[i], tol * 8, "parameter gradient", i);
    free(x), free(dy), free(dxd), free(dxo);
    ody_model_destroy(ctx, md);
    ody_model_destroy(ctx, mo);
}

/*
 * oneDNN's conv with its relu (post-op) and 2x2 max pool fused against the
 * three run apart: the same bits (the relu's backward runs on the pooled
 * gradient, or inside the reorder to oneDNN's layout). 10x10 outputs pool
 * fused; 9x9 ones (odd) fuse the relu alone.
 */
static void test_conv2d_onednn_relu_fused(void **state)
{
    ody_ctx *ctx = *state;
    const int sides[2] = {10, 9}, fused_span[2] = {3, 2};
    for (int c = 0; c < 2; c++) {
        ody_shape in = ody_shape3(8, sides[c], sides[c]);
        int n = 4;
        ody_model *m[2];
        for (int f = 0; f < 2; f++) {
            m[f] = wide_block_on(ctx, ODY_BACKEND_ONEDNN, 16, ODY_CONV_ONEDNN, in);
            assert_int_equal(ody_model_set_fusion(ctx, m[f], f == 1), ODY_OK);
            assert_int_equal(m[f]->span[0], f ? fused_span[c] : 1);
            assert_int_equal(ody_model_prepare(ctx, m[f], n), ODY_OK);
            frand(3, m[f]->params.size, -0.3f, 0.3f, m[f]->params.data);
        }
        size_t nx = (size_t)n * numel(in), ny = (size_t)n * numel(m[0]->layers[2]->out_shape);
        size_t nconv = (size_t)n * numel(m[0]->layers[0]->out_shape);
        float *x = falloc(nx), *dy = falloc(ny), *dx[2] = {falloc(nx), falloc(nx)};
        float *tmp[2] = {falloc(nconv), falloc(nconv)};
        frand(50, nx, -1, 1, x);
        frand(51, ny, -1, 1, dy);
        const float *y0 = ody_model_forward(m[0], NULL, n, x), *y1 = ody_model_forward(m[1], NULL, n, x);
        assert_memory_equal(y0, y1, ny * sizeof(float));
        for (int f = 0; f < 2; f++) {
            ody_model_zero_grad(m[f]);
            backward_all(m[f], n, x, dy, dx[f], tmp);
        }
        assert_memory_equal(dx[0], dx[1], nx * sizeof(float));
        assert_memory_equal(m[0]->grads.data, m[1]->grads.data, m[0]->grads.size * sizeof(float));
        /* as a first layer (no input gradient: backward weights alone), the same weight gradients */
        ody_model_zero_grad(m[1]);
        backward_all(m[1], n, x, dy, NULL, tmp);
        assert_memory_equal(m[0]->grads.data, m[1]->grads.data, m[0]->grads.size * sizeof(float));
        free(x), free(dy), free(dx[0]), free(dx[1]), free(tmp[0]), free(tmp[1]);
        ody_model_destroy(ctx, m[0]);
        ody_model_destroy(ctx, m[1]);
    }
}

/* linear with bf16 compute (oneDNN's inner product) against fp32, forward and gradients, twice (they add up). */
static void test_linear_bf16_matches_fp32(void **state)
{
    ody_ctx *ctx = *state;
    if (ody_bf16_supported(ctx) != ODY_OK) {
        print_message("bf16: %s (skipped)\n", ody_ctx_error(ctx));
        ody_ctx_clear_error(ctx);
        return;
    }
    ody_shape in = ody_shape3(4, 5, 6);
    int n = 6;
    ody_layer_spec specs[2] = {make_spec(ctx, "linear", 1, (double[]){37}), make_spec(ctx, "linear", 1, (double[]){37})};
    specs[1].bf16 = true;
    ody_model *m[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ody_model_create_from_specs(ctx, "fc", &specs[k], 1, in, &m[k]), ODY_OK);
        assert_int_equal(ody_model_prepare(ctx, m[k], n), ODY_OK);
        frand(3, m[k]->params.size, -0.3f, 0.3f, m[k]->params.data);
        ody_model_zero_grad(m[k]);
    }
    assert_string_equal(m[1]->layers[0]->ops->describe(m[1]->layers[0]), "onednn inner product bf16");
    size_t nx = (size_t)n * numel(in), ny = (size_t)n * 37;
    float *x = falloc(nx), *dy = falloc(ny), *dx[2] = {falloc(nx), falloc(nx)};
    frand(60, nx, -1, 1, x);
    frand(61, ny, -1, 1, dy);
    const float *y[2];
    for (int k = 0; k < 2; k++) {
        ody_layer *l = m[k]->layers[0];
        y[k] = ody_model_forward(m[k], NULL, n, x);
        for (int twice = 0; twice < 2; twice++)
            l->ops->backward(l, NULL, n, x, y[k], dy, dx[k]);
    }
    for (size_t i = 0; i < ny; i++)
        assert_close(y[1][i], y[0][i], 3e-2, "bf16 output", i);
    for (size_t i = 0; i < nx; i++)
        assert_close(dx[1][i], dx[0][i], 3e-2, "bf16 input gradient", i);
    for (size_t i = 0; i < m[0]->grads.size; i++)
        assert_close(m[1]->grads.data[i], m[0]->grads.data[i], 1e-1, "bf16 parameter gradient", i);
    free(x), free(dy), free(dx[0]), free(dx[1]);
    ody_model_destroy(ctx, m[0]);
    ody_model_destroy(ctx, m[1]);
}

static void fail_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out)
{
    l->status = ODY_ERR_INTERNAL; /* as a kernel that cannot make or run its primitive */
}

static void count_ready(void *user, int layer) { (*(int *)user)++; }

/*
 * A layer's kernel failure stops the model with a status, not the process:
 * forward returns NULL and stays stopped, backward computes nothing but
 * still reports every layer ready (the ranks' sums stay in step).
 */
static void test_layer_failure_stops_model(void **state)
{
    ody_ctx *ctx = *state;
    ody_layer_spec specs[3] = {make_spec(ctx, "linear", 1, (double[]){8}), make_spec(ctx, "relu", 0, NULL),
                               make_spec(ctx, "linear", 1, (double[]){3})};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "net", specs, 3, ody_shape1(5), &m), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, m, 2), ODY_OK);
    float x[10] = {0}, dlogits[6] = {1, 1, 1, 1, 1, 1};
    assert_non_null(ody_model_forward(m, NULL, 2, x));
    const ody_layer_ops *real = m->layers[1]->ops;
    ody_layer_ops failing = *real;
    failing.forward = fail_forward;
    m->layers[1]->ops = &failing;
    assert_null(ody_model_forward(m, NULL, 2, x));
    assert_int_equal(m->status, ODY_ERR_INTERNAL);
    ody_model_zero_grad(m);
    int ready = 0;
    ody_model_backward(m, NULL, 2, x, dlogits, count_ready, &ready);
    assert_int_equal(ready, 3);
    for (size_t i = 0; i < m->grads.size; i++)
        assert_true(m->grads.data[i] == 0.0f); /* nothing computed */
    m->layers[1]->ops = real;
    assert_null(ody_model_forward(m, NULL, 2, x)); /* stopped until rebuilt */
    ody_model_destroy(ctx, m);
}

static void test_conv2d_onednn_matches_direct(void **state)
{
    ody_ctx *ctx = *state;
    check_onednn_matches_direct(ctx, false, 1e-5);
    if (ody_bf16_supported(ctx) == ODY_OK)
        check_onednn_matches_direct(ctx, true, 3e-2);
    else
        print_message("bf16: %s (skipped)\n", ody_ctx_error(ctx));
    ody_ctx_clear_error(ctx);
}

/*
 * A sample's oneDNN forward output (conv2d, linear) does not depend on the
 * batch around it (sizes 1, 2, 3, 5 and 7, and its position): validation pieces differ with the
 * rank count, the logits must not.
 */
static void check_batch_independent(ody_ctx *ctx, const ody_layer_spec *specs, int nspecs, ody_shape in)
{
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "net", specs, nspecs, in, &m), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, m, 7), ODY_OK);
    frand(3, m->params.size, -0.3f, 0.3f, m->params.data);
    size_t per = numel(in), out = numel(m->layers[nspecs - 1]->out_shape);
    float *x = falloc(7 * per), *ref = falloc(7 * out);
    frand(40, 7 * per, -1, 1, x);
    memcpy(ref, ody_model_forward(m, NULL, 7, x), 7 * out * sizeof(float));
    const int sizes[] = {1, 3, 2, 5};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int at = 0; at + sizes[k] <= 7; at += sizes[k]) {
            const float *y = ody_model_forward(m, NULL, sizes[k], x + at * per);
            if (memcmp(y, ref + at * out, (size_t)sizes[k] * out * sizeof(float)) != 0) {
                print_error("%s: batch of %d at %d differs from the batch of 7\n", specs[0].kind, sizes[k], at);
                fail();
            }
        }
    free(x), free(ref);
    ody_model_destroy(ctx, m);
}

static void test_onednn_batch_independent(void **state)
{
    ody_ctx *ctx = *state;
    ody_layer_spec conv = make_spec(ctx, "conv2d", 5, (double[]){32, 3, 1, 1, ODY_CONV_ONEDNN});
    check_batch_independent(ctx, &conv, 1, ody_shape3(16, 10, 10));
    ody_layer_spec fc = make_spec(ctx, "linear", 1, (double[]){10});
    check_batch_independent(ctx, &fc, 1, ody_shape1(300));
    fc.backend = ODY_BACKEND_OPENBLAS;
    check_batch_independent(ctx, &fc, 1, ody_shape1(300));
}

/* model.conv_algorithm through the config, over the layers left at auto. */
static void test_conv_algorithm_config(void **state)
{
    ody_ctx *ctx = *state;
    ody_config cfg;
    ody_config_defaults(&cfg);
    assert_string_equal(cfg.model.conv_algorithm, "auto");
    const char *text = "model:\n"
                       "  name: sequential\n"
                       "  num_classes: 3\n"
                       "  input_shape: [2, 8, 8]\n"
                       "  conv_algorithm: gemm\n"
                       "  layers:\n"
                       "    - {type: conv2d, out_channels: 4, kernel_size: 3}\n"
                       "    - {type: conv2d, out_channels: 4, kernel_size: 3, algorithm: 1}\n"
                       "    - {type: linear, out_features: 3}\n";
    assert_int_equal(ody_config_parse(ctx, text, "x.yaml", 0, NULL, &cfg), ODY_OK);
    assert_string_equal(cfg.model.conv_algorithm, "gemm");
    ody_model *m = create(ctx, &cfg.model);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_GEMM);
    assert_int_equal(ody_conv2d_algorithm(m->layers[1]), ODY_CONV_DIRECT); /* its own argument wins */
    ody_model_destroy(ctx, m);
    char *direct[] = {"model.conv_algorithm=direct"};
    assert_int_equal(ody_config_parse(ctx, text, "x.yaml", 1, direct, &cfg), ODY_OK);
    m = create(ctx, &cfg.model);
    assert_int_equal(ody_conv2d_algorithm(m->layers[0]), ODY_CONV_DIRECT);
    ody_model_destroy(ctx, m);
    char *bad[] = {"model.conv_algorithm=fast"};
    assert_int_equal(ody_config_parse(ctx, text, "x.yaml", 1, bad, &cfg), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(ctx), "conv_algorithm"));
    ody_model_options o = lenet_options();
    strcpy(o.conv_algorithm, "fast");
    expect_error(ctx, &o, "model.conv_algorithm 'fast' is not known (auto, direct, gemm or onednn)");
}

typedef struct {
    int order[ODY_MODEL_MAX_LAYERS];
    int calls;
} hook_log;

static void record(void *user, int layer)
{
    hook_log *log = user;
    log->order[log->calls++] = layer;
}

static void test_backward_hooks_zero_grad_and_empty_batch(void **state)
{
    ody_ctx *ctx = *state;
    ody_model *m = lenet_ready(ctx, 2, "auto");
    float x[2 * 784], dlogits[20];
    frand(10, sizeof x / sizeof x[0], 0, 1, x);
    frand(11, 20, -1, 1, dlogits);
    int64_t ids[2] = {0, 1};
    ody_forward_info info = {.training = true, .sample_ids = ids};
    ody_model_forward(m, &info, 2, x);
    ody_model_zero_grad(m);
    hook_log log = {.calls = 0};
    ody_model_backward(m, &info, 2, x, dlogits, record, &log);
    assert_int_equal(log.calls, m->nlayers);
    for (int i = 0; i < m->nlayers; i++)
        assert_int_equal(log.order[i], m->nlayers - 1 - i);
    float nonzero = 0;
    for (size_t i = 0; i < m->grads.size; i++)
        nonzero = fmaxf(nonzero, fabsf(m->grads.data[i]));
    assert_true(nonzero > 0);
    ody_model_zero_grad(m);
    for (size_t i = 0; i < m->grads.size; i++)
        assert_true(m->grads.data[i] == 0.0f);
    /* A rank with no rows still reports every layer, so its allreduces start. */
    log.calls = 0;
    assert_non_null(ody_model_forward(m, &info, 0, x));
    ody_model_backward(m, &info, 0, x, dlogits, record, &log);
    assert_int_equal(log.calls, m->nlayers);
    for (size_t i = 0; i < m->grads.size; i++)
        assert_true(m->grads.data[i] == 0.0f);
    assert_null(ody_model_forward(m, &info, 3, x)); /* more rows than prepared */
    ody_model_destroy(ctx, m);
}

static void test_prepare_grows(void **state)
{
    ody_ctx *ctx = *state;
    size_t before = ctx->bytes_allocated;
    ody_model *m = lenet_ready(ctx, 2, "auto");
    float x[8 * 784], small[2 * 10];
    frand(12, sizeof x / sizeof x[0], 0, 1, x);
    memcpy(small, ody_model_forward(m, NULL, 2, x), sizeof small);
    size_t bytes = m->prepared_bytes;
    assert_int_equal(ody_model_prepare(ctx, m, 8), ODY_OK);
    assert_true(m->prepared_bytes > bytes);
    assert_int_equal(m->max_batch, 8);
    const float *z = ody_model_forward(m, NULL, 8, x);
    for (int i = 0; i < 20; i++)
        assert_close(z[i], small[i], 1e-6, "logit", (size_t)i);
    assert_int_equal(ody_model_prepare(ctx, m, 4), ODY_OK); /* smaller: keeps what it has */
    assert_int_equal(m->max_batch, 8);
    assert_int_equal(ody_model_prepare(ctx, m, 0), ODY_ERR_INTERNAL);
    ody_model_destroy(ctx, m);
    assert_int_equal(ctx->bytes_allocated, before);
}

/* Three classes of 6x6 images: a horizontal bar, a vertical bar, a diagonal. */
static void synthetic_batch(uint64_t step, int n, float *x, int32_t *y)
{
    frand(100 + step, (size_t)n * 36, -0.3f, 0.3f, x);
    for (int s = 0; s < n; s++) {
        uint32_t w[4];
        ody_philox((ody_rng_key){1, 2}, step, (uint64_t)s, w);
        y[s] = (int32_t)(w[0] % 3);
        int at = (int)(w[1] % 6);
        for (int i = 0; i < 6; i++) {
            int pos = y[s] == 0 ? at * 6 + i : y[s] == 1 ? i * 6 + at : i * 6 + i;
            x[s * 36 + pos] += 1.0f;
        }
    }
}

static void test_training_drives_loss_down(void **state)
{
    ody_ctx *ctx = *state;
    enum { N = 16, STEPS = 300 };
    ody_layer_spec specs[5] = {
        make_spec(ctx, "conv2d", 4, (double[]){4, 3, 1, 1}), make_spec(ctx, "relu", 0, NULL),
        make_spec(ctx, "maxpool2d", 1, (double[]){2}), make_spec(ctx, "flatten", 0, NULL),
        make_spec(ctx, "linear", 1, (double[]){3}),
    };
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "tiny", specs, 5, ody_shape3(1, 6, 6), &m), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, m, N), ODY_OK);
    ody_model_init_params(m, 1);
    float x[N * 36], loss[N], dz[N * 3];
    int32_t y[N];
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        synthetic_batch((uint64_t)step, N, x, y);
        const float *z = ody_model_forward(m, NULL, N, x);
        ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.0, N, 3, z, y, loss, NULL);
        double mean = 0;
        for (int i = 0; i < N; i++)
            mean += loss[i] / N;
        first = step < 10 ? first + mean / 10 : first;
        last = step >= STEPS - 10 ? last + mean / 10 : last;
        ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.0, N, 3, z, y, 1.0f / N, dz);
        ody_model_zero_grad(m);
        ody_model_backward(m, NULL, N, x, dz, NULL, NULL);
        for (size_t i = 0; i < m->params.size; i++)
            m->params.data[i] -= 0.1f * m->grads.data[i];
    }
    assert_true(first > 0.8);
    assert_true(last < 0.1 * first);
    ody_model_destroy(ctx, m);
}

#define CTX_TEST(fn) cmocka_unit_test_setup_teardown(fn, ody_test_ctx_setup, ody_test_ctx_teardown)

static const struct CMUnitTest group[] = {
    CTX_TEST(test_conv2d_gradients),
    CTX_TEST(test_conv2d_gemm_gradients),
    CTX_TEST(test_conv2d_onednn_gradients),
    CTX_TEST(test_conv2d_onednn_matches_direct),
    CTX_TEST(test_conv2d_onednn_relu_fused),
    CTX_TEST(test_winograd_block_matches_direct),
    CTX_TEST(test_linear_bf16_matches_fp32),
    CTX_TEST(test_layer_failure_stops_model),
    CTX_TEST(test_onednn_batch_independent),
    CTX_TEST(test_maxpool2d_gradients),
    CTX_TEST(test_avgpool2d_gradients),
    CTX_TEST(test_linear_gradients),
    CTX_TEST(test_activation_and_flatten_gradients),
    CTX_TEST(test_dropout_gradients),
    CTX_TEST(test_layer_shapes),
    CTX_TEST(test_fused_conv_relu_pool_matches_unfused),
    CTX_TEST(test_fusion_plan_and_buffers),
    CTX_TEST(test_conv2d_direct_matches_gemm),
    CTX_TEST(test_lenet5_gemm_matches_direct),
    CTX_TEST(test_conv_algorithm_auto),
    CTX_TEST(test_conv_algorithm_auto_onednn),
    CTX_TEST(test_conv_algorithm_config),
    CTX_TEST(test_dropout_mask_is_keyed_by_sample),
    CTX_TEST(test_dropout_rate_and_eval_identity),
    CTX_TEST(test_dropout_backward_matches_mask),
    cmocka_unit_test(test_losses_match_finite_differences),
    cmocka_unit_test(test_loss_forward_backward_same_bits),
    cmocka_unit_test(test_cross_entropy_is_stable),
    cmocka_unit_test(test_mse_values_and_correct_counts),
    cmocka_unit_test(test_label_smoothing_matches_finite_differences),
    cmocka_unit_test(test_label_smoothing_hand_values),
    cmocka_unit_test(test_label_smoothing_zero_is_plain),
    cmocka_unit_test(test_label_smoothing_matches_pytorch),
    CTX_TEST(test_lenet5_layout),
    CTX_TEST(test_lenet5_classic_and_dropout),
    CTX_TEST(test_mlp_and_sequential),
    CTX_TEST(test_bad_architectures_are_named),
    CTX_TEST(test_layer_table),
    CTX_TEST(test_init_is_seeded),
    CTX_TEST(test_init_statistics),
    CTX_TEST(test_batch_equals_samples),
    CTX_TEST(test_lenet5_fused_matches_unfused),
    CTX_TEST(test_backward_hooks_zero_grad_and_empty_batch),
    CTX_TEST(test_prepare_grows),
    CTX_TEST(test_training_drives_loss_down),
};

ODY_TEST_MAIN(group)
