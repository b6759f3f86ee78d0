/* dist: what the files of src/dist share (not public). */
#ifndef ODY_DIST_INTERNAL_H
#define ODY_DIST_INTERNAL_H

#include "odyssey/dist.h"

/* A contiguous range of a gradient-shaped buffer reduced as one message. */
typedef struct {
    size_t begin, end; /* element range of the buffer */
    int ready_layer;   /* complete once backward has finished this layer */
    MPI_Request req;
} ody_bucket;

/*
 * Group the layers with parameters, last first, into buckets of at least
 * `elements` elements each (SIZE_MAX: one bucket). The buckets tile the
 * whole arena (alignment gaps included), so together they reduce exactly
 * what one allreduce would. *out: a new array (free it); returns the
 * number of buckets, or -1 when out of memory.
 */
int ody_plan_buckets(const ody_model *m, size_t elements, ody_bucket **out);
/* Let MPI move the first `started` buckets forward (nonblocking progress). */
void ody_progress_buckets(ody_bucket *b, int started);
/* More ranks on this node than cores: waiting ranks should sleep, not spin. */
bool ody_ranks_outnumber_cores(const ody_ctx *ctx);
/* Wait for a request, polling with short sleeps when `sleepy`. */
int ody_wait_request(MPI_Request *req, bool sleepy);

#endif /* ODY_DIST_INTERNAL_H */
