/* dist: what the files of src/dist share (not public). */
#ifndef ODY_DIST_INTERNAL_H
#define ODY_DIST_INTERNAL_H

#include "odyssey/dist.h"

/* A contiguous range of a gradient-shaped buffer reduced as one message. */
typedef struct {
    size_t begin, end; /* element range of the buffer */
    int ready_layer;   /* complete once backward has finished this layer */
    bool started;
    MPI_Request req;
} ody_bucket;

/*
 * Group the layers with parameters, last first, into buckets of at least
 * `elements` elements each. The buckets tile the whole arena (alignment
 * gaps included), so together they reduce exactly what one allreduce would.
 * Returns the number of buckets written to b (b may be NULL to count).
 */
int ody_plan_buckets(const ody_model *m, size_t elements, ody_bucket *b);
/* More ranks on this node than cores: waiting ranks should sleep, not spin. */
bool ody_ranks_outnumber_cores(const ody_ctx *ctx);
/* Wait for a request, polling with short sleeps when `sleepy`. */
int ody_wait_request(MPI_Request *req, bool sleepy);

#endif /* ODY_DIST_INTERNAL_H */
