/* optim internals shared by the files of src/optim only. Public API: odyssey/optim.h. */
#ifndef ODY_OPTIM_INTERNAL_H
#define ODY_OPTIM_INTERNAL_H

#include <stdbool.h>

#include "core/cpu_internal.h"
#include "odyssey/optim.h"

/* The index of name in a NULL-terminated table of config names, or -1. */
int ody_optim_name_index(const char *const *names, const char *name);
/* A counter read back from a checkpoint's doubles: a whole number in [0, 2^53). */
bool ody_optim_is_count(double v);

/*
 * ody_optimizer_step at a given kernel level (ody_cpu_isa_active() there;
 * one above ody_cpu_isa_best() runs the best): the levels give the same
 * bits, which the tests check by running both.
 */
void ody_optimizer_step_at(ody_optimizer *opt, float *params, const float *grads, double lr, ody_cpu_isa isa);

#endif /* ODY_OPTIM_INTERNAL_H */
