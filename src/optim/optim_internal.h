/* optim internals shared by the files of src/optim only. Public API: odyssey/optim.h. */
#ifndef ODY_OPTIM_INTERNAL_H
#define ODY_OPTIM_INTERNAL_H

#include <stdbool.h>

/* A counter read back from a checkpoint's doubles: a whole number in [0, 2^53). */
bool ody_optim_is_count(double v);

#endif /* ODY_OPTIM_INTERNAL_H */
