/*
 * core: status codes and error messages, the context (communicator, rank,
 * log level), aligned allocation with accounting, the counter-based RNG
 * (Random123 Philox4x32-10), wall-clock timers and checksums (xxHash's XXH3).
 *
 * Library code never exits: it returns an ody_status and leaves a message
 * in the context (ody_ctx_error). Only the program turns a status into an
 * exit code (ody_status_exit_code).
 */
#ifndef ODYSSEY_CORE_H
#define ODYSSEY_CORE_H

#include <mpi.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* XXH3_state_t declared in full, so a streamed checksum can live on the stack. */
#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY
#endif
#include <xxhash.h>

/* Status codes. The exit codes of the program follow DESIGN.md's contract. */
typedef enum {
    ODY_OK = 0,
    ODY_ERR_USAGE,      /* bad command line or config (exit 2) */
    ODY_ERR_CONFIG,     /* config file error (exit 2) */
    ODY_ERR_DATA,       /* data set missing or malformed (exit 3) */
    ODY_ERR_CHECKPOINT, /* checkpoint unreadable, unwritable, mismatched (exit 4) */
    ODY_ERR_NUMERIC,    /* non-finite loss the policy could not absorb (exit 5) */
    ODY_ERR_NOMEM,      /* allocation failed (exit 1) */
    ODY_ERR_IO,         /* other file-system error (exit 1) */
    ODY_ERR_MPI,        /* MPI call failed (exit 1) */
    ODY_ERR_INTERNAL,   /* broken invariant (exit 1) */
    ODY_STOPPED,        /* stopped by a signal after a checkpoint (exit 75) */
    ODY_STATUS_COUNT
} ody_status;

/* Exit code the program uses for a status (0, 1, 2, 3, 4, 5 or 75). */
int ody_status_exit_code(ody_status st);
/* Short name of a status ("data error"); a static string. */
const char *ody_status_name(ody_status st);

typedef enum {
    ODY_LOG_ERROR = 0,
    ODY_LOG_WARN = 1,
    ODY_LOG_INFO = 2,
    ODY_LOG_DEBUG = 3
} ody_log_level;

#define ODY_ERRMSG_MAX 1024

/*
 * What a rank is waiting for, read by the stall watchdog (src/comm/stall.c)
 * of this rank and of its node peers: collectives ("meetings") are marked
 * with ody_wait_begin/ody_wait_end, long work with ody_heartbeat. Every rank
 * makes the same meetings in the same order, so a peer that has entered
 * fewer has not arrived at the one this rank waits in. One cache line;
 * it lives in node shared memory while a watchdog runs (times are
 * CLOCK_MONOTONIC nanoseconds, the same clock in every process of a host).
 */
typedef enum {
    ODY_WAIT_AGREE = 0,  /* an agreement (setup, epoch and checkpoint boundaries) */
    ODY_WAIT_BROADCAST,  /* a broadcast or fingerprint check */
    ODY_WAIT_VOTE,       /* the step's vote */
    ODY_WAIT_GRADIENTS,  /* the gradient sum */
    ODY_WAIT_NODE_SUM,   /* the gradient sum's meeting in node shared memory */
    ODY_WAIT_NODES,      /* the node leaders' sum across nodes */
    ODY_WAIT_METRICS,    /* metric and timing sums */
    ODY_WAIT_KINDS
} ody_wait_kind;

typedef struct {
    _Alignas(64) atomic_llong meetings; /* meetings entered */
    atomic_llong since_ns;              /* when the current one began (0: not waiting) */
    atomic_llong beat_ns;               /* the last sign of progress */
    atomic_llong step;                  /* the optimizer step in progress (1-based; 0: none) */
    atomic_int kind;                    /* ody_wait_kind of the current or last meeting */
    atomic_int pid;
    atomic_int rank;                    /* in ctx->comm */
} ody_wait_record;

/*
 * The context of one run on one rank: its communicator, rank and size, the
 * ranks sharing its node, the log level and the last error. Everything in
 * the library hangs off it; there is no global state.
 */
typedef struct ody_ctx {
    MPI_Comm comm;          /* duplicated from the caller's communicator */
    MPI_Comm node_comm;     /* ranks on this node (MPI_COMM_TYPE_SHARED) */
    int rank, size;
    int node_rank, node_size;
    int node_cores;         /* cores the node's ranks may use (ody_node_cores) */
    ody_log_level log_level;
    FILE *log_stream;       /* where ody_log writes (stderr by default) */
    bool line_active;       /* a live progress line is on log_stream: clear it first */
    ody_status err_status;
    char err[ODY_ERRMSG_MAX];
    size_t bytes_allocated; /* live bytes from ody_alloc */
    size_t bytes_peak;      /* high-water mark of bytes_allocated */
    ody_wait_record *wait;  /* own_wait, or this rank's record in a stall watchdog's board */
    ody_wait_record own_wait;
    int wait_depth;         /* nested ody_wait_begin calls: only the outermost counts */
#define ODY_WAIT_NESTING 4
    ody_wait_kind wait_kinds[ODY_WAIT_NESTING]; /* the kinds of the nested waits */
} ody_ctx;

/*
 * Create a context on a duplicate of comm. Collective over comm.
 * Returns ODY_OK and sets *out, or an error (nothing to release then).
 */
ody_status ody_ctx_create(ody_ctx **out, MPI_Comm comm);
/* Release a context (NULL is fine). Collective over its communicator. */
void ody_ctx_destroy(ody_ctx *ctx);

/*
 * Record an error: status and a printf-style message. Returns st, so a
 * caller writes `return ody_fail(ctx, ODY_ERR_DATA, "%s: ...", path);`.
 * The message replaces any earlier one.
 */
ody_status ody_fail(ody_ctx *ctx, ody_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the current message with "prefix: " (adds context on the way up). */
void ody_error_prefix(ody_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last error message ("" when none). Valid until the next ody_fail. */
const char *ody_ctx_error(const ody_ctx *ctx);
/* Forget the last error. */
void ody_ctx_clear_error(ody_ctx *ctx);

/* ODY_OK for MPI_SUCCESS; otherwise records ODY_ERR_MPI "WHAT failed: MPI's text". */
ody_status ody_mpi_check(ody_ctx *ctx, int rc, const char *what);

/* Log a line on rank 0 only (ody_log) or on every rank with a "rank N:" prefix. */
void ody_log(const ody_ctx *ctx, ody_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ody_log_all(const ody_ctx *ctx, ody_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------- waits, progress */

/* Mark the start and end of a collective every rank makes (a nested pair
 * counts as part of the outer one). Cheap: a clock read and atomic stores. */
void ody_wait_begin(ody_ctx *ctx, ody_wait_kind kind);
void ody_wait_end(ody_ctx *ctx);
/* A sign of progress in long work outside collectives (a chunk computed, a
 * checkpoint dataset written): a peer waiting for this rank gives it the
 * stall bound again from here. Safe from any thread of the rank. */
void ody_heartbeat(ody_ctx *ctx);
/* The optimizer step now in progress (1-based), for stall reports. */
void ody_wait_set_step(ody_ctx *ctx, int64_t step);
/* What a wait kind is ("the step's vote"); a static string. */
const char *ody_wait_kind_name(int kind);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t ody_now_ns(void);

/* --------------------------------------------------------------- memory */

/* This process's resident set: now and its peak, in bytes (0 if unknown). */
void ody_rss(size_t *now, size_t *peak);

/*
 * Allocate n bytes aligned to 64, zero-filled, counted in the context.
 * On failure records ODY_ERR_NOMEM with `what` in the message.
 */
ody_status ody_alloc(ody_ctx *ctx, size_t n, const char *what, void **out);
/* Release memory from ody_alloc; n must be the size asked for (NULL is fine). */
void ody_free(ody_ctx *ctx, void *p, size_t n);

/* ------------------------------------------------------ counter-based RNG */

/*
 * Philox4x32-10 (Random123): a pure function of a 64-bit key and a 128-bit
 * counter. Every random draw in odyssey is keyed by what it is for (the
 * seed and a stream tag) and counted by where it is used (epoch, step,
 * global sample index, element), so the same config gives the same numbers
 * on any machine and at any rank count.
 */
typedef struct {
    uint64_t seed;
    uint32_t stream;
} ody_rng_key;

enum {
    ODY_STREAM_INIT = 1,    /* parameter initialisation */
    ODY_STREAM_SHUFFLE = 2, /* epoch permutation */
    ODY_STREAM_DROPOUT = 3, /* dropout masks */
    ODY_STREAM_SPLIT = 4,   /* train/validation split */
    ODY_STREAM_SYNTH = 5,   /* synthetic data */
    ODY_STREAM_AUGMENT = 6, /* training-data augmentation (crop offsets, flips) */
    ODY_STREAM_ERASE = 7    /* training-data augmentation (random erasing) */
};

/* Four 32-bit words for (key, c0, c1). */
void ody_philox(ody_rng_key key, uint64_t c0, uint64_t c1, uint32_t out[4]);
/* Uniform float in [0, 1) with 24 random bits, from one word. */
static inline float ody_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
/* Fill out[0..n) with uniform floats in [lo, hi), element i from counter (c0, i). */
void ody_rng_uniform(ody_rng_key key, uint64_t c0, size_t n, float lo, float hi, float *out);
/* Fill out[0..n) with normal(0, stddev) floats (Box-Muller), element i from counter (c0, i). */
void ody_rng_normal(ody_rng_key key, uint64_t c0, size_t n, float stddev, float *out);
/* Write a uniformly random permutation of 0..n-1 for counter c0 (Fisher-Yates). */
void ody_rng_permutation(ody_rng_key key, uint64_t c0, int64_t n, int64_t *perm);

/* ----------------------------------------------------------------- cores */

/*
 * Cores a cgroup v2 cpu.max text allows: "max PERIOD" gives 0 (no limit),
 * "QUOTA PERIOD" QUOTA/PERIOD rounded up; -1 when the text is neither.
 */
int ody_cpu_max_parse(const char *text);
/* The same from the file at path; 0 (no limit known) when it is missing or bad. */
int ody_cpu_max_read(const char *path);
/* The cgroup v2 CPU quota of this process in cores: the smallest cpu.max
 * from its cgroup up to the root of /sys/fs/cgroup; 0 when there is none. */
int ody_cgroup_cpu_limit(void);
/* CPUs in this process's affinity mask (the online count if it cannot be read). */
int ody_affinity_cores(void);
/*
 * The cores a node's ranks may use: the CPUs of the union of their
 * affinity masks, at most the cgroup quota (rounded up). Collective over
 * node_comm (ody_ctx_create fills ctx->node_cores with it). Returns an
 * MPI error code; *cores is set (to a fallback) even then.
 */
int ody_node_cores(MPI_Comm node_comm, int *cores);

/* ---------------------------------------------------------------- timers */

/* Monotonic wall-clock seconds. */
double ody_now(void);

/* Phases of a training step, timed on every rank and reduced at log time. */
typedef enum {
    ODY_PHASE_DATA = 0,
    ODY_PHASE_FORWARD,
    ODY_PHASE_BACKWARD,
    ODY_PHASE_COMM_WAIT,
    ODY_PHASE_OPTIMIZER,
    ODY_PHASE_CHECKPOINT,
    ODY_PHASE_COUNT
} ody_phase;

/* Metric-key names of the phases ("time_data", ...); static strings. */
const char *ody_phase_key(ody_phase p);

typedef struct {
    double seconds[ODY_PHASE_COUNT];
} ody_phase_times;

/* ---------------------------------------------------------------- hashing */

/*
 * ody_checksum64: XXH3-64 of n bytes (xxHash's XXH3_64bits, seed 0), for
 * checkpoint data and parameter fingerprints: the same value on every
 * machine for the same bytes. What it guarantees is what xxHash documents:
 * a 64-bit hash that passes the SMHasher suite, whose own collision tests
 * on inputs a few bits apart find collisions at the rate of an ideal 64-bit
 * hash; so a change of the bytes goes unnoticed with probability about
 * 2^-64. No pattern of damage (one flipped bit included) is promised to be
 * caught with certainty, and it is no defence against deliberate tampering
 * (not cryptographic).
 */
uint64_t ody_checksum64(const void *data, size_t n);

/*
 * The checksum of format 2 checkpoints, KEPT ONLY TO READ THEM (legacy):
 * a flipped bit can leave it unchanged (the word and the product of its
 * halves go into the same lane and can cancel), so nothing new uses it.
 * Defined, with its exact formula, in src/core/core.c.
 */
uint64_t ody_checksum64_legacy_v2(const void *data, size_t n);

/* Which checksum a streamed ody_checksum computes. */
typedef enum {
    ODY_CHECKSUM_XXH3 = 0,  /* ody_checksum64 */
    ODY_CHECKSUM_LEGACY_V2, /* ody_checksum64_legacy_v2: reading format 2 files only */
} ody_checksum_kind;

/*
 * Either checksum over data that comes in pieces: init, update with each
 * piece in order, final; the value equals the one-shot function's over the
 * concatenated pieces. XXH3 takes pieces of any length; the legacy one
 * needs every piece but the last to be a multiple of 64 bytes (its block).
 * The state lives wherever the caller puts it (no allocation).
 */
typedef struct {
    ody_checksum_kind kind;
    union {
        XXH3_state_t xxh3;
        struct {
            uint64_t acc[8];
            uint64_t n;
        } legacy;
    } u;
} ody_checksum;
void ody_checksum64_init(ody_checksum *c, ody_checksum_kind kind);
void ody_checksum64_update(ody_checksum *c, const void *data, size_t n);
uint64_t ody_checksum64_final(const ody_checksum *c);

#endif /* ODYSSEY_CORE_H */
