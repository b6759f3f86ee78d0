/*
 * optim: optimizer creation, state buffers and the update rules.
 *
 * Each rule is a few passes of element-wise loops over restrict-qualified
 * flat buffers with the per-step scalars hoisted out, so the compiler
 * vectorises every loop and the result of element i depends on element i
 * only (the same on every rank, whatever the vector width).
 */
#include "odyssey/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_internal.h"

/*
 * The rules are inlined into two copies of the step: one for the build's
 * baseline and one compiled for AVX-512 (a target attribute), run where
 * the CPU has it (ody_cpu_isa_active, so ODY_CPU_ISA lowers it too). Both
 * are the same element-wise C, so they give the same bits: this file is
 * ISO C (-std=c11, no contraction into FMAs) and the vector width changes
 * only how many elements go at once.
 */
#define RULE static inline __attribute__((always_inline))

static const char *const kind_names[] = {
    [ODY_OPT_SGD] = "sgd",
    [ODY_OPT_ADAM] = "adam",
    [ODY_OPT_ADAMW] = "adamw",
    [ODY_OPT_RMSPROP] = "rmsprop",
    [ODY_OPT_KIND_COUNT] = NULL,
};

const char *const *ody_optimizer_names(void) { return kind_names; }

bool ody_optimizer_kind_from_name(const char *name, ody_optimizer_kind *kind)
{
    int k = ody_optim_name_index(kind_names, name);
    if (k >= 0)
        *kind = (ody_optimizer_kind)k;
    return k >= 0;
}

void ody_optimizer_params_default(ody_optimizer_params *p, ody_optimizer_kind kind)
{
    *p = (ody_optimizer_params){.kind = kind, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                .alpha = 0.99};
}

/* The names of the state buffers a kind needs, in checkpoint order; returns how many. */
static int state_layout(const ody_optimizer_params *p, const char *names[ODY_OPT_MAX_STATE])
{
    int n = 0;
    switch (p->kind) {
    case ODY_OPT_SGD:
        if (p->momentum != 0.0)
            names[n++] = "momentum";
        break;
    case ODY_OPT_ADAM:
    case ODY_OPT_ADAMW:
        names[n++] = "exp_avg";
        names[n++] = "exp_avg_sq";
        break;
    case ODY_OPT_RMSPROP:
        names[n++] = "square_avg";
        if (p->momentum > 0.0)
            names[n++] = "momentum_buffer";
        if (p->centered)
            names[n++] = "grad_avg";
        break;
    case ODY_OPT_KIND_COUNT:
        break;
    }
    return n;
}

ody_status ody_optimizer_create(ody_ctx *ctx, const ody_optimizer_params *p, size_t n,
                                ody_optimizer **out)
{
    *out = NULL;
    if ((int)p->kind < 0 || p->kind >= ODY_OPT_KIND_COUNT)
        return ody_fail(ctx, ODY_ERR_CONFIG, "unknown optimizer kind %d", (int)p->kind);
    ody_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the optimizer");
    opt->p = *p;
    opt->n = n;
    opt->nstate = state_layout(p, opt->state_names);
    for (int i = 0; i < opt->nstate; i++) {
        ody_status st = ody_arena_create(ctx, &opt->state[i], n, opt->state_names[i]);
        if (st != ODY_OK) {
            ody_optimizer_destroy(ctx, opt);
            return st;
        }
        opt->state[i].size = opt->state[i].capacity;
    }
    *out = opt;
    return ODY_OK;
}

void ody_optimizer_destroy(ody_ctx *ctx, ody_optimizer *opt)
{
    if (!opt)
        return;
    for (int i = 0; i < opt->nstate; i++)
        ody_arena_destroy(ctx, &opt->state[i]);
    free(opt);
}

/* The state buffer called name (NULL when the optimizer has none). */
static float *state_buffer(ody_optimizer *opt, const char *name)
{
    for (int i = 0; i < opt->nstate; i++)
        if (strcmp(opt->state_names[i], name) == 0)
            return opt->state[i].data;
    return NULL;
}

/* ------------------------------------------------------------------ sgd */

/* p -= lr * (g + wd*p): SGD without momentum. */
RULE void sgd_plain(float *restrict p, const float *restrict g, size_t n, float lr, float wd)
{
    for (size_t i = 0; i < n; i++)
        p[i] -= lr * (g[i] + wd * p[i]);
}

/*
 * SGD with momentum as torch.optim.SGD: d = g + wd*p; b = mu*b + (1-damp)*d
 * (b = d on the first step); p -= lr * (nesterov ? d + mu*b : b).
 */
RULE void sgd_momentum(float *restrict p, const float *restrict g, float *restrict b, size_t n,
                         const ody_optimizer_params *hp, bool first, float lr)
{
    const float wd = (float)hp->weight_decay, mu = (float)hp->momentum;
    const float keep = first ? 0.0f : mu, take = first ? 1.0f : 1.0f - (float)hp->dampening;
    /* First step: b = d (keep 0, take 1); the buffer is still zero then, so
     * keep*b adds nothing. One pass over p, g and b. */
    if (hp->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            b[i] = keep * b[i] + take * d;
            p[i] -= lr * (d + mu * b[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            b[i] = keep * b[i] + take * (g[i] + wd * p[i]);
            p[i] -= lr * b[i];
        }
    }
}

/* ----------------------------------------------------------------- adam */

/*
 * Adam as torch.optim.Adam (amsgrad off), one step t >= 1. wd is the L2
 * term added to the gradient (0 for AdamW); decay scales p first (AdamW's
 * decoupled weight decay, 1 - lr*wd; 1 for Adam), in the same pass.
 */
RULE void adam_update(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, size_t n, const ody_optimizer_params *hp, float wd,
                        float decay, int64_t t, double lr)
{
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    const float one_b1 = (float)(1.0 - hp->beta1), one_b2 = (float)(1.0 - hp->beta2);
    const double bias1 = 1.0 - pow(hp->beta1, (double)t), bias2 = 1.0 - pow(hp->beta2, (double)t);
    const float step_size = (float)(lr / bias1), bias2_sqrt = (float)sqrt(bias2);
    for (size_t i = 0; i < n; i++) {
        float q = p[i] * decay;
        float d = g[i] + wd * q;
        m[i] = b1 * m[i] + one_b1 * d;
        v[i] = b2 * v[i] + one_b2 * (d * d);
        p[i] = q - step_size * m[i] / (sqrtf(v[i]) / bias2_sqrt + eps);
    }
}

/* -------------------------------------------------------------- rmsprop */

/*
 * RMSprop as torch.optim.RMSprop, first half: d = g + wd*p,
 * v = alpha*v + (1-alpha)*d*d, q = d / (sqrt(v) + eps); centered also
 * ga = alpha*ga + (1-alpha)*d and q = d / (sqrt(max(v - ga*ga, 0)) + eps).
 */
RULE void rmsprop_quotient(const float *restrict p, const float *restrict g, float *restrict v,
                             float *restrict ga, float *restrict q, size_t n,
                             const ody_optimizer_params *hp)
{
    const float wd = (float)hp->weight_decay, eps = (float)hp->eps;
    const float alpha = (float)hp->alpha, one_alpha = (float)(1.0 - hp->alpha);
    if (ga) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            v[i] = alpha * v[i] + one_alpha * (d * d);
            ga[i] = alpha * ga[i] + one_alpha * d;
            float var = v[i] - ga[i] * ga[i];
            var = var < 0.0f ? 0.0f : var; /* a compare, not fmaxf: it vectorises and keeps NaN */
            q[i] = d / (sqrtf(var) + eps);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            v[i] = alpha * v[i] + one_alpha * (d * d);
            q[i] = d / (sqrtf(v[i]) + eps);
        }
    }
}

/* p -= lr*q, or with momentum b = mu*b + q; p -= lr*b. */
RULE void rmsprop_apply(float *restrict p, float *restrict b, const float *restrict q, size_t n,
                          float mu, float lr)
{
    if (b) {
        for (size_t i = 0; i < n; i++) {
            b[i] = mu * b[i] + q[i];
            p[i] -= lr * b[i];
        }
    } else {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * q[i];
    }
}

/*
 * RMSprop a chunk at a time: the quotients d/denominator of a chunk go to
 * a scratch that stays in L1, then into p (through the momentum buffer).
 */
RULE void rmsprop_update(ody_optimizer *opt, float *p, const float *g, float lr)
{
    enum { CHUNK = 1024 };
    _Alignas(64) float q[CHUNK];
    float *v = state_buffer(opt, "square_avg");
    float *b = state_buffer(opt, "momentum_buffer");
    float *ga = state_buffer(opt, "grad_avg");
    for (size_t at = 0; at < opt->n; at += CHUNK) {
        size_t len = opt->n - at < CHUNK ? opt->n - at : CHUNK;
        rmsprop_quotient(p + at, g + at, v + at, ga ? ga + at : NULL, q, len, &opt->p);
        rmsprop_apply(p + at, b ? b + at : NULL, q, len, (float)opt->p.momentum, lr);
    }
}

/* ----------------------------------------------------------------- step */

/* The update, and the step count after it. */
RULE void apply_rule(ody_optimizer *opt, float *params, const float *grads, double lr)
{
    const ody_optimizer_params *hp = &opt->p;
    const int64_t t = opt->steps + 1;
    switch (hp->kind) {
    case ODY_OPT_SGD:
        if (opt->nstate == 0)
            sgd_plain(params, grads, opt->n, (float)lr, (float)hp->weight_decay);
        else
            sgd_momentum(params, grads, opt->state[0].data, opt->n, hp, opt->steps == 0,
                         (float)lr);
        break;
    case ODY_OPT_ADAM:
        adam_update(params, grads, opt->state[0].data, opt->state[1].data, opt->n, hp,
                    (float)hp->weight_decay, 1.0f, t, lr);
        break;
    case ODY_OPT_ADAMW: /* p *= 1 - lr*wd, then Adam without the L2 term */
        adam_update(params, grads, opt->state[0].data, opt->state[1].data, opt->n, hp, 0.0f,
                    (float)(1.0 - lr * hp->weight_decay), t, lr);
        break;
    case ODY_OPT_RMSPROP:
        rmsprop_update(opt, params, grads, (float)lr);
        break;
    case ODY_OPT_KIND_COUNT:
        return;
    }
    opt->steps++;
}

static void step_baseline(ody_optimizer *opt, float *params, const float *grads, double lr)
{
    apply_rule(opt, params, grads, lr);
}

#ifdef ODY_TARGET_AVX512
ODY_TARGET_AVX512 static void step_avx512(ody_optimizer *opt, float *params, const float *grads, double lr)
{
    apply_rule(opt, params, grads, lr);
}
#endif

void ody_optimizer_step_at(ody_optimizer *opt, float *params, const float *grads, double lr, ody_cpu_isa isa)
{
#ifdef ODY_TARGET_AVX512
    if (isa >= ODY_ISA_AVX512 && ody_cpu_isa_best() >= ODY_ISA_AVX512) { /* never code this CPU lacks */
        step_avx512(opt, params, grads, lr);
        return;
    }
#endif
    (void)isa;
    step_baseline(opt, params, grads, lr);
}

void ody_optimizer_step(ody_optimizer *opt, float *params, const float *grads, double lr)
{
    ody_optimizer_step_at(opt, params, grads, lr, ody_cpu_isa_active());
}
