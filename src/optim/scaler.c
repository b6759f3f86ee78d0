/* optim: dynamic loss scaling for fp16 gradients (torch.cuda.amp.GradScaler's rule). */
#include "odyssey/optim.h"

#include <math.h>

#include "optim/optim_internal.h"

/* Layout of the saved state. */
enum { SAVED_SCALE, SAVED_CLEAN, SAVED_SKIPPED, SAVED_GROWTHS };

void ody_loss_scaler_init(ody_loss_scaler *s, double init_scale)
{
    bool enabled = init_scale > 0.0 && isfinite(init_scale);
    *s = (ody_loss_scaler){.scale = enabled ? init_scale : 1.0, .growth_factor = 2.0,
                           .backoff_factor = 0.5, .growth_interval = 2000, .enabled = enabled};
}

/* g *= c; returns true when every result is finite. */
static bool scale_and_check(float *restrict g, size_t n, float c)
{
    for (size_t i = 0; i < n; i++)
        g[i] *= c;
    return ody_all_finite(g, n); /* vectorised; a fused single-sum loop is not */
}

bool ody_loss_scaler_unscale(const ody_loss_scaler *s, float *g, size_t n)
{
    if (!s->enabled)
        return ody_all_finite(g, n);
    /* GradScaler takes the reciprocal in float and multiplies. */
    return scale_and_check(g, n, 1.0f / (float)s->scale);
}

bool ody_loss_scaler_update(ody_loss_scaler *s, bool found_nonfinite)
{
    if (found_nonfinite) {
        s->skipped_steps++;
        s->clean_steps = 0;
        if (s->enabled)
            s->scale *= s->backoff_factor;
        return false;
    }
    if (!s->enabled)
        return true;
    if (++s->clean_steps >= s->growth_interval) {
        double grown = s->scale * s->growth_factor;
        if (isfinite(grown)) {
            s->scale = grown;
            s->growth_events++;
        }
        s->clean_steps = 0;
    }
    return true;
}

int ody_loss_scaler_save(const ody_loss_scaler *s, double *v)
{
    v[SAVED_SCALE] = s->scale;
    v[SAVED_CLEAN] = (double)s->clean_steps;
    v[SAVED_SKIPPED] = (double)s->skipped_steps;
    v[SAVED_GROWTHS] = (double)s->growth_events;
    return ODY_LOSS_SCALER_STATE;
}

bool ody_loss_scaler_load(ody_loss_scaler *s, const double *v, int n)
{
    if (n < ODY_LOSS_SCALER_STATE || !(v[SAVED_SCALE] > 0.0) || !isfinite(v[SAVED_SCALE]) ||
        !ody_optim_is_count(v[SAVED_CLEAN]) || !ody_optim_is_count(v[SAVED_SKIPPED]) ||
        !ody_optim_is_count(v[SAVED_GROWTHS]))
        return false;
    if (s->enabled)
        s->scale = v[SAVED_SCALE];
    s->clean_steps = (int64_t)v[SAVED_CLEAN];
    s->skipped_steps = (int64_t)v[SAVED_SKIPPED];
    s->growth_events = (int64_t)v[SAVED_GROWTHS];
    return true;
}
