/*
 * optim: learning-rate schedules. The epoch-based kinds are PyTorch's
 * closed forms (the value its per-epoch scheduler.step() reaches at that
 * epoch); plateau follows ReduceLROnPlateau step by step; the warmup is
 * LinearLR stepped per optimizer step, multiplied in.
 */
#include "odyssey/optim.h"

#include <math.h>

#include "optim/optim_internal.h"

/* ReduceLROnPlateau's eps: a reduction smaller than this is ignored. */
#define PLATEAU_MIN_CHANGE 1e-8
/* pi to double precision (M_PI is not ISO C). */
#define PI 3.14159265358979323846

/* Layout of the saved state. */
enum { SAVED_KIND, SAVED_LR, SAVED_BEST, SAVED_BAD, SAVED_COOLDOWN, SAVED_ENDED, SAVED_COUNT };

static const char *const kind_names[] = {
    [ODY_SCHED_NONE] = "none",
    [ODY_SCHED_STEP] = "step",
    [ODY_SCHED_MULTISTEP] = "multistep",
    [ODY_SCHED_EXPONENTIAL] = "exponential",
    [ODY_SCHED_COSINE] = "cosine",
    [ODY_SCHED_PLATEAU] = "plateau",
    [ODY_SCHED_KIND_COUNT] = NULL,
};

const char *const *ody_schedule_names(void) { return kind_names; }

bool ody_schedule_kind_from_name(const char *name, ody_schedule_kind *kind)
{
    int k = ody_optim_name_index(kind_names, name);
    if (k >= 0)
        *kind = (ody_schedule_kind)k;
    return k >= 0;
}

void ody_schedule_params_default(ody_schedule_params *p)
{
    *p = (ody_schedule_params){.kind = ODY_SCHED_NONE, .step_size = 30, .gamma = 0.1,
                               .warmup_start_factor = 0.1, .factor = 0.1, .patience = 10,
                               .threshold = 1e-4};
}

/* ------------------------------------------------------------ checking */

static ody_status check_milestones(ody_ctx *ctx, const ody_schedule_params *p)
{
    if (p->nmilestones < 1 || p->nmilestones > ODY_SCHEDULE_MAX_MILESTONES)
        return ody_fail(ctx, ODY_ERR_CONFIG, "schedule: multistep needs 1 to %d milestones, got %d",
                        ODY_SCHEDULE_MAX_MILESTONES, p->nmilestones);
    for (int i = 0; i < p->nmilestones; i++)
        if (p->milestones[i] < 1 || (i > 0 && p->milestones[i] <= p->milestones[i - 1]))
            return ody_fail(ctx, ODY_ERR_CONFIG,
                            "schedule: milestones must be increasing epochs >= 1 (milestone %d "
                            "is %lld)",
                            i, (long long)p->milestones[i]);
    return ODY_OK;
}

/* The parameters the kind reads, and the warmup. */
static ody_status check_params(ody_ctx *ctx, const ody_schedule_params *p, double base_lr,
                               int64_t epochs)
{
    if ((int)p->kind < 0 || p->kind >= ODY_SCHED_KIND_COUNT)
        return ody_fail(ctx, ODY_ERR_CONFIG, "schedule: unknown kind %d", (int)p->kind);
    if (!(base_lr > 0.0) || !isfinite(base_lr) || epochs < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "schedule: needs lr > 0 and epochs >= 1 (got %g, %lld)", base_lr,
                        (long long)epochs);
    if (p->warmup_steps < 0 || (p->warmup_steps > 0 && !(p->warmup_start_factor > 0.0 &&
                                                          p->warmup_start_factor <= 1.0)))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "schedule: warmup needs warmup_steps >= 0 and a start factor in (0, 1]");
    bool decays = p->kind == ODY_SCHED_STEP || p->kind == ODY_SCHED_MULTISTEP ||
                  p->kind == ODY_SCHED_EXPONENTIAL;
    if (decays && !(p->gamma > 0.0 && isfinite(p->gamma)))
        return ody_fail(ctx, ODY_ERR_CONFIG, "schedule: gamma must be > 0 (got %g)", p->gamma);
    if (p->kind == ODY_SCHED_STEP && p->step_size < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "schedule: step_size must be >= 1 (got %lld)",
                        (long long)p->step_size);
    if (p->kind == ODY_SCHED_MULTISTEP)
        return check_milestones(ctx, p);
    if (p->kind == ODY_SCHED_COSINE && (p->t_max < 0 || !(p->eta_min >= 0.0)))
        return ody_fail(ctx, ODY_ERR_CONFIG, "schedule: cosine needs t_max >= 0 and eta_min >= 0");
    if (p->kind == ODY_SCHED_PLATEAU &&
        (!(p->factor > 0.0 && p->factor < 1.0) || p->patience < 0 || p->cooldown < 0 ||
         !(p->threshold >= 0.0) || !(p->min_lr >= 0.0)))
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "schedule: plateau needs factor in (0, 1), patience, cooldown, threshold "
                        "and min_lr >= 0");
    return ODY_OK;
}

ody_status ody_schedule_init(ody_ctx *ctx, ody_schedule *s, const ody_schedule_params *p,
                             double base_lr, int64_t epochs)
{
    ody_status st = check_params(ctx, p, base_lr, epochs);
    if (st != ODY_OK)
        return st;
    *s = (ody_schedule){.p = *p, .base_lr = base_lr, .epochs = epochs, .plateau_lr = base_lr,
                        .best = p->maximize ? -INFINITY : INFINITY};
    return ODY_OK;
}

/* ---------------------------------------------------------------- rates */

/* Milestones at or before epoch (bisect_right of MultiStepLR's closed form). */
static int milestones_passed(const ody_schedule_params *p, int64_t epoch)
{
    int passed = 0;
    for (int i = 0; i < p->nmilestones; i++)
        passed += p->milestones[i] <= epoch;
    return passed;
}

static double cosine_lr(const ody_schedule *s, int64_t epoch)
{
    double t_max = (double)(s->p.t_max > 0 ? s->p.t_max : s->epochs);
    double eta_min = s->p.eta_min;
    return eta_min + (s->base_lr - eta_min) * (1.0 + cos(PI * (double)epoch / t_max)) / 2.0;
}

/* The scheduled lr of an epoch, before warmup. */
static double epoch_lr(const ody_schedule *s, int64_t epoch)
{
    const ody_schedule_params *p = &s->p;
    switch (p->kind) {
    case ODY_SCHED_STEP:
        return s->base_lr * pow(p->gamma, (double)(epoch / p->step_size));
    case ODY_SCHED_MULTISTEP:
        return s->base_lr * pow(p->gamma, milestones_passed(p, epoch));
    case ODY_SCHED_EXPONENTIAL:
        return s->base_lr * pow(p->gamma, (double)epoch);
    case ODY_SCHED_COSINE:
        return cosine_lr(s, epoch);
    case ODY_SCHED_PLATEAU:
        return s->plateau_lr;
    case ODY_SCHED_NONE:
    case ODY_SCHED_KIND_COUNT:
        break;
    }
    return s->base_lr;
}

/* LinearLR(start_factor, 1, warmup_steps) at optimizer step `step`. */
static double warmup_factor(const ody_schedule_params *p, int64_t step)
{
    if (p->warmup_steps <= 0 || step >= p->warmup_steps)
        return 1.0;
    double start = p->warmup_start_factor;
    return start + (1.0 - start) * (double)(step < 0 ? 0 : step) / (double)p->warmup_steps;
}

double ody_schedule_lr(const ody_schedule *s, int64_t global_step, int64_t epoch)
{
    return epoch_lr(s, epoch < 0 ? 0 : epoch) * warmup_factor(&s->p, global_step);
}

/* ------------------------------------------------------------- plateau */

/* ReduceLROnPlateau's is_better in threshold_mode "rel". */
static bool plateau_better(const ody_schedule *s, double metric)
{
    if (s->p.maximize)
        return metric > s->best * (1.0 + s->p.threshold);
    return metric < s->best * (1.0 - s->p.threshold);
}

void ody_schedule_epoch_end(ody_schedule *s, double metric)
{
    if (s->p.kind != ODY_SCHED_PLATEAU)
        return;
    s->epochs_ended++;
    if (plateau_better(s, metric)) {
        s->best = metric;
        s->bad_epochs = 0;
    } else {
        s->bad_epochs++;
    }
    if (s->cooldown_left > 0) {
        s->cooldown_left--;
        s->bad_epochs = 0;
    }
    if (s->bad_epochs > s->p.patience) {
        double reduced = fmax(s->plateau_lr * s->p.factor, s->p.min_lr);
        if (s->plateau_lr - reduced > PLATEAU_MIN_CHANGE)
            s->plateau_lr = reduced;
        s->cooldown_left = s->p.cooldown;
        s->bad_epochs = 0;
    }
}

/* ---------------------------------------------------------- checkpoints */

int ody_schedule_save(const ody_schedule *s, double *v)
{
    v[SAVED_KIND] = (double)s->p.kind;
    v[SAVED_LR] = s->plateau_lr;
    v[SAVED_BEST] = s->best;
    v[SAVED_BAD] = (double)s->bad_epochs;
    v[SAVED_COOLDOWN] = (double)s->cooldown_left;
    v[SAVED_ENDED] = (double)s->epochs_ended;
    return SAVED_COUNT;
}

bool ody_schedule_load(ody_schedule *s, const double *v, int n)
{
    if (n < SAVED_COUNT || v[SAVED_KIND] != (double)s->p.kind || !(v[SAVED_LR] > 0.0) ||
        !isfinite(v[SAVED_LR]) || isnan(v[SAVED_BEST]) || !ody_optim_is_count(v[SAVED_BAD]) ||
        !ody_optim_is_count(v[SAVED_COOLDOWN]) || !ody_optim_is_count(v[SAVED_ENDED]))
        return false;
    s->plateau_lr = v[SAVED_LR];
    s->best = v[SAVED_BEST];
    s->bad_epochs = (int64_t)v[SAVED_BAD];
    s->cooldown_left = (int64_t)v[SAVED_COOLDOWN];
    s->epochs_ended = (int64_t)v[SAVED_ENDED];
    return true;
}
