/*
 * optim: optimizers over flat buffers, learning-rate schedules and
 * gradient clipping.
 *
 * An optimizer updates the whole parameter buffer from the whole gradient
 * buffer in one call; its state (momentum, moments) is one flat buffer per
 * kind of state, laid out like the parameters, so checkpoints and
 * consistency checks act on whole buffers. Every update is element-wise,
 * so ranks holding identical parameters and gradients stay identical.
 */
#ifndef ODYSSEY_OPTIM_H
#define ODYSSEY_OPTIM_H

#include "odyssey/core.h"
#include "odyssey/tensor.h"

typedef enum { ODY_OPT_SGD = 0 } ody_optimizer_kind;

typedef struct {
    ody_optimizer_kind kind;
    double momentum;
    double dampening;
    double weight_decay;
    bool nesterov;
} ody_optimizer_params;

#define ODY_OPT_MAX_STATE 3

typedef struct {
    ody_optimizer_params p;
    size_t n;                          /* floats in the parameter buffer */
    int nstate;                        /* state buffers in use */
    const char *state_names[ODY_OPT_MAX_STATE]; /* "momentum", ... (checkpoint names) */
    ody_arena state[ODY_OPT_MAX_STATE];
    int64_t steps;                     /* updates applied so far */
} ody_optimizer;

/* Optimizer kind from its config name ("sgd"); false when unknown. */
bool ody_optimizer_kind_from_name(const char *name, ody_optimizer_kind *kind);

/* Create an optimizer for a parameter buffer of n floats (state zeroed). */
ody_status ody_optimizer_create(ody_ctx *ctx, const ody_optimizer_params *p, size_t n,
                                ody_optimizer **out);
/* Release (NULL is fine). */
void ody_optimizer_destroy(ody_ctx *ctx, ody_optimizer *opt);
/*
 * One update of params[0..n) from grads[0..n) at learning rate lr, by the
 * published rule of the kind (SGD as in PyTorch: weight decay added to the
 * gradient, momentum buffer initialised with the first gradient,
 * dampening, Nesterov).
 */
void ody_optimizer_step(ody_optimizer *opt, float *params, const float *grads, double lr);

/* Global L2 norm of g[0..n), accumulated in double. */
double ody_grad_norm(const float *g, size_t n);
/* True when every g[i] is finite. */
bool ody_all_finite(const float *g, size_t n);

#endif /* ODYSSEY_OPTIM_H */
