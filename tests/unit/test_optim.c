/*
 * Unit tests: optim (optimizers, learning-rate schedules, gradient
 * clipping, loss scaling).
 *
 * Every optimizer is checked against a reference written here in double
 * precision straight from the algorithm boxes of the torch.optim 1.13
 * documentation (independent of src/optim), over several steps. A few
 * results are also checked against numbers PyTorch 1.13 printed for the
 * same inputs (torch_* below; the script is in the comment above them), so
 * the reference itself is known to follow PyTorch.
 */
#include "ody_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odyssey/optim.h"
#include "optim/optim_internal.h"

#define COUNT(array) (sizeof(array) / sizeof(array)[0])
#define PI 3.14159265358979323846

/* ------------------------------------------------- reference optimizers */

enum { REF_MAX = 4096, STEPS = 4 };

/* Double-precision state: the same buffers torch keeps, by torch's names. */
typedef struct {
    double p[REF_MAX];
    double momentum[REF_MAX]; /* sgd "momentum_buffer", rmsprop "momentum_buffer" */
    double exp_avg[REF_MAX], exp_avg_sq[REF_MAX];
    double square_avg[REF_MAX], grad_avg[REF_MAX];
    int t; /* steps done */
} ref_state;

/* torch.optim.SGD's algorithm box. */
static void ref_sgd(ref_state *r, const ody_optimizer_params *h, const float *g, size_t n,
                    double lr)
{
    r->t++;
    for (size_t i = 0; i < n; i++) {
        double d = g[i] + h->weight_decay * r->p[i];
        if (h->momentum != 0) {
            double *b = &r->momentum[i];
            *b = r->t > 1 ? h->momentum * *b + (1 - h->dampening) * d : d;
            d = h->nesterov ? d + h->momentum * *b : *b;
        }
        r->p[i] -= lr * d;
    }
}

/* torch.optim.Adam's (L2 weight decay) and AdamW's (decoupled) algorithm boxes. */
static void ref_adam(ref_state *r, const ody_optimizer_params *h, const float *g, size_t n,
                     double lr)
{
    r->t++;
    bool decoupled = h->kind == ODY_OPT_ADAMW;
    for (size_t i = 0; i < n; i++) {
        if (decoupled)
            r->p[i] *= 1 - lr * h->weight_decay;
        double d = g[i] + (decoupled ? 0 : h->weight_decay * r->p[i]);
        r->exp_avg[i] = h->beta1 * r->exp_avg[i] + (1 - h->beta1) * d;
        r->exp_avg_sq[i] = h->beta2 * r->exp_avg_sq[i] + (1 - h->beta2) * d * d;
        double m_hat = r->exp_avg[i] / (1 - pow(h->beta1, r->t));
        double v_hat = r->exp_avg_sq[i] / (1 - pow(h->beta2, r->t));
        r->p[i] -= lr * m_hat / (sqrt(v_hat) + h->eps);
    }
}

/* torch.optim.RMSprop's algorithm box. */
static void ref_rmsprop(ref_state *r, const ody_optimizer_params *h, const float *g, size_t n,
                        double lr)
{
    r->t++;
    for (size_t i = 0; i < n; i++) {
        double d = g[i] + h->weight_decay * r->p[i];
        r->square_avg[i] = h->alpha * r->square_avg[i] + (1 - h->alpha) * d * d;
        double v = r->square_avg[i];
        if (h->centered) {
            r->grad_avg[i] = h->alpha * r->grad_avg[i] + (1 - h->alpha) * d;
            v -= r->grad_avg[i] * r->grad_avg[i];
        }
        if (h->momentum > 0) {
            r->momentum[i] = h->momentum * r->momentum[i] + d / (sqrt(v) + h->eps);
            r->p[i] -= lr * r->momentum[i];
        } else {
            r->p[i] -= lr * d / (sqrt(v) + h->eps);
        }
    }
}

static void ref_step(ref_state *r, const ody_optimizer_params *h, const float *g, size_t n,
                     double lr)
{
    if (h->kind == ODY_OPT_SGD)
        ref_sgd(r, h, g, n, lr);
    else if (h->kind == ODY_OPT_RMSPROP)
        ref_rmsprop(r, h, g, n, lr);
    else
        ref_adam(r, h, g, n, lr);
}

/* ------------------------------------------------------------- fixtures */

/* Parameters and gradients that are not round numbers and never zero. */
static float param0(size_t i) { return (float)((int)(i % 7) - 3) * 0.25f + 0.1f; }
static float grad_at(int step, size_t i)
{
    return (float)((int)((i * 5 + (size_t)step * 3) % 11) - 5) * 0.03f + 0.01f;
}

static void expect_close(const float *got, const double *want, size_t n, double rel,
                         const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-7 + rel * fabs(want[i])))
            fail_msg("%s: element %zu: got %.9g, want %.9g", what, i, (double)got[i], want[i]);
}

/*
 * Run STEPS updates of h over n elements (changing gradients, a lr that
 * changes per step too) and compare with the reference after every step.
 */
static void check_against_reference(ody_ctx *ctx, const ody_optimizer_params *h, size_t n,
                                    const char *what)
{
    static ref_state ref;
    memset(&ref, 0, sizeof ref);
    float *p = NULL, *g = NULL;
    assert_int_equal(ody_alloc(ctx, n * sizeof *p, "p", (void **)&p), ODY_OK);
    assert_int_equal(ody_alloc(ctx, n * sizeof *g, "g", (void **)&g), ODY_OK);
    for (size_t i = 0; i < n; i++)
        ref.p[i] = p[i] = param0(i);
    ody_optimizer *opt = NULL;
    assert_int_equal(ody_optimizer_create(ctx, h, n, &opt), ODY_OK);
    for (int s = 0; s < STEPS; s++) {
        double lr = 0.05 / (1 + s);
        for (size_t i = 0; i < n; i++)
            g[i] = grad_at(s, i);
        ody_optimizer_step(opt, p, g, lr);
        ref_step(&ref, h, g, n, lr);
        assert_int_equal(opt->steps, s + 1);
        expect_close(p, ref.p, n, 2e-6, what);
    }
    ody_optimizer_destroy(ctx, opt);
    ody_free(ctx, p, n * sizeof *p);
    ody_free(ctx, g, n * sizeof *g);
}

static ody_optimizer_params params_of(ody_optimizer_kind kind)
{
    ody_optimizer_params h;
    ody_optimizer_params_default(&h, kind);
    return h;
}

/* --------------------------------------------------------- optimizers */

static void test_kind_names(void **state)
{
    (void)state;
    static const char *const names[] = {"sgd", "adam", "adamw", "rmsprop"};
    for (int k = 0; k < (int)COUNT(names); k++) {
        ody_optimizer_kind kind;
        assert_true(ody_optimizer_kind_from_name(names[k], &kind));
        assert_int_equal(kind, k);
        assert_string_equal(ody_optimizer_names()[k], names[k]);
    }
    assert_null(ody_optimizer_names()[COUNT(names)]);
    ody_optimizer_kind kind;
    assert_false(ody_optimizer_kind_from_name("Adam", &kind));
    assert_false(ody_optimizer_kind_from_name("", &kind));
    ody_optimizer_params h = params_of(ODY_OPT_ADAMW);
    assert_true(h.beta1 == 0.9 && h.beta2 == 0.999 && h.eps == 1e-8 && h.alpha == 0.99);
    assert_true(h.weight_decay == 0 && h.momentum == 0 && !h.centered && !h.nesterov);
}

typedef struct {
    ody_optimizer_params h;
    int nstate;
    const char *names[ODY_OPT_MAX_STATE];
} layout_case;

static void test_state_buffers_and_names(void **state)
{
    ody_ctx *ctx = *state;
    ody_optimizer_params sgd = params_of(ODY_OPT_SGD), sgd_m = sgd;
    ody_optimizer_params rms_all = params_of(ODY_OPT_RMSPROP), rms_c = rms_all;
    sgd_m.momentum = 0.9;
    rms_all.momentum = 0.5;
    rms_all.centered = true;
    rms_c.centered = true;
    const layout_case cases[] = {
        {sgd, 0, {NULL}},
        {sgd_m, 1, {"momentum"}},
        {params_of(ODY_OPT_ADAM), 2, {"exp_avg", "exp_avg_sq"}},
        {params_of(ODY_OPT_ADAMW), 2, {"exp_avg", "exp_avg_sq"}},
        {params_of(ODY_OPT_RMSPROP), 1, {"square_avg"}},
        {rms_c, 2, {"square_avg", "grad_avg"}},
        {rms_all, 3, {"square_avg", "momentum_buffer", "grad_avg"}},
    };
    for (size_t c = 0; c < COUNT(cases); c++) {
        ody_optimizer *opt = NULL;
        assert_int_equal(ody_optimizer_create(ctx, &cases[c].h, 37, &opt), ODY_OK);
        assert_int_equal(opt->nstate, cases[c].nstate);
        assert_int_equal(opt->steps, 0);
        for (int i = 0; i < opt->nstate; i++) {
            assert_string_equal(opt->state_names[i], cases[c].names[i]);
            assert_int_equal((uintptr_t)opt->state[i].data % 64, 0);
            assert_true(opt->state[i].capacity >= 37);
            for (size_t k = 0; k < 37; k++)
                assert_true(opt->state[i].data[k] == 0.0f);
        }
        ody_optimizer_destroy(ctx, opt);
    }
    ody_optimizer_params bad = sgd;
    bad.kind = ODY_OPT_KIND_COUNT;
    ody_optimizer *opt = (ody_optimizer *)&bad;
    assert_int_equal(ody_optimizer_create(ctx, &bad, 8, &opt), ODY_ERR_CONFIG);
    assert_null(opt);
    ody_optimizer_destroy(ctx, NULL);
}

static void test_sgd_matches_reference(void **state)
{
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_SGD);
    check_against_reference(ctx, &h, 37, "sgd");
    h.weight_decay = 0.01;
    check_against_reference(ctx, &h, 37, "sgd + weight decay");
    h.momentum = 0.9;
    check_against_reference(ctx, &h, 37, "sgd + momentum");
    h.dampening = 0.3; /* not applied on the first step: the buffer starts as the gradient */
    check_against_reference(ctx, &h, 37, "sgd + momentum + dampening");
    h.dampening = 0;
    h.nesterov = true;
    check_against_reference(ctx, &h, 37, "sgd + nesterov");
}

static void test_adam_matches_reference(void **state)
{
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_ADAM);
    check_against_reference(ctx, &h, 37, "adam");
    h.weight_decay = 0.1;
    h.beta1 = 0.8;
    h.beta2 = 0.99;
    h.eps = 1e-6;
    check_against_reference(ctx, &h, 37, "adam + L2");
    h.kind = ODY_OPT_ADAMW;
    check_against_reference(ctx, &h, 37, "adamw");
}

static void test_adam_first_step_is_lr_times_sign(void **state)
{
    /* Bias correction: after one step m_hat = g and v_hat = g^2, so p moves by lr*g/(|g|+eps). */
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_ADAM);
    h.eps = 0;
    ody_optimizer *opt = NULL;
    assert_int_equal(ody_optimizer_create(ctx, &h, 3, &opt), ODY_OK);
    float p[3] = {1, 1, 1}, g[3] = {1e-3f, -5.0f, 200.0f};
    ody_optimizer_step(opt, p, g, 0.1);
    assert_float_equal(p[0], 0.9f, 1e-6);
    assert_float_equal(p[1], 1.1f, 1e-6);
    assert_float_equal(p[2], 0.9f, 1e-6);
    ody_optimizer_destroy(ctx, opt);
}

static void test_adamw_decay_is_decoupled(void **state)
{
    /* With a zero gradient Adam's moments stay 0: AdamW only shrinks p, Adam+L2 moves it by ~lr. */
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_ADAMW);
    h.weight_decay = 0.5;
    ody_optimizer *opt = NULL;
    float p[2] = {2.0f, -4.0f}, g[2] = {0, 0};
    assert_int_equal(ody_optimizer_create(ctx, &h, 2, &opt), ODY_OK);
    ody_optimizer_step(opt, p, g, 0.1);
    ody_optimizer_step(opt, p, g, 0.1);
    assert_float_equal(p[0], 2.0f * 0.95f * 0.95f, 1e-6);
    assert_float_equal(p[1], -4.0f * 0.95f * 0.95f, 1e-6);
    ody_optimizer_destroy(ctx, opt);
    h.kind = ODY_OPT_ADAM;
    float q[2] = {2.0f, -4.0f};
    assert_int_equal(ody_optimizer_create(ctx, &h, 2, &opt), ODY_OK);
    ody_optimizer_step(opt, q, g, 0.1);
    assert_float_equal(q[0], 1.9f, 1e-5);
    assert_float_equal(q[1], -3.9f, 1e-5);
    ody_optimizer_destroy(ctx, opt);
}

static void test_rmsprop_matches_reference(void **state)
{
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_RMSPROP);
    check_against_reference(ctx, &h, 37, "rmsprop");
    h.weight_decay = 0.05;
    h.alpha = 0.9;
    check_against_reference(ctx, &h, 37, "rmsprop + weight decay");
    h.centered = true;
    check_against_reference(ctx, &h, 37, "rmsprop centered");
    h.momentum = 0.5;
    check_against_reference(ctx, &h, 37, "rmsprop centered + momentum");
    h.centered = false;
    check_against_reference(ctx, &h, 37, "rmsprop + momentum");
}

static void test_long_buffers_match_reference(void **state)
{
    /* Past the vector widths and rmsprop's 1024-float chunks, with a ragged end. */
    ody_ctx *ctx = *state;
    ody_optimizer_params h = params_of(ODY_OPT_RMSPROP);
    h.momentum = 0.9;
    h.centered = true;
    check_against_reference(ctx, &h, 2500, "rmsprop, 2500");
    h = params_of(ODY_OPT_ADAMW);
    h.weight_decay = 0.01;
    check_against_reference(ctx, &h, 2500, "adamw, 2500");
    h = params_of(ODY_OPT_SGD);
    h.momentum = 0.9;
    h.nesterov = true;
    check_against_reference(ctx, &h, 2500, "sgd nesterov, 2500");
}

/*
 * The update at the portable level and at AVX-512 (where the CPU has it):
 * the same bits for every rule, parameters and state, over a buffer past
 * the vector widths with a ragged end.
 */
static void check_levels_agree(ody_ctx *ctx, const ody_optimizer_params *h, const char *what)
{
    enum { N = 2503 };
    static float p[2][N], g[N];
    ody_optimizer *opt[2] = {NULL, NULL};
    const ody_cpu_isa level[2] = {ODY_ISA_PORTABLE, ODY_ISA_AVX512};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ody_optimizer_create(ctx, h, N, &opt[k]), ODY_OK);
        for (size_t i = 0; i < N; i++)
            p[k][i] = param0(i);
    }
    for (int s = 0; s < STEPS; s++) {
        for (size_t i = 0; i < N; i++)
            g[i] = grad_at(s, i);
        for (int k = 0; k < 2; k++)
            ody_optimizer_step_at(opt[k], p[k], g, 0.05 / (1 + s), level[k]);
        if (memcmp(p[0], p[1], sizeof p[0]) != 0)
            fail_msg("%s: the levels' parameters differ after step %d", what, s + 1);
        for (int b = 0; b < opt[0]->nstate; b++)
            if (memcmp(opt[0]->state[b].data, opt[1]->state[b].data, N * sizeof(float)) != 0)
                fail_msg("%s: the levels' %s differ after step %d", what, opt[0]->state_names[b], s + 1);
    }
    for (int k = 0; k < 2; k++)
        ody_optimizer_destroy(ctx, opt[k]);
}

static void test_levels_give_the_same_bits(void **state)
{
    ody_ctx *ctx = *state;
    if (ody_cpu_isa_best() < ODY_ISA_AVX512)
        skip();
    ody_optimizer_params h = params_of(ODY_OPT_SGD);
    h.weight_decay = 1e-4;
    check_levels_agree(ctx, &h, "sgd");
    h.momentum = 0.9;
    check_levels_agree(ctx, &h, "sgd momentum");
    h.nesterov = true;
    check_levels_agree(ctx, &h, "sgd nesterov");
    h = params_of(ODY_OPT_ADAM);
    h.weight_decay = 1e-4;
    check_levels_agree(ctx, &h, "adam");
    h = params_of(ODY_OPT_ADAMW);
    h.weight_decay = 0.01;
    check_levels_agree(ctx, &h, "adamw");
    h = params_of(ODY_OPT_RMSPROP);
    h.momentum = 0.9;
    h.centered = true;
    check_levels_agree(ctx, &h, "rmsprop centered + momentum");
}

/*
 * PyTorch 1.13 on the same 5 parameters and 3 gradients, lr fixed:
 *   p = torch.nn.Parameter(torch.tensor(P0)); opt = torch.optim.X([p], ...)
 *   for g in G: p.grad = torch.tensor(g); opt.step()
 */
static const float torch_p0[5] = {0.5f, -1.25f, 2.0f, -0.75f, 0.1f};
static const float torch_g[3][5] = {{0.3f, -0.2f, 0.05f, 0.4f, -0.1f},
                                    {0.1f, 0.25f, -0.3f, 0.2f, 0.05f},
                                    {-0.2f, 0.15f, 0.1f, -0.05f, 0.3f}};

typedef struct {
    const char *what; /* the torch call */
    ody_optimizer_params h;
    double lr;
    float want[5];
} torch_case;

static void test_optimizers_match_pytorch(void **state)
{
    ody_ctx *ctx = *state;
    const torch_case cases[] = {
        {"SGD(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)",
         {.kind = ODY_OPT_SGD, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}, 0.1,
         {0.417052776f, -1.24545348f, 2.01811123f, -0.883960247f, 0.0909882858f}},
        {"SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)",
         {.kind = ODY_OPT_SGD, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01}, 0.1,
         {0.404057294f, -1.26754177f, 2.02897787f, -0.925749838f, 0.0629516244f}},
        {"Adam(lr=0.01, weight_decay=0.1)",
         {.kind = ODY_OPT_ADAM, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1},
         0.01, {0.476772338f, -1.2341851f, 1.9800601f, -0.773195267f, 0.105687134f}},
        {"AdamW(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)",
         {.kind = ODY_OPT_ADAMW, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1},
         0.01, {0.47869724f, -1.24293947f, 1.99311399f, -0.772668481f, 0.105693862f}},
        {"RMSprop(lr=0.01, alpha=0.9, weight_decay=0.05, momentum=0.5, centered=True)",
         {.kind = ODY_OPT_RMSPROP, .alpha = 0.9, .eps = 1e-8, .weight_decay = 0.05,
          .momentum = 0.5, .centered = true},
         0.01, {0.438280195f, -1.22949243f, 1.95988691f, -0.822231591f, 0.101752102f}},
        {"RMSprop(lr=0.01)", {.kind = ODY_OPT_RMSPROP, .alpha = 0.99, .eps = 1e-8}, 0.01,
         {0.422050923f, -1.27090943f, 1.96727252f, -0.883690536f, 0.0612918362f}},
    };
    for (size_t c = 0; c < COUNT(cases); c++) {
        ody_optimizer *opt = NULL;
        float p[5];
        memcpy(p, torch_p0, sizeof p);
        assert_int_equal(ody_optimizer_create(ctx, &cases[c].h, 5, &opt), ODY_OK);
        for (int s = 0; s < 3; s++)
            ody_optimizer_step(opt, p, torch_g[s], cases[c].lr);
        for (int i = 0; i < 5; i++)
            if (!(fabsf(p[i] - cases[c].want[i]) <= 1e-6f))
                fail_msg("%s: p[%d] = %.9g, torch %.9g", cases[c].what, i, (double)p[i],
                         (double)cases[c].want[i]);
        ody_optimizer_destroy(ctx, opt);
    }
}

static void test_restored_state_continues_the_run(void **state)
{
    /* What a checkpoint holds (buffers + steps) is all an optimizer needs to continue. */
    ody_ctx *ctx = *state;
    ody_optimizer_params kinds[] = {params_of(ODY_OPT_SGD), params_of(ODY_OPT_ADAM),
                                    params_of(ODY_OPT_RMSPROP)};
    kinds[0].momentum = 0.9;
    kinds[0].dampening = 0.2;
    kinds[2].momentum = 0.3;
    kinds[2].centered = true;
    for (size_t k = 0; k < COUNT(kinds); k++) {
        enum { N = 21 };
        float p[N], q[N], g[N];
        ody_optimizer *a = NULL, *b = NULL;
        assert_int_equal(ody_optimizer_create(ctx, &kinds[k], N, &a), ODY_OK);
        assert_int_equal(ody_optimizer_create(ctx, &kinds[k], N, &b), ODY_OK);
        for (size_t i = 0; i < N; i++)
            p[i] = param0(i);
        for (int s = 0; s < 2; s++) {
            for (size_t i = 0; i < N; i++)
                g[i] = grad_at(s, i);
            ody_optimizer_step(a, p, g, 0.01);
        }
        memcpy(q, p, sizeof p);
        for (int i = 0; i < a->nstate; i++)
            memcpy(b->state[i].data, a->state[i].data, N * sizeof(float));
        b->steps = a->steps;
        for (int s = 2; s < 5; s++) {
            for (size_t i = 0; i < N; i++)
                g[i] = grad_at(s, i);
            ody_optimizer_step(a, p, g, 0.01);
            ody_optimizer_step(b, q, g, 0.01);
        }
        assert_memory_equal(p, q, sizeof p);
        ody_optimizer_destroy(ctx, a);
        ody_optimizer_destroy(ctx, b);
    }
}

/* ----------------------------------------------------------- schedules */

static ody_schedule make_schedule(ody_ctx *ctx, const ody_schedule_params *p, double lr,
                                  int64_t epochs)
{
    ody_schedule s;
    ody_status st = ody_schedule_init(ctx, &s, p, lr, epochs);
    if (st != ODY_OK)
        fail_msg("ody_schedule_init: %s", ody_ctx_error(ctx));
    return s;
}

static ody_schedule_params sched_of(ody_schedule_kind kind)
{
    ody_schedule_params p;
    ody_schedule_params_default(&p);
    p.kind = kind;
    return p;
}

/* The lr of each epoch (step = epoch, no warmup) against want[0..n). */
static void expect_epoch_lrs(const ody_schedule *s, const double *want, int n, const char *what)
{
    for (int e = 0; e < n; e++) {
        double got = ody_schedule_lr(s, e, e);
        if (!(fabs(got - want[e]) <= 1e-12 * want[e]))
            fail_msg("%s: epoch %d: lr %.17g, want %.17g", what, e, got, want[e]);
    }
}

static void test_schedule_names_and_defaults(void **state)
{
    (void)state;
    static const char *const names[] = {"none", "step", "multistep", "exponential", "cosine",
                                        "plateau"};
    for (int k = 0; k < (int)COUNT(names); k++) {
        ody_schedule_kind kind;
        assert_true(ody_schedule_kind_from_name(names[k], &kind));
        assert_int_equal(kind, k);
        assert_string_equal(ody_schedule_names()[k], names[k]);
    }
    assert_null(ody_schedule_names()[COUNT(names)]);
    ody_schedule_kind kind;
    assert_false(ody_schedule_kind_from_name("linear", &kind));
    ody_schedule_params p;
    ody_schedule_params_default(&p);
    assert_int_equal(p.kind, ODY_SCHED_NONE);
    assert_int_equal(p.step_size, 30);
    assert_true(p.gamma == 0.1 && p.factor == 0.1 && p.threshold == 1e-4);
    assert_int_equal(p.patience, 10);
}

/*
 * The lr PyTorch 1.13 used in each epoch with SGD(lr=0.1) and
 * scheduler.step() after every epoch:
 *   StepLR(o, 3, 0.5); MultiStepLR(o, [2, 5], 0.1); ExponentialLR(o, 0.9);
 *   CosineAnnealingLR(o, 10, 0.001)
 */
static const double torch_step[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025};
static const double torch_multistep[] = {0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001};
static const double torch_exponential[] = {0.1, 0.09, 0.081, 0.0729, 0.06561};
static const double torch_cosine[] = {
    0.1, 0.09757729755661011, 0.0905463412215599, 0.07959536998847742, 0.0657963412215599,
    0.0505, 0.03520365877844011, 0.02140463001152259, 0.010453658778440109,
    0.0034227024433899004, 0.001, 0.0034227024433899004, 0.01045365877844014,
    0.02140463001152267, 0.035203658778440255, 0.05050000000000022};

static void test_epoch_schedules_match_pytorch(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = sched_of(ODY_SCHED_STEP);
    p.step_size = 3;
    p.gamma = 0.5;
    ody_schedule s = make_schedule(ctx, &p, 0.1, 20);
    expect_epoch_lrs(&s, torch_step, COUNT(torch_step), "step");
    p = sched_of(ODY_SCHED_MULTISTEP);
    p.nmilestones = 2;
    p.milestones[0] = 2;
    p.milestones[1] = 5;
    s = make_schedule(ctx, &p, 0.1, 20);
    expect_epoch_lrs(&s, torch_multistep, COUNT(torch_multistep), "multistep");
    p = sched_of(ODY_SCHED_EXPONENTIAL);
    p.gamma = 0.9;
    s = make_schedule(ctx, &p, 0.1, 20);
    expect_epoch_lrs(&s, torch_exponential, COUNT(torch_exponential), "exponential");
    p = sched_of(ODY_SCHED_COSINE);
    p.t_max = 10;
    p.eta_min = 0.001;
    s = make_schedule(ctx, &p, 0.1, 20);
    expect_epoch_lrs(&s, torch_cosine, COUNT(torch_cosine), "cosine");
}

static void test_epoch_schedule_formulas(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = sched_of(ODY_SCHED_NONE);
    ody_schedule s = make_schedule(ctx, &p, 0.3, 5);
    assert_true(ody_schedule_lr(&s, 0, 0) == 0.3 && ody_schedule_lr(&s, 999, 4) == 0.3);
    /* The lr changes at epoch boundaries only: the step within the epoch does not matter. */
    p = sched_of(ODY_SCHED_STEP);
    p.step_size = 2;
    s = make_schedule(ctx, &p, 1.0, 10);
    assert_true(ody_schedule_lr(&s, 10, 1) == 1.0);
    assert_true(fabs(ody_schedule_lr(&s, 11, 2) - 0.1) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 50, 5) - 0.01) < 1e-15);
    /* Multistep: gamma^(milestones <= epoch). */
    p = sched_of(ODY_SCHED_MULTISTEP);
    p.gamma = 0.5;
    p.nmilestones = 3;
    p.milestones[0] = 1;
    p.milestones[1] = 4;
    p.milestones[2] = 6;
    s = make_schedule(ctx, &p, 0.8, 10);
    const double want[] = {0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.1};
    expect_epoch_lrs(&s, want, COUNT(want), "multistep");
    /* Cosine with t_max 0 anneals over the run's epochs: eta_min at epoch == epochs. */
    p = sched_of(ODY_SCHED_COSINE);
    p.eta_min = 0.01;
    s = make_schedule(ctx, &p, 0.1, 4);
    assert_true(fabs(ody_schedule_lr(&s, 0, 2) - 0.055) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 0, 1) - (0.01 + 0.09 * (1 + cos(PI / 4)) / 2)) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 0, 4) - 0.01) < 1e-15);
}

/* PyTorch 1.13: LinearLR(o, start_factor=0.25, total_iters=4) stepped every step, lr 0.1. */
static const double torch_linear[] = {0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1};

static void test_warmup_combines_with_schedules(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = sched_of(ODY_SCHED_NONE);
    p.warmup_steps = 4;
    p.warmup_start_factor = 0.25;
    ody_schedule s = make_schedule(ctx, &p, 0.1, 3);
    for (int step = 0; step < (int)COUNT(torch_linear); step++)
        assert_true(fabs(ody_schedule_lr(&s, step, 0) - torch_linear[step]) < 1e-15);
    /* With cosine (t_max 10, eta_min 0): factor(step) x cosine(epoch), 3 steps per epoch. */
    p.kind = ODY_SCHED_COSINE;
    p.t_max = 10;
    p.warmup_steps = 5;
    p.warmup_start_factor = 0.5;
    s = make_schedule(ctx, &p, 1.0, 10);
    double cos1 = (1 + cos(PI / 10)) / 2;
    assert_true(ody_schedule_lr(&s, 0, 0) == 0.5);
    assert_true(fabs(ody_schedule_lr(&s, 2, 0) - 0.7) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 3, 1) - 0.8 * cos1) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 4, 1) - 0.9 * cos1) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 5, 1) - cos1) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 100, 1) - cos1) < 1e-15);
    /* With step (step_size 1, gamma 0.5): a warmup longer than an epoch spans the decay. */
    p = sched_of(ODY_SCHED_STEP);
    p.step_size = 1;
    p.gamma = 0.5;
    p.warmup_steps = 10;
    p.warmup_start_factor = 0.1;
    s = make_schedule(ctx, &p, 0.2, 10);
    assert_true(fabs(ody_schedule_lr(&s, 0, 0) - 0.02) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 4, 0) - 0.2 * 0.46) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 6, 1) - 0.1 * 0.64) < 1e-15);
    assert_true(fabs(ody_schedule_lr(&s, 12, 2) - 0.05) < 1e-15);
}

/*
 * PyTorch 1.13: ReduceLROnPlateau(o, 'min', factor=0.5, patience=2,
 * threshold=0.01, cooldown=1, min_lr=0.02), lr 0.1, step(metric) after
 * every epoch: the lr of each epoch.
 */
static const double plateau_metrics[] = {1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8,
                                         0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8};
static const double torch_plateau[] = {0.1,   0.1,   0.1,   0.1,   0.1,   0.05, 0.05,
                                       0.05,  0.05,  0.05,  0.025, 0.025, 0.025, 0.025,
                                       0.02,  0.02,  0.02,  0.02,  0.02,  0.02};

static ody_schedule_params plateau_params(void)
{
    ody_schedule_params p = sched_of(ODY_SCHED_PLATEAU);
    p.factor = 0.5;
    p.patience = 2;
    p.threshold = 0.01;
    p.cooldown = 1;
    p.min_lr = 0.02;
    return p;
}

static void test_plateau_matches_pytorch(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = plateau_params();
    ody_schedule s = make_schedule(ctx, &p, 0.1, 100);
    for (int e = 0; e < (int)COUNT(plateau_metrics); e++) {
        double lr = ody_schedule_lr(&s, e * 7, e);
        if (!(fabs(lr - torch_plateau[e]) < 1e-15))
            fail_msg("epoch %d: lr %.17g, torch %.17g", e, lr, torch_plateau[e]);
        ody_schedule_epoch_end(&s, plateau_metrics[e]);
    }
}

static void test_plateau_threshold_and_mode_max(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = sched_of(ODY_SCHED_PLATEAU);
    p.patience = 0;
    p.threshold = 0.1;
    p.factor = 0.5;
    p.maximize = true;
    ody_schedule s = make_schedule(ctx, &p, 1.0, 100);
    ody_schedule_epoch_end(&s, 0.5);  /* best 0.5 */
    assert_true(ody_schedule_lr(&s, 0, 1) == 1.0);
    ody_schedule_epoch_end(&s, 0.56); /* 0.56 > 0.55: better */
    assert_true(ody_schedule_lr(&s, 0, 2) == 1.0);
    ody_schedule_epoch_end(&s, 0.6);  /* 0.6 < 0.616: not better enough, patience 0 */
    assert_true(ody_schedule_lr(&s, 0, 3) == 0.5);
    assert_true(s.best == 0.56);
    ody_schedule_epoch_end(&s, 0.1);  /* worse again, no cooldown */
    assert_true(ody_schedule_lr(&s, 0, 4) == 0.25);
    ody_schedule_epoch_end(&s, NAN);  /* never better */
    assert_true(ody_schedule_lr(&s, 0, 5) == 0.125);
    /* Minimize: lower is better; the floor is min_lr; warmup still multiplies in. */
    p.maximize = false;
    p.min_lr = 0.3;
    p.warmup_steps = 2;
    s = make_schedule(ctx, &p, 1.0, 100);
    ody_schedule_epoch_end(&s, 2.0);
    ody_schedule_epoch_end(&s, 1.9); /* 1.9 > 1.8: not better */
    ody_schedule_epoch_end(&s, 1.9);
    assert_true(s.plateau_lr == 0.3);
    assert_true(fabs(ody_schedule_lr(&s, 1, 2) - 0.3 * 0.55) < 1e-15);
    ody_schedule_epoch_end(&s, 5.0);
    assert_true(s.plateau_lr == 0.3);
    /* Other kinds ignore metrics. */
    p = sched_of(ODY_SCHED_EXPONENTIAL);
    s = make_schedule(ctx, &p, 1.0, 10);
    ody_schedule_epoch_end(&s, 1.0);
    assert_true(ody_schedule_lr(&s, 0, 0) == 1.0 && s.epochs_ended == 0);
}

static void test_schedule_save_load_mid_run(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule_params p = plateau_params();
    ody_schedule a = make_schedule(ctx, &p, 0.1, 100);
    for (int e = 0; e < 9; e++) /* mid-run: one reduction done, two bad epochs counted */
        ody_schedule_epoch_end(&a, plateau_metrics[e]);
    double v[ODY_SCHEDULE_STATE_MAX];
    int n = ody_schedule_save(&a, v);
    assert_true(n > 0 && n <= ODY_SCHEDULE_STATE_MAX);
    ody_schedule b = make_schedule(ctx, &p, 0.1, 100);
    assert_false(ody_schedule_load(&b, v, n - 1));
    assert_true(ody_schedule_load(&b, v, n));
    for (int e = 9; e < (int)COUNT(plateau_metrics); e++) {
        assert_true(ody_schedule_lr(&a, e, e) == ody_schedule_lr(&b, e, e));
        assert_true(ody_schedule_lr(&b, e, e) == torch_plateau[e]);
        ody_schedule_epoch_end(&a, plateau_metrics[e]);
        ody_schedule_epoch_end(&b, plateau_metrics[e]);
    }
    /* The state of one kind does not load into another. */
    ody_schedule_params q = sched_of(ODY_SCHED_COSINE);
    ody_schedule c = make_schedule(ctx, &q, 0.1, 10);
    assert_false(ody_schedule_load(&c, v, n));
    /* Stateless kinds save and load too (the kind only matters). */
    n = ody_schedule_save(&c, v);
    assert_true(ody_schedule_load(&c, v, n));
    v[3] = -1; /* a corrupt counter */
    assert_false(ody_schedule_load(&c, v, n));
}

static void test_schedule_init_rejects_bad_params(void **state)
{
    ody_ctx *ctx = *state;
    ody_schedule s;
    ody_schedule_params p = sched_of(ODY_SCHED_STEP);
    p.step_size = 0;
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 10), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(ctx), "step_size"));
    p = sched_of(ODY_SCHED_MULTISTEP);
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 10), ODY_ERR_CONFIG);
    p.nmilestones = 2;
    p.milestones[0] = 5;
    p.milestones[1] = 5;
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 10), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(ctx), "increasing"));
    p = sched_of(ODY_SCHED_PLATEAU);
    p.factor = 1.0;
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 10), ODY_ERR_CONFIG);
    p = sched_of(ODY_SCHED_NONE);
    p.warmup_steps = 3;
    p.warmup_start_factor = 0;
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 10), ODY_ERR_CONFIG);
    p = sched_of(ODY_SCHED_COSINE);
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.1, 0), ODY_ERR_CONFIG);
    assert_int_equal(ody_schedule_init(ctx, &s, &p, 0.0, 5), ODY_ERR_CONFIG);
}

/* ------------------------------------------------------------ clipping */

static void test_clip_grad_norm(void **state)
{
    (void)state;
    float g[2] = {3.0f, -4.0f};
    assert_true(ody_clip_grad_norm(g, 2, 1.0) == 5.0);
    assert_float_equal(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    assert_float_equal(g[1], -4.0 / (5.0 + 1e-6), 1e-7);
    float h[2] = {3.0f, -4.0f};
    assert_true(ody_clip_grad_norm(h, 2, 10.0) == 5.0); /* below the limit: unchanged */
    assert_true(h[0] == 3.0f && h[1] == -4.0f);
    float inf[3] = {1.0f, INFINITY, 2.0f};
    assert_true(isinf(ody_clip_grad_norm(inf, 3, 1.0))); /* left to the non-finite policy */
    assert_true(inf[0] == 1.0f && inf[2] == 2.0f);
    /* The norm over a long buffer with a ragged end, accumulated in double. */
    enum { N = 1003 };
    static float ones[N];
    for (int i = 0; i < N; i++)
        ones[i] = (i % 2) ? 1.0f : -1.0f;
    assert_true(fabs(ody_grad_norm(ones, N) - sqrt(N)) < 1e-12);
    assert_true(fabs(ody_clip_grad_norm(ones, N, 1.0) - sqrt(N)) < 1e-12);
    assert_true(fabs(ody_grad_norm(ones, N) - 1.0) < 1e-6);
    assert_true(ody_grad_norm(ones, 0) == 0.0);
}

static void test_clip_grad_value_and_finite(void **state)
{
    (void)state;
    float g[6] = {-3.0f, 0.5f, 2.0f, -0.25f, 1.0f, NAN};
    ody_clip_grad_value(g, 6, 1.0);
    assert_true(g[0] == -1.0f && g[1] == 0.5f && g[2] == 1.0f && g[3] == -0.25f && g[4] == 1.0f);
    assert_true(isnan(g[5]));
    assert_false(ody_all_finite(g, 6));
    assert_true(ody_all_finite(g, 5));
    /* Every position of a long buffer (vector lanes and the tail). */
    enum { LONG = 150 }; /* past the 64 partial sums, with a tail */
    float many[LONG];
    for (int bad = 0; bad < LONG; bad++) {
        for (int i = 0; i < LONG; i++)
            many[i] = (float)i - 10.0f;
        assert_true(ody_all_finite(many, LONG));
        many[bad] = bad % 2 ? NAN : -INFINITY;
        assert_false(ody_all_finite(many, LONG));
    }
    float big[2] = {INFINITY, -INFINITY};
    ody_clip_grad_value(big, 2, 0.5);
    assert_true(big[0] == 0.5f && big[1] == -0.5f);
}

/* -------------------------------------------------------- loss scaling */

static void test_loss_scaler_skips_and_grows(void **state)
{
    (void)state;
    ody_loss_scaler s;
    ody_loss_scaler_init(&s, 65536);
    assert_true(s.enabled && s.scale == 65536 && s.growth_interval == 2000);
    assert_false(ody_loss_scaler_update(&s, true)); /* skip, back off */
    assert_true(s.scale == 32768);
    assert_int_equal(s.skipped_steps, 1);
    for (int i = 0; i < 1999; i++)
        assert_true(ody_loss_scaler_update(&s, false));
    assert_true(s.scale == 32768 && s.growth_events == 0);
    assert_false(ody_loss_scaler_update(&s, true)); /* the clean run starts over */
    assert_true(s.scale == 16384);
    for (int i = 0; i < 2000; i++)
        assert_true(ody_loss_scaler_update(&s, false));
    assert_true(s.scale == 32768);
    assert_int_equal(s.growth_events, 1);
    assert_int_equal(s.skipped_steps, 2);
    assert_int_equal(s.clean_steps, 0);
}

static void test_loss_scaler_unscale_and_save_load(void **state)
{
    (void)state;
    ody_loss_scaler s;
    ody_loss_scaler_init(&s, 1024);
    float g[3] = {1024.0f, -512.0f, 3.0f};
    assert_true(ody_loss_scaler_unscale(&s, g, 3));
    assert_true(g[0] == 1.0f && g[1] == -0.5f && g[2] == 3.0f / 1024.0f);
    float bad[2] = {1.0f, INFINITY};
    assert_false(ody_loss_scaler_unscale(&s, bad, 2));
    for (int i = 0; i < 7; i++)
        ody_loss_scaler_update(&s, i == 3);
    double v[ODY_LOSS_SCALER_STATE];
    assert_int_equal(ody_loss_scaler_save(&s, v), ODY_LOSS_SCALER_STATE);
    ody_loss_scaler t;
    ody_loss_scaler_init(&t, 1024);
    assert_false(ody_loss_scaler_load(&t, v, ODY_LOSS_SCALER_STATE - 1));
    assert_true(ody_loss_scaler_load(&t, v, ODY_LOSS_SCALER_STATE));
    assert_memory_equal(&s, &t, sizeof s);
    v[0] = 0;
    assert_false(ody_loss_scaler_load(&t, v, ODY_LOSS_SCALER_STATE));
}

static void test_loss_scaler_disabled(void **state)
{
    (void)state;
    ody_loss_scaler s;
    ody_loss_scaler_init(&s, 0);
    assert_false(s.enabled);
    assert_true(s.scale == 1.0);
    float g[2] = {2.0f, 3.0f};
    assert_true(ody_loss_scaler_unscale(&s, g, 2));
    assert_true(g[0] == 2.0f && g[1] == 3.0f);
    assert_false(ody_loss_scaler_update(&s, true));
    assert_int_equal(s.skipped_steps, 1);
    for (int i = 0; i < 2000; i++)
        assert_true(ody_loss_scaler_update(&s, false));
    assert_true(s.scale == 1.0 && s.growth_events == 0);
}

/* A test that gets an ody_ctx as its state. */
#define CTX(t) cmocka_unit_test_setup_teardown(t, ody_test_ctx_setup, ody_test_ctx_teardown)

static const struct CMUnitTest group[] = {
    cmocka_unit_test(test_kind_names),
    CTX(test_state_buffers_and_names),
    CTX(test_sgd_matches_reference),
    CTX(test_adam_matches_reference),
    CTX(test_adam_first_step_is_lr_times_sign),
    CTX(test_adamw_decay_is_decoupled),
    CTX(test_rmsprop_matches_reference),
    CTX(test_long_buffers_match_reference),
    CTX(test_levels_give_the_same_bits),
    CTX(test_optimizers_match_pytorch),
    CTX(test_restored_state_continues_the_run),
    cmocka_unit_test(test_schedule_names_and_defaults),
    CTX(test_epoch_schedules_match_pytorch),
    CTX(test_epoch_schedule_formulas),
    CTX(test_warmup_combines_with_schedules),
    CTX(test_plateau_matches_pytorch),
    CTX(test_plateau_threshold_and_mode_max),
    CTX(test_schedule_save_load_mid_run),
    CTX(test_schedule_init_rejects_bad_params),
    cmocka_unit_test(test_clip_grad_norm),
    cmocka_unit_test(test_clip_grad_value_and_finite),
    cmocka_unit_test(test_loss_scaler_skips_and_grows),
    cmocka_unit_test(test_loss_scaler_unscale_and_save_load),
    cmocka_unit_test(test_loss_scaler_disabled),
};

ODY_TEST_MAIN(group)
