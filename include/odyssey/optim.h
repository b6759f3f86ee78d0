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

/* ================================================= learning-rate schedules */

typedef enum {
    ODY_SCHED_NONE = 0,    /* constant: base_lr */
    ODY_SCHED_STEP,        /* base_lr * gamma^floor(epoch / step_size)                  (StepLR) */
    ODY_SCHED_MULTISTEP,   /* base_lr * gamma^(milestones <= epoch)                 (MultiStepLR) */
    ODY_SCHED_EXPONENTIAL, /* base_lr * gamma^epoch                              (ExponentialLR) */
    ODY_SCHED_COSINE,      /* eta_min + (base_lr - eta_min) * (1 + cos(pi*epoch/t_max)) / 2
                              (CosineAnnealingLR; past t_max it rises again, as PyTorch's does) */
    ODY_SCHED_PLATEAU,     /* reduce on plateau of a metric fed at epoch ends (ReduceLROnPlateau) */
    ODY_SCHED_KIND_COUNT
} ody_schedule_kind;

#define ODY_SCHEDULE_MAX_MILESTONES 16
#define ODY_SCHEDULE_STATE_MAX 16

typedef struct {
    ody_schedule_kind kind;
    int64_t step_size;         /* step: epochs between decays (>= 1) */
    double gamma;              /* step, multistep, exponential: decay factor (> 0) */
    int nmilestones;           /* multistep: epochs at which lr decays, increasing, >= 1 */
    int64_t milestones[ODY_SCHEDULE_MAX_MILESTONES];
    int64_t t_max;             /* cosine: epochs of the half period (0: the run's epochs) */
    double eta_min;            /* cosine: the lowest lr */
    int64_t warmup_steps;      /* any kind: linear warmup over this many optimizer steps (0: off) */
    double warmup_start_factor; /* warmup starts at this fraction of the scheduled lr, in (0, 1] */
    bool maximize;             /* plateau: the metric should grow (accuracy), not shrink (loss) */
    double factor;             /* plateau: lr *= factor on a plateau, in (0, 1) */
    int64_t patience;          /* plateau: epochs without improvement tolerated */
    double threshold;          /* plateau: relative improvement that counts (>= 0) */
    int64_t cooldown;          /* plateau: epochs after a reduction during which nothing counts */
    double min_lr;             /* plateau: the lr never drops below this */
} ody_schedule_params;

/*
 * A schedule: the lr of every optimizer step. Epoch-based kinds change at
 * epoch boundaries, as a per-epoch scheduler.step() does in PyTorch; the
 * warmup, when on, multiplies the scheduled lr by
 *   f(s) = warmup_start_factor + (1 - warmup_start_factor) * min(s, warmup_steps) / warmup_steps
 * for optimizer step s (0-based), as LinearLR(start_factor, 1, warmup_steps)
 * stepped once per optimizer step and chained with the epoch schedule.
 * Plateau holds its current lr and counters (the only state); every other
 * kind is a pure function of (params, step, epoch).
 */
typedef struct {
    ody_schedule_params p;
    double base_lr;
    int64_t epochs;       /* of the run: cosine's t_max when p.t_max is 0 */
    /* plateau state, as ReduceLROnPlateau's */
    double plateau_lr;    /* current lr, before warmup */
    double best;          /* best metric so far (+inf for min, -inf for max at the start) */
    int64_t bad_epochs;   /* epochs since the best, cooldown excluded */
    int64_t cooldown_left;
    int64_t epochs_ended; /* ody_schedule_epoch_end calls */
} ody_schedule;

/* Schedule kind from its config name (none, step, multistep, exponential, cosine, plateau). */
bool ody_schedule_kind_from_name(const char *name, ody_schedule_kind *kind);
/* The config names of the kinds, indexed by kind, NULL-terminated; static. */
const char *const *ody_schedule_names(void);
/*
 * Defaults: kind none, step_size 30, gamma 0.1, no milestones, t_max 0,
 * eta_min 0, no warmup (start factor 0.1), minimize, factor 0.1,
 * patience 10, threshold 1e-4, cooldown 0, min_lr 0.
 */
void ody_schedule_params_default(ody_schedule_params *p);

/*
 * Set up *s for a run of `epochs` epochs at learning rate base_lr. Checks
 * the parameters: an error (ODY_ERR_CONFIG, naming the parameter) leaves
 * *s unusable.
 */
ody_status ody_schedule_init(ody_ctx *ctx, ody_schedule *s, const ody_schedule_params *p,
                             double base_lr, int64_t epochs);
/*
 * The lr for optimizer step global_step (0-based, counted over the whole
 * run) taken in epoch `epoch` (0-based). Pure for all kinds but plateau,
 * whose lr is the one its last epoch_end left.
 */
double ody_schedule_lr(const ody_schedule *s, int64_t global_step, int64_t epoch);
/*
 * Plateau: feed the monitored metric at the end of an epoch (lr changes
 * take effect from the next step). As ReduceLROnPlateau.step(metric):
 * better means metric < best*(1 - threshold) (minimize) or
 * metric > best*(1 + threshold) (maximize); a better metric resets the bad
 * epochs, another adds one; during cooldown bad epochs stay 0; when bad
 * epochs exceed patience, lr = max(lr*factor, min_lr) (unchanged when that
 * moves it by less than 1e-8), cooldown starts and bad epochs reset. A NaN
 * metric is never better. Other kinds ignore the call.
 */
void ody_schedule_epoch_end(ody_schedule *s, double metric);
/*
 * Checkpoint state: writes at most ODY_SCHEDULE_STATE_MAX doubles to v and
 * returns how many (the kind, then plateau's lr, best, counters).
 */
int ody_schedule_save(const ody_schedule *s, double *v);
/*
 * Restore what ody_schedule_save wrote (n values) into a schedule set up
 * with ody_schedule_init. Returns false, leaving *s unchanged, when n is
 * too small or the saved kind is not s's kind.
 */
bool ody_schedule_load(ody_schedule *s, const double *v, int n);

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

/* ========================================================== loss scaling */

/*
 * Dynamic loss scaling for fp16 gradients, as torch.cuda.amp.GradScaler:
 * the loss is multiplied by `scale` before backward and the gradients by
 * 1/scale after. A step whose gradients hold inf or NaN is skipped and the
 * scale multiplied by backoff_factor; after growth_interval clean steps in
 * a row the scale is multiplied by growth_factor (when the result is
 * finite). init_scale 0 disables scaling: scale stays 1, no growth,
 * non-finite steps are still reported as skipped.
 */
typedef struct {
    double scale;
    double growth_factor;    /* 2 */
    double backoff_factor;   /* 0.5 */
    int64_t growth_interval; /* 2000 */
    bool enabled;
    int64_t clean_steps;     /* clean steps since the last growth or skip */
    int64_t skipped_steps;   /* in all */
    int64_t growth_events;   /* in all */
} ody_loss_scaler;

#define ODY_LOSS_SCALER_STATE 4

/* Scaler at init_scale (> 0; 0 disables) with PyTorch's defaults (2, 0.5, 2000). */
void ody_loss_scaler_init(ody_loss_scaler *s, double init_scale);
/*
 * Multiply g[0..n) by 1/scale (in float, as GradScaler.unscale_ does).
 * Returns true when every result is finite. Disabled: only the check.
 */
bool ody_loss_scaler_unscale(const ody_loss_scaler *s, float *g, size_t n);
/*
 * After the gradients of a step are known: returns whether the optimizer
 * step should be applied (false when found_nonfinite: skipped, scale
 * backed off), and grows the scale after growth_interval clean steps.
 * Call once per optimizer step, on every rank with the same flag.
 */
bool ody_loss_scaler_update(ody_loss_scaler *s, bool found_nonfinite);
/* Checkpoint state: writes ODY_LOSS_SCALER_STATE doubles (scale, clean, skipped, growths). */
int ody_loss_scaler_save(const ody_loss_scaler *s, double *v);
/* Restore it; false (s unchanged) when n is too small or the scale is not finite and > 0. */
bool ody_loss_scaler_load(ody_loss_scaler *s, const double *v, int n);

#endif /* ODYSSEY_OPTIM_H */
