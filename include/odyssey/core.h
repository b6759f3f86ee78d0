/*
 * core: status codes and error messages, the context (communicator, rank,
 * log level), aligned allocation with accounting, the counter-based RNG
 * (Random123 Philox4x32-10) and wall-clock timers.
 *
 * Library code never exits: it returns an ody_status and leaves a message
 * in the context (ody_ctx_error). Only the program turns a status into an
 * exit code (ody_status_exit_code).
 */
#ifndef ODYSSEY_CORE_H
#define ODYSSEY_CORE_H

#include <mpi.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
 * The context of one run on one rank: its communicator, rank and size, the
 * ranks sharing its node, the log level and the last error. Everything in
 * the library hangs off it; there is no global state.
 */
typedef struct ody_ctx {
    MPI_Comm comm;          /* duplicated from the caller's communicator */
    MPI_Comm node_comm;     /* ranks on this node (MPI_COMM_TYPE_SHARED) */
    int rank, size;
    int node_rank, node_size;
    ody_log_level log_level;
    FILE *log_stream;       /* where ody_log writes (stderr by default) */
    bool line_active;       /* a live progress line is on log_stream: clear it first */
    ody_status err_status;
    char err[ODY_ERRMSG_MAX];
    size_t bytes_allocated; /* live bytes from ody_alloc */
    size_t bytes_peak;      /* high-water mark of bytes_allocated */
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
    ODY_STREAM_SYNTH = 5    /* synthetic data */
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

/* A 64-bit checksum of bytes at memory speed (not cryptographic), for
 * checkpoint data and parameter fingerprints: the same value with or
 * without AVX2 (src/core/core.c defines it). */
uint64_t ody_checksum64(const void *data, size_t n);

/* The same checksum over data that comes in pieces: init, update with each
 * piece in order, final. Every piece but the last must be a multiple of 64
 * bytes long (the checksum's block). */
typedef struct {
    uint64_t acc[8];
    uint64_t n;
} ody_checksum;
void ody_checksum64_init(ody_checksum *c);
void ody_checksum64_update(ody_checksum *c, const void *data, size_t n);
uint64_t ody_checksum64_final(const ody_checksum *c);

#endif /* ODYSSEY_CORE_H */
