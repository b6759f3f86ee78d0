/* comm: gradient buckets and waiting, shared by the reducers. */
#include "comm/comm_internal.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The plan into b (NULL: count only); returns the number of buckets. */
static int plan(const ody_model *m, size_t elements, ody_bucket *b)
{
    int n = 0;
    size_t begin = 0, end = m->grads.size;
    int lowest = -1;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const ody_range *r = &m->layer_range[i];
        if (r->end == r->begin)
            continue;
        if (lowest < 0 && n > 0)
            end = begin;
        begin = r->begin;
        lowest = i;
        if (end - begin >= elements) {
            if (b)
                b[n] = (ody_bucket){.begin = begin, .end = end, .ready_layer = lowest};
            n++;
            lowest = -1;
        }
    }
    if (lowest >= 0) {
        if (b)
            b[n] = (ody_bucket){.begin = 0, .end = end, .ready_layer = lowest};
        n++;
    } else if (n > 0 && b) {
        b[n - 1].begin = 0;
    }
    return n;
}

int ody_plan_buckets(const ody_model *m, size_t elements, ody_bucket **out)
{
    if (elements == 0)
        elements = 1;
    int n = plan(m, elements, NULL);
    *out = calloc((size_t)(n > 0 ? n : 1), sizeof **out);
    if (!*out)
        return -1;
    for (int i = 0; i < (n > 0 ? n : 1); i++)
        (*out)[i].req = MPI_REQUEST_NULL;
    return plan(m, elements, *out);
}

void ody_progress_buckets(ody_bucket *b, int started)
{
    for (int i = 0; i < started; i++) {
        int done = 0;
        if (b[i].req != MPI_REQUEST_NULL)
            MPI_Test(&b[i].req, &done, MPI_STATUS_IGNORE);
    }
}

bool ody_ranks_outnumber_cores(const ody_ctx *ctx)
{
    return ctx->node_size > (ctx->node_cores > 0 ? ctx->node_cores : 1);
}

int ody_wait_request(MPI_Request *req, bool sleepy)
{
    if (!sleepy)
        return MPI_Wait(req, MPI_STATUS_IGNORE);
    int done = 0, rc = MPI_SUCCESS;
    const struct timespec nap = {0, 20000};
    while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (!done)
            nanosleep(&nap, NULL);
    }
    return rc;
}
