/* optim: helpers the files of src/optim share (optim_internal.h). */
#include "optim/optim_internal.h"

#include <math.h>
#include <string.h>

int ody_optim_name_index(const char *const *names, const char *name)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

bool ody_optim_is_count(double v)
{
    return v >= 0.0 && v < 9007199254740992.0 && v == floor(v);
}
