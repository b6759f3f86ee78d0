/* optim: optimizer creation, state buffers and the update rules. */
#include "odyssey/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool ody_optimizer_kind_from_name(const char *name, ody_optimizer_kind *kind)
{
    if (strcmp(name, "sgd") == 0) {
        *kind = ODY_OPT_SGD;
        return true;
    }
    return false;
}

ody_status ody_optimizer_create(ody_ctx *ctx, const ody_optimizer_params *p, size_t n,
                                ody_optimizer **out)
{
    *out = NULL;
    ody_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the optimizer");
    opt->p = *p;
    opt->n = n;
    if (p->kind == ODY_OPT_SGD && p->momentum != 0.0)
        opt->state_names[opt->nstate++] = "momentum";
    for (int i = 0; i < opt->nstate; i++) {
        ody_status st = ody_arena_create(ctx, &opt->state[i], n, opt->state_names[i]);
        if (st != ODY_OK) {
            ody_optimizer_destroy(ctx, opt);
            return st;
        }
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

/* SGD as torch.optim.SGD: d = g + wd*p; b = mu*b + (1-damp)*d (b = d on the
 * first step); d = nesterov ? d + mu*b : b; p -= lr*d. */
static void sgd_step(ody_optimizer *opt, float *restrict p, const float *restrict g, float lr)
{
    const float wd = (float)opt->p.weight_decay, mu = (float)opt->p.momentum;
    const float damp = 1.0f - (float)opt->p.dampening;
    const size_t n = opt->n;
    if (opt->nstate == 0) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    float *restrict b = opt->state[0].data;
    if (opt->steps == 0) {
        for (size_t i = 0; i < n; i++)
            b[i] = g[i] + wd * p[i];
    } else {
        for (size_t i = 0; i < n; i++)
            b[i] = mu * b[i] + damp * (g[i] + wd * p[i]);
    }
    if (opt->p.nesterov) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * ((g[i] + wd * p[i]) + mu * b[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * b[i];
    }
}

void ody_optimizer_step(ody_optimizer *opt, float *params, const float *grads, double lr)
{
    switch (opt->p.kind) {
    case ODY_OPT_SGD:
        sgd_step(opt, params, grads, (float)lr);
        break;
    }
    opt->steps++;
}

double ody_grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

bool ody_all_finite(const float *g, size_t n)
{
    /* Sum of x*0 is NaN iff some x is inf or NaN; branch-free and vectorisable. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += g[i] * 0.0f;
    return acc == 0.0f;
}
