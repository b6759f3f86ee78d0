/*
 * io: the config (libyaml -> typed structs through one schema table), the
 * metrics log (JSONL and CSV), checkpoints (HDF5) and the progress display.
 */
#ifndef ODYSSEY_IO_H
#define ODYSSEY_IO_H

#include "odyssey/core.h"
#include "odyssey/data.h"
#include "odyssey/nn.h"

/* ================================================================ config */

#define ODY_CONFIG_MAX_MILESTONES 16

typedef struct {
    char name[128];       /* run directory name; default "<model.name>-<file stem>" */
    char output_dir[512]; /* default "checkpoints" */
    int64_t seed;
} ody_experiment_config;

typedef struct {
    int64_t epochs;
    int64_t batch_size;          /* global batch, split across ranks */
    int64_t batch_size_per_rank; /* > 0: global batch = this x ranks (weak scaling) */
    int64_t log_interval;        /* steps between log lines */
    int64_t validate_interval;   /* epochs between validations */
    bool save_checkpoints;
    int64_t checkpoint_interval; /* epochs between checkpoints */
    bool shuffle;
    bool drop_last;
    int64_t max_steps;           /* stop after this many optimizer steps in all (0 = no limit) */
    int64_t val_batch_size;      /* global batch for validation */
    char loss[16];               /* cross_entropy | mse */
    double label_smoothing;      /* cross_entropy: target (1-eps) onehot + eps/classes (0 = off) */
    bool use_scheduler;          /* schedule the lr by scheduler_type and the scheduler section */
    char scheduler_type[16];     /* none | step | multistep | exponential | cosine | plateau */
    double gradient_clip_norm;   /* clip the global gradient norm to this (0 = off) */
    double gradient_clip_value;  /* clamp every gradient to [-v, v] (0 = off) */
    bool use_mixed_precision;    /* gradients in precision_dtype for communication */
    char precision_dtype[8];     /* bf16 | fp16 */
    double loss_scale;           /* fp16: initial dynamic loss scale (0 = no scaling) */
    int64_t accumulation_steps;  /* micro-batches per optimizer step */
    char on_nonfinite[8];        /* stop | skip: a step with a non-finite loss or gradient */
} ody_training_config;

typedef struct {
    char name[16];               /* sgd | adam | adamw | rmsprop */
    double learning_rate;
    double momentum;             /* sgd, rmsprop */
    double weight_decay;
    double dampening;            /* sgd */
    bool nesterov;               /* sgd */
    double beta1, beta2;         /* adam, adamw */
    double eps;                  /* adam, adamw, rmsprop */
    double alpha;                /* rmsprop */
    bool centered;               /* rmsprop */
} ody_optimizer_config;

/* The schedule's parameters (ody_schedule_params); the kind is training.scheduler_type. */
typedef struct {
    int64_t step_size;           /* step: epochs between decays */
    double gamma;                /* step, multistep, exponential */
    int milestones[ODY_CONFIG_MAX_MILESTONES]; /* multistep: epochs, increasing */
    int n_milestones;
    int64_t t_max;               /* cosine: epochs (0 = training.epochs) */
    double eta_min;              /* cosine */
    int64_t warmup_steps;        /* linear warmup over this many optimizer steps (0 = none) */
    double warmup_start_factor;
    char plateau_mode[8];        /* auto | min | max (auto: max for accuracies) */
    double factor;               /* plateau */
    int64_t patience;
    double threshold;
    int64_t cooldown;
    double min_lr;
    char monitor[16];            /* val_loss | val_accuracy | train_loss | train_accuracy */
} ody_scheduler_config;

typedef struct {
    int64_t check_consistency;   /* compare parameter fingerprints every N steps (0 = only at start) */
    int64_t blas_threads;        /* OpenBLAS threads per rank (0 = cores on the node / ranks on it) */
    bool deterministic;          /* bitwise-identical results at any rank count */
    int64_t chunk_size;          /* deterministic: samples per chunk of the global batch */
    char allreduce[16];          /* bucketed | blocking */
    int64_t bucket_bytes;        /* gradient bucket size for the bucketed allreduce */
    bool shared_memory;          /* deterministic: sum in node shared memory */
    bool work_stealing;          /* deterministic, shared memory: ranks of a node share chunks */
    double stall_seconds;        /* a rank waiting this long for others ends the job (0 = never) */
} ody_distributed_config;

typedef struct {
    int64_t every_steps;         /* also save every N optimizer steps (0 = off) */
    int64_t every_seconds;       /* also save every T seconds of training (0 = off) */
    int64_t keep_last;           /* keep the newest K periodic checkpoints (0 = all) */
    char monitor[24];            /* metric that picks best.h5: val_accuracy | val_loss | train_loss | train_accuracy */
    char mode[8];                /* auto | max | min (auto: max for accuracies, min for losses) */
    bool save_best;              /* keep best.h5 for the monitored metric */
    bool save_last;              /* save when training ends */
} ody_checkpoint_config;

typedef struct {
    bool enabled;                /* stop when the monitor stops improving */
    char monitor[24];            /* val_loss | val_accuracy | train_loss | train_accuracy */
    char mode[8];                /* auto | min | max (auto: max for accuracies) */
    int64_t patience;            /* epochs without improvement before stopping */
    double min_delta;            /* smallest change that counts as an improvement */
} ody_early_stopping_config;

typedef struct {
    char level[8];               /* error | warn | info | debug */
    char progress[8];            /* auto | always | never: the live line on a terminal */
    bool csv;                    /* metrics.csv beside metrics.jsonl */
    bool plot;                   /* metrics.png (gnuplot) at the end of training */
    bool trace;                  /* <run dir>/trace/rank-N.json, Chrome trace of the phases */
} ody_logging_config;

typedef struct {
    char source[512];            /* file the config came from ("" for a string) */
    ody_experiment_config experiment;
    ody_model_options model;
    ody_training_config training;
    ody_optimizer_config optimizer;
    ody_scheduler_config scheduler;
    ody_data_options data;
    ody_distributed_config distributed;
    ody_checkpoint_config checkpoint;
    ody_early_stopping_config early_stopping;
    ody_logging_config logging;
} ody_config;

/* Fill cfg with every default of the schema. */
void ody_config_defaults(ody_config *cfg);

/*
 * Parse YAML text (from `source`, which errors name) over the defaults in
 * *cfg, then apply overrides ("section.key=value", YAML scalars or flow
 * sequences) in order and validate. Errors (ODY_ERR_CONFIG) read
 * "FILE:LINE:COL: ..." for the file and "command line: ARG: ..." for an
 * override: malformed YAML, unknown key (with a did-you-mean), wrong type,
 * value out of range or not among the allowed ones, cross-key conflicts.
 */
ody_status ody_config_parse(ody_ctx *ctx, const char *text, const char *source, int noverrides,
                            char *const *overrides, ody_config *cfg);
/* Read `path` and ody_config_parse it; a missing file is ODY_ERR_CONFIG naming it. */
ody_status ody_config_load(ody_ctx *ctx, const char *path, int noverrides, char *const *overrides,
                           ody_config *cfg);
/*
 * The config file for an argument: the path itself when it exists, else
 * "<configs>/<arg>.yaml" or "<configs>/<arg>" ("model/name" ->
 * <configs>/model/name.yaml) in the first of the config directories that
 * has it: $ODY_CONFIG_DIR, ./configs, the installed configs beside the
 * running program (<bindir>/../share/odyssey-dist/configs), then those of
 * the configured install prefix. ODY_ERR_CONFIG naming every directory
 * searched when none has it.
 */
ody_status ody_config_find(ody_ctx *ctx, const char *arg, char *path, size_t len);
/* load_experiment_config("lenet5", "baseline") of the seed design. */
ody_status ody_config_load_experiment(ody_ctx *ctx, const char *model, const char *name,
                                      ody_config *cfg);
/*
 * The resolved config as YAML, every key of the schema with its value, in
 * schema order. *text is malloc'd; the caller frees it. Parsing the text
 * back gives the same config.
 */
ody_status ody_config_to_yaml(ody_ctx *ctx, const ody_config *cfg, char **text);
/* Markdown reference of every key (section, key, type, default, allowed, doc). */
void ody_config_write_reference(FILE *out);
/*
 * Resolve on rank 0 (find + load + overrides), broadcast the resolved YAML
 * and parse it on every rank. Collective. On error every rank returns the
 * same status and rank 0's message.
 */
ody_status ody_config_resolve(ody_ctx *ctx, const char *arg, int noverrides,
                              char *const *overrides, ody_config *cfg);

/* ============================================================ checkpoint */

/*
 * A checkpoint file (HDF5), written by one rank and read by any. Names are
 * paths: "model/conv1.weight" is dataset conv1.weight in group /model
 * (groups are made as needed). Tensors and series are datasets; scalars
 * and strings are attributes of their group ("state/epoch" is attribute
 * epoch of /state; strings are variable-length UTF-8, which h5py reads as
 * str). Every dataset and every attribute carries an XXH3-64 checksum
 * (ody_checksum64) that each read checks, and HDF5 checksums the file's
 * metadata itself (the HDF5 1.10 format), so damage to anything the reader
 * uses is reported as a checkpoint error, except with the probability that
 * a 64-bit hash misses a change (about 2^-64; see core.h). Bytes the reader
 * never uses (padding, freed space) may change unnoticed. Attribute names
 * ending in ".checksum" are the checksums' own and are refused.
 *
 * Writing goes to "<path>.tmp.<pid>"; ody_ckpt_commit marks the file
 * complete, flushes, fsyncs, renames it to path and fsyncs the directory, so
 * path is either absent or complete, and an older checkpoint is never
 * touched. Errors are ODY_ERR_CHECKPOINT and name the file and the object.
 * Nothing here is collective.
 */
typedef struct ody_ckpt ody_ckpt;

#define ODY_CKPT_FORMAT "odyssey-dist checkpoint"
/* 3: XXH3-64 checksums of every dataset and attribute. Still read: 2 (legacy
 * checksum of tensors only) and 1 (tensors chunked with Fletcher32). */
#define ODY_CKPT_FORMAT_VERSION 3

/* Start writing a checkpoint that will become `path`. */
ody_status ody_ckpt_create(ody_ctx *ctx, const char *path, ody_ckpt **out);
/* A float32 dataset of the given shape. */
ody_status ody_ckpt_put_tensor(ody_ctx *ctx, ody_ckpt *ck, const char *name, const ody_shape *shape,
                               const float *data);
/* A float64 dataset of n values (n may be 0). */
ody_status ody_ckpt_put_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, const double *v,
                               int64_t n);
/* Scalar and string attributes. */
ody_status ody_ckpt_put_i64(ody_ctx *ctx, ody_ckpt *ck, const char *name, int64_t v);
ody_status ody_ckpt_put_f64(ody_ctx *ctx, ody_ckpt *ck, const char *name, double v);
ody_status ody_ckpt_put_string(ody_ctx *ctx, ody_ckpt *ck, const char *name, const char *text);
/*
 * Finish: write the remaining format attributes (format and format_version
 * are written by create) and the completion mark, flush, close, fsync,
 * rename to the final path, fsync the directory. Refuses after a failed
 * put. Releases ck whatever happens; on failure the temporary file is
 * removed and the error names the path and the system's reason (e.g. "No
 * space left on device").
 */
ody_status ody_ckpt_commit(ody_ctx *ctx, ody_ckpt *ck);
/* Give up writing: close and remove the temporary file; releases ck (NULL is fine). */
void ody_ckpt_abort(ody_ckpt *ck);

/*
 * Open a checkpoint for reading and check that it is one: an HDF5 file
 * with our format attribute, a known format version and the completion
 * mark. A truncated or corrupt file, or another kind of file, is an error
 * naming the path and the problem.
 */
ody_status ody_ckpt_open(ody_ctx *ctx, const char *path, ody_ckpt **out);
/* Read every dataset and attribute, checksums verified; the first bad one is named. */
ody_status ody_ckpt_verify(ody_ctx *ctx, ody_ckpt *ck);
/* True when the object (dataset or attribute) exists. */
bool ody_ckpt_has(ody_ckpt *ck, const char *name);
/* Read a float32 dataset whose shape must equal *shape (mismatch: both shapes named). */
ody_status ody_ckpt_get_tensor(ody_ctx *ctx, ody_ckpt *ck, const char *name, const ody_shape *shape,
                               float *out);
/* Read a float64 series: *v is malloc'd (NULL when n = 0), the caller frees it. */
ody_status ody_ckpt_get_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, double **v,
                               int64_t *n);
ody_status ody_ckpt_get_i64(ody_ctx *ctx, ody_ckpt *ck, const char *name, int64_t *v);
ody_status ody_ckpt_get_f64(ody_ctx *ctx, ody_ckpt *ck, const char *name, double *v);
/* *text is malloc'd; the caller frees it. */
ody_status ody_ckpt_get_string(ody_ctx *ctx, ody_ckpt *ck, const char *name, char **text);
/* Close (NULL is fine). */
void ody_ckpt_close(ody_ckpt *ck);

/* =========================================================== metrics log */

/* One value of a metrics record. NaN is written as null. */
typedef struct {
    const char *key;
    double value;
    bool integer;  /* print as an integer */
    bool optional; /* left out of the JSON line (an empty CSV cell) when NaN */
} ody_metric;

typedef struct ody_metrics_log ody_metrics_log;

/*
 * Open <dir>/metrics.jsonl for writing (truncated, or appended to when
 * append). Call on the rank that writes (rank 0). Errors name the path.
 */
ody_status ody_metrics_log_open(ody_ctx *ctx, const char *dir, bool append, ody_metrics_log **out);
/* The same for <dir>/<name>.jsonl (and <name>.csv), e.g. "steps". */
ody_status ody_metrics_log_open_named(ody_ctx *ctx, const char *dir, const char *name, bool append,
                                      ody_metrics_log **out);
/* Write one record as one JSON object on one line, flushed. */
ody_status ody_metrics_log_write(ody_ctx *ctx, ody_metrics_log *log, const ody_metric *m, int n);
/* Keep only the first `records` lines of the log (after a resume). */
ody_status ody_metrics_log_truncate(ody_ctx *ctx, ody_metrics_log *log, int64_t records);
/*
 * Keep the log's lines up to the first whose integer `key` exceeds `max`
 * (records in increasing order of key: after a resume at step max, the
 * rows of the steps the resumed run trains again go). The CSV keeps its
 * header and finds key among its columns. A line without key is kept.
 */
ody_status ody_metrics_log_truncate_after(ody_ctx *ctx, ody_metrics_log *log, const char *key,
                                          int64_t max);
/* Close (NULL is fine). */
void ody_metrics_log_close(ody_metrics_log *log);

/* Also write <dir>/metrics.csv beside the JSONL: the first record's keys
 * are the columns. Call before the first write. */
ody_status ody_metrics_log_enable_csv(ody_ctx *ctx, ody_metrics_log *log, bool append);
/*
 * Plot <dir>/metrics.csv as <dir>/metrics.png with gnuplot: loss and
 * accuracy (train and validation) against the epoch, labelled axes. A
 * missing gnuplot is ODY_ERR_IO with a message saying so.
 */
ody_status ody_metrics_plot(ody_ctx *ctx, const char *dir);

/* ============================================================== progress */

/*
 * The live status line on a terminal: redrawn in place (carriage return)
 * at most every 0.2 s. Inactive when out is not a terminal (batch jobs log
 * plain lines instead) or when disabled. While a line is shown, ody_log
 * clears it before printing, so log lines never interleave with it.
 */
typedef struct {
    ody_ctx *ctx;
    FILE *out;
    bool active;
    double last_draw;
} ody_progress;

/*
 * mode (logging.progress): "always", "never", or "auto": then
 * ODY_PROGRESS from the environment (auto, always, never) decides, and
 * when that is unset or auto, whether out reaches a terminal
 * (ody_progress_terminal). Call on rank 0 (a bad ODY_PROGRESS is logged).
 */
void ody_progress_init(ody_progress *p, ody_ctx *ctx, FILE *out, const char *mode);
/*
 * Whether what is written to out reaches a terminal: out itself, or under
 * Open MPI's mpirun (OMPI_COMM_WORLD_SIZE set), the same stream of the
 * parent process (mpirun gives ranks a pty as stdout and a pipe as stderr
 * whatever its own are, and forwards each to its own stdout or stderr).
 */
bool ody_progress_terminal(FILE *out);
/* Redraw the line with printf-style text (skipped when drawn < 0.2 s ago, unless force). */
void ody_progress_draw(ody_progress *p, bool force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Remove the line (before other output, and at the end). */
void ody_progress_clear(ody_progress *p);

/* ================================================================= trace */

/*
 * A Chrome trace (Trace Event Format, JSON array) of one rank's phases,
 * viewable in Perfetto or chrome://tracing. Events are buffered (no I/O
 * in a step unless the buffer fills) and written by ody_trace_flush.
 */
typedef struct ody_trace ody_trace;

/* Open path for rank `pid`; times are seconds since t0 (ody_now() clock). */
ody_status ody_trace_open(ody_ctx *ctx, const char *path, int pid, double t0, ody_trace **out);
/* Record a complete event [start, start + dur) (seconds on the ody_now() clock). */
void ody_trace_event(ody_trace *t, const char *name, double start, double dur);
/* Write the buffered events. */
ody_status ody_trace_flush(ody_ctx *ctx, ody_trace *t);
/* Flush, end the JSON array, close (NULL is fine). */
void ody_trace_close(ody_ctx *ctx, ody_trace *t);

/* Create a directory and its parents (mkdir -p). Errors name the path. */
ody_status ody_mkdirs(ody_ctx *ctx, const char *path);
/* Write text to path atomically (temporary file, fsync, rename). */
ody_status ody_write_file_atomic(ody_ctx *ctx, const char *path, const char *text, size_t len);

#endif /* ODYSSEY_IO_H */
