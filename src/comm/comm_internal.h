/* comm: what the files of src/comm share (not public). */
#ifndef ODY_COMM_INTERNAL_H
#define ODY_COMM_INTERNAL_H

#include "odyssey/comm.h"

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

/*
 * Exact int64 sums through node shared memory (src/comm/shm.c): a round
 * sums an n-value buffer, nmax float maxima and ncount int64 counts over
 * every rank. Collective create over ctx->comm; *out stays NULL (and
 * ODY_OK is returned) when every node has one rank, or /dev/shm lacks
 * room on some node: the caller sums with MPI then. Every rank makes the same rounds:
 * ody_shm_add any ranges, ody_shm_merge once, ody_shm_wait, then read the
 * round's totals until the next round's first add.
 */
typedef struct ody_shm ody_shm;
ody_status ody_shm_create(ody_ctx *ctx, size_t n, int nmax, int ncount, ody_shm **out);
/* Release (NULL is fine). Collective over ctx->comm. */
void ody_shm_destroy(ody_shm *s);
/* Whether /dev/shm has room for a segment of `bytes` (with a margin). */
bool ody_shm_room_for(size_t bytes);
/*
 * A window of node shared memory (src/comm/shm.c), shared by the exact sum
 * and chunk stealing: ody_node_window allocates it, this rank's part
 * `bytes` long (0: none), collectively over ctx->node_comm (false, *win
 * MPI_WIN_NULL, when that failed); ody_node_window_part gives node rank
 * r's part, 64-byte aligned, or NULL (it has none, or the query failed):
 * a local failure, to be agreed on before the segment is used.
 * ody_node_window_free is collective too (nothing after MPI_Finalize).
 */
bool ody_node_window(const ody_ctx *ctx, size_t bytes, MPI_Win *win);
char *ody_node_window_part(MPI_Win win, int node_rank);
void ody_node_window_free(MPI_Win *win);
/* Add src[begin, end) into this round's sum (src is left as it is). */
void ody_shm_add(ody_shm *s, const int64_t *src, size_t begin, size_t end);
/* Merge this rank's maxima (nmax) and counts (ncount; count may be NULL). */
void ody_shm_merge(ody_shm *s, const float *max, const int64_t *count);
/* Arrive and sleep until every rank has (and, on several nodes, the node
 * totals are summed across nodes). ODY_ERR_MPI, on every rank, when that
 * failed. busy (or NULL): work of this rank's own, called once in the
 * round, after it arrived, where it would otherwise wait. */
typedef void (*ody_shm_busy)(void *arg);
ody_status ody_shm_wait(ody_shm *s, ody_shm_busy busy, void *arg);
/* The last completed round's totals. */
const int64_t *ody_shm_sum(const ody_shm *s);
const float *ody_shm_max(const ody_shm *s);
const int64_t *ody_shm_count(const ody_shm *s);

#endif /* ODY_COMM_INTERNAL_H */
