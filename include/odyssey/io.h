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
} ody_training_config;

typedef struct {
    char name[16];               /* sgd */
    double learning_rate;
    double momentum;
    double weight_decay;
    double dampening;
    bool nesterov;
} ody_optimizer_config;

typedef struct {
    int64_t check_consistency;   /* compare parameter fingerprints every N steps (0 = only at start) */
    int64_t blas_threads;        /* OpenBLAS threads per rank (0 = cores on the node / ranks on it) */
    char allreduce[16];          /* bucketed | blocking */
    int64_t bucket_bytes;        /* gradient bucket size for the bucketed allreduce */
} ody_distributed_config;

typedef struct {
    char level[8];               /* error | warn | info | debug */
    char progress[8];            /* auto | always | never: the live line on a terminal */
} ody_logging_config;

typedef struct {
    char source[512];            /* file the config came from ("" for a string) */
    ody_experiment_config experiment;
    ody_model_options model;
    ody_training_config training;
    ody_optimizer_config optimizer;
    ody_data_options data;
    ody_distributed_config distributed;
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
 * "<configs>/<arg>.yaml" and "<configs>/<model>/<name>.yaml" for
 * "model/name", where <configs> is $ODY_CONFIG_DIR or ./configs.
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

/* =========================================================== metrics log */

/* One value of a metrics record. NaN is written as null. */
typedef struct {
    const char *key;
    double value;
    bool integer; /* print as an integer */
} ody_metric;

typedef struct ody_metrics_log ody_metrics_log;

/*
 * Open <dir>/metrics.jsonl for writing (truncated, or appended to when
 * append). Call on the rank that writes (rank 0). Errors name the path.
 */
ody_status ody_metrics_log_open(ody_ctx *ctx, const char *dir, bool append, ody_metrics_log **out);
/* Write one record as one JSON object on one line, flushed. */
ody_status ody_metrics_log_write(ody_ctx *ctx, ody_metrics_log *log, const ody_metric *m, int n);
/* Close (NULL is fine). */
void ody_metrics_log_close(ody_metrics_log *log);

/* Create a directory and its parents (mkdir -p). Errors name the path. */
ody_status ody_mkdirs(ody_ctx *ctx, const char *path);
/* Write text to path atomically (temporary file, fsync, rename). */
ody_status ody_write_file_atomic(ody_ctx *ctx, const char *path, const char *text, size_t len);

#endif /* ODYSSEY_IO_H */
