/*
 * comm: what ranks do together. Agreement ("did every rank succeed?"),
 * parameter broadcast and fingerprints, exact integer reductions for
 * metrics, the step vote, the gradient sums (the float reducer: a
 * bucketed MPI_Iallreduce over the flat gradient buffer that starts each
 * bucket as soon as backward has finished its layers, or one blocking
 * allreduce; the exact fixed-point sum through node shared memory or
 * MPI), chunk stealing between a node's ranks, and the stall watchdog.
 *
 * Every function here is collective over ctx->comm: every rank must make
 * the same calls in the same order.
 */
#ifndef ODYSSEY_COMM_H
#define ODYSSEY_COMM_H

#include "odyssey/core.h"
#include "odyssey/nn.h"

/*
 * Agree on a status: every rank passes its own; every rank returns the
 * first failing rank's status (lowest rank), and its message, prefixed
 * "rank N: " when the job has more than one rank, lands in every ctx.
 * Returns ODY_OK only when every rank passed ODY_OK.
 */
ody_status ody_comm_agree(ody_ctx *ctx, ody_status local);

/* Broadcast n floats from rank 0. */
ody_status ody_comm_bcast_floats(ody_ctx *ctx, float *buf, size_t n);

/*
 * Compare a fingerprint (hash of n floats) across ranks. On a mismatch
 * returns ODY_ERR_INTERNAL on every rank naming the first rank whose
 * fingerprint differs from rank 0's and `when` ("after step 300").
 */
ody_status ody_comm_check_consistent(ody_ctx *ctx, const float *buf, size_t n, const char *when);

/* Sum n int64 values across ranks in place (exact). */
ody_status ody_comm_sum_i64(ody_ctx *ctx, int64_t *vals, int n);
/* Mean and max across ranks of n doubles (for per-phase times). */
ody_status ody_comm_mean_max(ody_ctx *ctx, const double *vals, double *mean, double *max, int n);

/* Loss values are summed as fixed point with this many fraction bits, so
 * metric sums do not depend on how samples are spread over ranks. A loss
 * at or beyond ODY_LOSS_MAX is treated like a non-finite one (the run has
 * diverged); below it, 2^7 samples at the cap or about 10^9 samples at a
 * loss of 2.3 fit in the int64 sums. */
#define ODY_LOSS_FRAC_BITS 32
#define ODY_LOSS_MAX 16777216.0 /* 2^24 */
static inline bool ody_loss_fixable(double loss) { return loss > -ODY_LOSS_MAX && loss < ODY_LOSS_MAX; }
static inline int64_t ody_loss_to_fixed(double loss)
{
    return (int64_t)(loss * 4294967296.0 + (loss >= 0 ? 0.5 : -0.5));
}
/* a + b, clamped to the int64 range instead of overflowing. */
static inline int64_t ody_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return a > 0 ? INT64_MAX : INT64_MIN;
    return r;
}
static inline double ody_loss_from_fixed(int64_t v) { return (double)v / 4294967296.0; }

/* ------------------------------------------------------------ step vote */

/*
 * A step's vote: one small nonblocking allreduce of counters every rank
 * contributes to (a failure, a non-finite loss, a stop signal), started
 * after the loss and before backward so it overlaps backward. Every rank
 * must start it at the same point relative to the gradient buckets.
 */
enum { ODY_VOTE_FAILED = 0, ODY_VOTE_NONFINITE, ODY_VOTE_STOP, ODY_VOTE_CHECKPOINT, ODY_VOTE_COUNT };

typedef struct {
    int64_t local[ODY_VOTE_COUNT];
    int64_t total[ODY_VOTE_COUNT];
    MPI_Request req;
    bool started;
} ody_vote;

/* Start the allreduce of vote->local into vote->total. */
ody_status ody_vote_start(ody_ctx *ctx, ody_vote *vote);
/* Wait for it. */
ody_status ody_vote_finish(ody_ctx *ctx, ody_vote *vote);

/* ------------------------------------------------------- gradient reducer */

typedef enum {
    ODY_REDUCE_BUCKETED = 0, /* MPI_Iallreduce per bucket, overlapped with backward */
    ODY_REDUCE_BLOCKING      /* one MPI_Allreduce of the whole buffer after backward */
} ody_reduce_mode;

typedef struct ody_reducer ody_reducer;

/* The type gradients travel in: float32, or bfloat16/float16 (half the
 * bytes; summed in float at each hop, rounded once per hop). */
typedef enum { ODY_WIRE_F32 = 0, ODY_WIRE_BF16, ODY_WIRE_F16 } ody_wire_type;

/*
 * A reducer for the model's gradient arena. Buckets are whole layers taken
 * from the last layer backwards until a bucket holds at least bucket_bytes,
 * so each is a contiguous range of the flat buffer and is complete as soon
 * as backward has passed its first layer.
 */
ody_status ody_reducer_create(ody_ctx *ctx, ody_model *model, ody_reduce_mode mode,
                              size_t bucket_bytes, ody_wire_type wire, ody_reducer **out);
void ody_reducer_destroy(ody_ctx *ctx, ody_reducer *r);
/* Buckets in use (1 in blocking mode). */
int ody_reducer_buckets(const ody_reducer *r);

/*
 * The hook to pass to ody_model_backward (user = the reducer) on the
 * backward pass whose gradients are to be reduced: starts every bucket
 * whose layers are done and progresses those in flight.
 */
void ody_reducer_layer_ready(void *reducer, int layer);
/*
 * Start what has not started (all of it in blocking mode, or when backward
 * did not run on this rank) and wait for every bucket. After it, every
 * rank holds the sum of all ranks' gradients.
 */
ody_status ody_reducer_finish(ody_reducer *r);
/* Bytes this rank has handed to allreduce since creation. */
uint64_t ody_reducer_bytes_sent(const ody_reducer *r);

/* ------------------------------------------------------- chunk stealing */

/*
 * Deterministic mode: the ranks of a node share each step's chunks
 * (src/comm/steal.c). Each rank has a slot of slot_bytes in node shared
 * memory for its share of the step, and a queue of up to max_chunks chunk
 * indices; a rank takes its own chunks first, then other ranks' from the
 * back of their queues. Every chunk is taken exactly once.
 */
typedef struct ody_steal ody_steal;

/* Collective over ctx->comm. *out stays NULL (ODY_OK) where no node has
 * two ranks, /dev/shm lacks room, or max_chunks is 65535 or more. */
ody_status ody_steal_create(ody_ctx *ctx, size_t slot_bytes, int max_chunks, ody_steal **out);
void ody_steal_destroy(ody_steal *s);
/* Rank node_rank's slot (64-byte aligned); this rank's node rank. */
void *ody_steal_slot(ody_steal *s, int node_rank);
int ody_steal_me(const ody_steal *s);
/* After filling this rank's slot: its chunks 0..nchunks-1 are open for
 * round (a number every rank of the node gives the same step, never 0). */
void ody_steal_publish(ody_steal *s, uint32_t round, int nchunks);
/* Take a chunk of round: *owner (a node rank) and its *index; false when
 * none is left. A rank takes until then, or until drained says that every
 * queue is empty (its own chunks are its to run). */
bool ody_steal_claim(ody_steal *s, uint32_t round, int *owner, int *index);
/* No chunk of round is left in any queue (one published later is its
 * owner's to run): the chunk this rank is running is its last. */
bool ody_steal_drained(const ody_steal *s, uint32_t round);

/* ------------------------------------------------------- exact reduction */

/*
 * Deterministic mode's gradient sum: each chunk's gradient is added as
 * int64 fixed point (a power-of-two scale per tensor), and the sum over
 * chunks and ranks is exact, so it has the same bits for any number of
 * ranks and any order. Precision and scale choice: src/comm/exact.c.
 */
typedef struct ody_exact ody_exact;

/* The sum goes out in buckets of about bucket_bytes (int64 values);
 * shared_memory: through node shared memory where ranks share a node
 * (falls back to MPI when /dev/shm lacks room). Collective over ctx->comm. */
ody_status ody_exact_create(ody_ctx *ctx, const ody_model *model, size_t bucket_bytes,
                            bool shared_memory, ody_exact **out);
void ody_exact_destroy(ody_ctx *ctx, ody_exact *e);
/* Start a step of `chunks` chunks over all ranks: zero the accumulator. */
void ody_exact_begin(ody_exact *e, int64_t chunks);
/* Add one chunk's gradients (the model's gradient arena layout) and set
 * them to zero, ready for the next chunk's backward. */
void ody_exact_add(ody_exact *e, float *grads);
/* Add and clear one layer's tensors of a chunk's gradients (lockstep rounds: a layer at a time). */
void ody_exact_add_layer(ody_exact *e, float *grads, int layer);
/*
 * The hook for the backward pass of a rank's last chunk of the step (user =
 * the ody_exact; the gradients are the model's): adds layer `layer`'s
 * gradients as ody_exact_add does, then starts the sum of every bucket whose
 * layers are all added, so the allreduce overlaps the rest of backward.
 */
void ody_exact_layer_ready(void *exact, int layer);
/* Bytes this rank has handed to allreduce for gradients. */
uint64_t ody_exact_bytes_sent(const ody_exact *e);
/* Whether the sum goes through node shared memory (the same on every rank). */
bool ody_exact_shared(const ody_exact *e);
/* With the shared-memory sum: carry a step vote (vote->local, summed into
 * vote->total) in the next round instead of its own allreduce, so a step
 * has one meeting of the ranks, not two; ody_vote_finish then returns at
 * once. Every rank must do the same. Returns false, doing nothing, when
 * the sum goes through MPI (start the vote with ody_vote_start then). */
bool ody_exact_carry_vote(ody_exact *e, ody_vote *vote);
/* With the shared-memory sum: call busy(arg) once in the next round's
 * meeting, after this rank has arrived, in the time it would spend
 * waiting for the others (the first round of a step only: a redo's round
 * calls nothing). Through MPI nothing is called. */
void ody_exact_while_waiting(ody_exact *e, void (*busy)(void *), void *arg);
/*
 * Collective. Wait for the sum of the accumulators over all ranks and the
 * maxima (whether any value overflowed the scale or was not finite).
 * *redo: the step outgrew its scale: run the step's chunks again after
 * ody_exact_read sets this step's own. *nonfinite: some chunk had inf or
 * NaN; the sum is to be dropped.
 */
ody_status ody_exact_wait(ody_exact *e, bool *redo, bool *nonfinite);
/* After ody_exact_wait: unless redo, write the float sums into grads (and
 * clear the accumulator); set the next step's scales from the maxima. */
void ody_exact_read(ody_exact *e, float *grads, bool redo);
/* ody_exact_wait, then ody_exact_read unless nonfinite. */
ody_status ody_exact_finish(ody_exact *e, float *grads, bool *redo, bool *nonfinite);
/* The per-tensor scales, for checkpoints (ody_exact_tensors values). */
int ody_exact_tensors(const ody_exact *e);
void ody_exact_save(const ody_exact *e, double *v);
void ody_exact_load(ody_exact *e, const double *v, int n);

/* ------------------------------------------------------- stall watchdog */

/*
 * A rank that is alive but stuck (a hung read on a network file system, a
 * stopped process, a livelock) would leave the others asleep in the next
 * collective until the job's time limit. The watchdog (src/comm/stall.c)
 * is a thread per rank that watches this rank's marked waits
 * (ody_wait_begin): once one has lasted half the bound it warns, and at
 * `seconds` it writes the step, what it waits in and which ranks have not
 * arrived (the node's peers whose meeting count is behind, with pid and
 * process state), then ends the process with exit status 1 (the launcher
 * then ends the job). A peer that has not arrived but shows progress
 * (ody_heartbeat: chunks computed, checkpoint datasets written) gives the
 * bound again from then. A peer of this node that no longer exists ends
 * the wait at once. The peers' records are in node shared memory, so only
 * a node's own ranks are named; a wait for other nodes says so.
 *
 * Collective over ctx->comm (a node shared-memory window). seconds 0:
 * no watchdog (*out NULL, ODY_OK). The watchdog never calls MPI.
 */
typedef struct ody_stall ody_stall;
ody_status ody_stall_create(ody_ctx *ctx, double seconds, ody_stall **out);
/* Stop the watchdog and free its board (NULL is fine). Collective over
 * ctx->comm, before ody_ctx_destroy. */
void ody_stall_destroy(ody_stall *s);

#endif /* ODYSSEY_COMM_H */
