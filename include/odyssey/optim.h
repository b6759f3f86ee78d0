/*
 * optim: optimizers over flat buffers, learning-rate schedules, gradient
 * clipping and dynamic loss scaling.
 *
 * An optimizer updates the whole parameter buffer from the whole gradient
 * buffer in one call; its state (momentum, moments) is one flat buffer per
 * kind of state, laid out like the parameters, so checkpoints and
 * consistency checks act on whole buffers. Every update is element-wise,
 * so ranks holding identical parameters and gradients stay identical.
 *
 * The update rules are PyTorch 1.13's (the algorithm boxes of the
 * torch.optim documentation), computed in float with the per-step scalars
 * (bias corrections, step sizes) in double.
 */
#ifndef ODYSSEY_OPTIM_H
#define ODYSSEY_OPTIM_H

#include "odyssey/core.h"
#include "odyssey/tensor.h"

/* ============================================================ optimizers */

typedef enum {
    ODY_OPT_SGD = 0,
    ODY_OPT_ADAM,
    ODY_OPT_ADAMW,
    ODY_OPT_RMSPROP,
    ODY_OPT_KIND_COUNT
} ody_optimizer_kind;

/*
 * Hyper-parameters. Each kind reads only its own fields; the others are
 * ignored. ody_optimizer_params_default gives PyTorch's defaults.
 */
typedef struct {
    ody_optimizer_kind kind;
    double momentum;     /* sgd, rmsprop (0: none) */
    double dampening;    /* sgd */
    double weight_decay; /* sgd, adam, rmsprop: L2 added to the gradient; adamw: decoupled */
    bool nesterov;       /* sgd: needs momentum > 0 and dampening 0 */
    double beta1, beta2; /* adam, adamw: decay of the first and second moments */
    double eps;          /* adam, adamw, rmsprop: added to the denominator */
    double alpha;        /* rmsprop: decay of the squared-gradient average */
    bool centered;       /* rmsprop: divide by the estimated variance, not the raw second moment */
} ody_optimizer_params;

#define ODY_OPT_MAX_STATE 3

/*
 * State buffers and their checkpoint names, in this order:
 *   sgd      "momentum" (when momentum > 0)
 *   adam     "exp_avg", "exp_avg_sq"
 *   adamw    "exp_avg", "exp_avg_sq"
 *   rmsprop  "square_avg", then "momentum_buffer" (when momentum > 0),
 *            then "grad_avg" (when centered)
 * All start at zero. `steps` is part of the state too: SGD initialises its
 * momentum from the first gradient when steps is 0, and Adam's bias
 * correction uses steps + 1; a resumed run restores it with the buffers.
 */
typedef struct {
    ody_optimizer_params p;
    size_t n;                          /* floats in the parameter buffer */
    int nstate;                        /* state buffers in use */
    const char *state_names[ODY_OPT_MAX_STATE]; /* static strings (checkpoint names) */
    ody_arena state[ODY_OPT_MAX_STATE];         /* each n floats, 64-byte aligned */
    int64_t steps;                     /* updates applied so far */
} ody_optimizer;

/* Optimizer kind from its config name (sgd, adam, adamw, rmsprop); false when unknown. */
bool ody_optimizer_kind_from_name(const char *name, ody_optimizer_kind *kind);
/* The config names of the kinds, indexed by kind, NULL-terminated; static. */
const char *const *ody_optimizer_names(void);
/*
 * PyTorch's defaults for a kind: momentum 0, dampening 0, weight_decay 0
 * (also for adamw, whose PyTorch default is 0.01: weight decay is always
 * asked for explicitly here), nesterov false, betas (0.9, 0.999),
 * eps 1e-8, alpha 0.99, centered false.
 */
void ody_optimizer_params_default(ody_optimizer_params *p, ody_optimizer_kind kind);

/*
 * Create an optimizer for a parameter buffer of n floats, its state
 * buffers zeroed and steps 0. Returns ODY_OK and sets *out, or
 * ODY_ERR_NOMEM / ODY_ERR_CONFIG (an unknown kind) with nothing to release.
 */
ody_status ody_optimizer_create(ody_ctx *ctx, const ody_optimizer_params *p, size_t n,
                                ody_optimizer **out);
/* Release (NULL is fine). */
void ody_optimizer_destroy(ody_ctx *ctx, ody_optimizer *opt);
/*
 * One update of params[0..n) from grads[0..n) at learning rate lr, then
 * steps++. The rules, with g the gradient, p the parameter, t = steps + 1:
 *   sgd:     g += wd*p; b = (t == 1) ? g : mu*b + (1 - dampening)*g;
 *            g = nesterov ? g + mu*b : b (when mu > 0); p -= lr*g
 *   adam:    g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 *            p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw:   p *= 1 - lr*wd, then adam with no L2 term
 *   rmsprop: g += wd*p; v = alpha*v + (1-alpha)*g*g;
 *            centered: ga = alpha*ga + (1-alpha)*g, d = sqrt(v - ga*ga) + eps
 *            else d = sqrt(v) + eps;
 *            momentum > 0: b = mu*b + g/d, p -= lr*b; else p -= lr*g/d
 * (rmsprop centered: v - ga*ga is clamped at 0, where rounding could make
 * it negative and PyTorch would produce NaN.) params and grads should be
 * 64-byte aligned (the arenas are) and must not overlap.
 */
void ody_optimizer_step(ody_optimizer *opt, float *params, const float *grads, double lr);

/* ============================================================== gradients */

/* Global L2 norm of g[0..n), accumulated in double (same result on every machine). */
double ody_grad_norm(const float *g, size_t n);
/* True when every g[i] is finite. */
bool ody_all_finite(const float *g, size_t n);
/*
 * As torch.nn.utils.clip_grad_norm_: with norm = ody_grad_norm(g, n),
 * c = max_norm / (norm + 1e-6); when c < 1, g *= c. Returns the norm
 * before clipping. A non-finite norm leaves g unchanged (the caller's
 * non-finite policy decides); so does max_norm <= 0.
 */
double ody_clip_grad_norm(float *g, size_t n, double max_norm);
/* As torch.nn.utils.clip_grad_value_: g[i] clamped to [-clip, clip]; NaN stays NaN. */
void ody_clip_grad_value(float *g, size_t n, double clip);

#endif /* ODYSSEY_OPTIM_H */
