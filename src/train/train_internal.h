/* train: what the files of src/train share (not public). */
#ifndef ODY_TRAIN_INTERNAL_H
#define ODY_TRAIN_INTERNAL_H

#include <stddef.h>
#include <string.h>

#include "odyssey/train.h"

/* ------------------------------------------------------------ the step */

/*
 * A step's reduction strategy, chosen once at setup (the step function in
 * step.c is the same for both; see there):
 * - float (float_step.c): each micro-batch's share of the rank is one
 *   chunk, gradients accumulate in the float buffer, and buckets go out
 *   through ody_reducer (MPI_Iallreduce, float or half-precision wire)
 *   from the last chunk's backward;
 * - exact (exact_step.c): the global batch is cut into chunks of
 *   distributed.chunk_size at fixed global positions; each chunk's
 *   gradient is added in fixed point (ody_exact), so the sum has the same
 *   bits at any rank count; a node's ranks may steal each other's chunks.
 * The strategy knows where the step's rows are and which chunks this rank
 * runs; the step runs them.
 */
typedef struct ody_strategy ody_strategy;
typedef struct {
    /* The step's start (every rank, even one whose rows cannot be read). */
    void (*begin)(ody_strategy *s);
    /* Read this rank's rows of the step's `micro` micro-batches. */
    ody_status (*load)(ody_strategy *s, int64_t micro);
    /* A round of chunks over the loaded rows: the step's first (the last
     * chunk's backward starts the sum), or a redo (compute false: this rank
     * has no chunks, it failed to load). */
    void (*begin_round)(ody_strategy *s, bool first, bool compute);
    /* The next chunk of this round; false when none is left. */
    bool (*next_chunk)(ody_strategy *s, ody_batch *chunk);
    /* Asked between the forward and the backward of a chunk of the first
     * round: whether it is this rank's last. */
    bool (*last_chunk)(ody_strategy *s);
    /* After the backward of a chunk that was not the last: take its
     * gradients (the exact sum adds and clears them). */
    void (*add_chunk)(ody_strategy *s, float *grads);
    /* Lockstep rounds: a chunk that is not the last has run one layer's
     * backward; take that layer's gradients (the exact sum adds and clears
     * them; the float sum lets them accumulate). */
    void (*add_layer)(ody_strategy *s, int layer);
    /* The backward hook of the last chunk (user: the strategy): starts the
     * sum of every bucket whose layers are done. */
    void (*layer_ready)(void *s, int layer);
    /* Start the step's vote: riding in the sum's meeting, or its own allreduce. */
    ody_status (*start_vote)(ody_strategy *s, ody_vote *vote);
    /* Wait for the sum. *redo: it outgrew its scale (run the round again
     * after read); *nonfinite: some gradient was inf or NaN. */
    ody_status (*wait)(ody_strategy *s, bool *redo, bool *nonfinite);
    /* After wait, unless nonfinite: the sum into grads (unless redo). */
    void (*read)(ody_strategy *s, float *grads, bool redo);
    /* Bytes this rank has handed to the sum's allreduces. */
    uint64_t (*bytes_sent)(const ody_strategy *s);
    /* The end-of-run line ("chunk stealing: ..."), collective; NULL: none. */
    ody_status (*report)(ody_strategy *s);
    void (*destroy)(ody_strategy *s);
} ody_strategy_ops;

struct ody_strategy {
    const ody_strategy_ops *ops;
};

/* Create a strategy for a built loop (strategy.c; exact: collective;
 * *out NULL on failure). train_rows: the largest share of a micro-batch. */
ody_status ody_float_step_create(ody_training_loop *loop, ody_reducer *reducer, size_t train_rows,
                                 ody_strategy **out);
ody_status ody_exact_step_create(ody_training_loop *loop, int64_t chunk, size_t train_rows,
                                 ody_strategy **out);
/* The exact strategy's ody_exact (its scales go into checkpoints), or NULL. */
ody_exact *ody_exact_step_sum(ody_strategy *s);

/* A lockstep round's chunks (model->lockstep; ody_loop_prepare_buffers sizes it). */
typedef struct {
    int max_chunks;
    int *rows;                 /* (max_chunks) */
    const float **x;           /* (max_chunks) */
    const int32_t **y;         /* (max_chunks) */
    ody_forward_info *info;    /* (max_chunks) */
    ody_chunk_set set;
    int *rank_chunks;          /* (ranks) every rank's chunks this round, gathered once per round */
    int *counts, *displs;      /* (ranks) for gathering the statistics parts */
    double *gathered;          /* (gathered_len) every rank's parts */
    size_t gathered_len;
    void *block;               /* the one allocation the arrays above are carved from */
    size_t bytes;
} ody_lockstep;

/* The optimizer step in progress. */
typedef struct {
    int64_t group_count;    /* global samples of this optimizer step */
    ody_step_result sums;   /* this rank's sums of the step */
    bool last;              /* the chunk being run is this rank's last of the step */
    bool first_round;       /* the step's first round of chunks (not a redo) */
    bool local_failed;      /* this rank failed before its backward */
    bool grads_nonfinite;   /* the sum found inf or NaN */
    ody_vote vote;
    bool want_checkpoint;   /* rank 0: ask the next vote for a timed checkpoint */
    const float *logits;
    ody_forward_info fwd;
    float *losses;          /* (max_rows) per-sample losses */
    float *dlogits;         /* (max_rows, classes) */
    size_t max_rows;        /* rows the buffers above hold */
    ody_lockstep lockstep;
} ody_step_state;

/*
 * One record of the steps log (steps.jsonl) and of the console's interval
 * line: the training.log_interval optimizer steps up to `step`, reduced
 * over ranks. Loss and accuracy come from exact integer sums, so they do
 * not depend on the rank count in deterministic mode.
 */
typedef struct {
    int64_t step;             /* optimizer steps done in all (the record's last) */
    int64_t epoch;            /* 0-based epoch of that step */
    int64_t epoch_step;       /* optimizer steps done in that epoch */
    int64_t samples;          /* global samples of the interval */
    double loss, accuracy;    /* mean over the interval's samples (NaN: none) */
    double lr;                /* after the record's step */
    double grad_norm;         /* mean global norm over the applied steps (NaN: none) */
    double samples_per_sec;   /* global samples over rank 0's wall time */
    double elapsed;           /* seconds since training started (rank 0) */
    ody_phase_times times_mean; /* phase seconds of the interval, mean over ranks */
} ody_step_record;

/* What the loop measures between two records (loop.c). */
typedef struct {
    int64_t loss_fixed, correct, count; /* this rank's sums since the last record */
    double grad_norm_sum;               /* norms of the applied steps (same on every rank) */
    int64_t updates;                    /* steps applied since the last record */
    int64_t samples;                    /* global samples since the last record */
    ody_phase_times times;              /* this rank's phase seconds since the last record */
    ody_phase_times seen;               /* this_epoch.times when last added in */
    int64_t seen_updates;               /* this_epoch.updates when last added in */
    double since;                       /* when the interval started */
    double train_start;                 /* when training started (or resumed) */
    bool due;                           /* `last` was reduced at this step */
    ody_step_record last;
} ody_interval_stats;

/* The data a loop reads (not owned). */
typedef struct {
    ody_dataset *train_set, *val_set;
    ody_sampler *sampler, *val_sampler;
    ody_loader *loader, *val_loader;
} ody_loop_data;

struct ody_training_loop {
    ody_ctx *ctx;
    const ody_config *cfg;
    ody_model *model;        /* not owned, nor the optimizer or the data */
    ody_optimizer *optimizer;
    ody_loop_data data;
    ody_loss_kind loss_kind;
    int64_t global_batch;    /* samples per micro-step across ranks */
    int64_t accumulation;    /* micro-steps per optimizer step */
    ody_schedule schedule;   /* the lr of every optimizer step (kind none: constant) */
    ody_loss_scaler scaler;  /* fp16 gradients: dynamic loss scaling (else disabled) */
    ody_training_metrics metrics;
    ody_loss_tracker tracker;
    ody_loop_state state;
    ody_interval_stats interval; /* the steps log's interval (training.log_interval) */
    ody_step_state step;
    ody_strategy *strategy;  /* owned */
    int ncallbacks;
    ody_callback callbacks[ODY_MAX_CALLBACKS];
    ody_trace *trace;        /* phase events of this rank (logging.trace), or NULL */
    ody_fault_knob fault;    /* test knob (ODY_FAIL_RANK, _STEP, _ACTION) */
};

/* Set up and release a loop (the trainer fills in its parts). */
ody_status ody_training_loop_init(ody_training_loop *loop, ody_ctx *ctx, const ody_config *cfg);
void ody_training_loop_free(ody_training_loop *loop);
/* Size per-row buffers and the model's activations for max_rows rows. */
ody_status ody_loop_prepare_buffers(ody_training_loop *loop, size_t max_rows);

/* One optimizer step (step.c), collective: load, zero, forward, loss,
 * backward, reduce, vote, decide, clip, schedule, update, count. */
ody_status ody_step_run(ody_training_loop *loop);
/* Add per-sample losses to res in fixed point (and flag a non-finite one). */
void ody_sum_losses(const float *losses, int n, ody_step_result *res);
/* A rank that failed before its chunks (a hook, a read) still takes part
 * in the step's collectives; returns the agreed failure. */
ody_status ody_step_fail(ody_training_loop *loop, ody_status local);

/* After a step: add it to the interval and, every training.log_interval
 * optimizer steps, reduce the interval into interval.last (interval.due
 * set; collective at those steps). */
ody_status ody_loop_interval_step(ody_training_loop *loop);

/* Call one hook (by offset in ody_callback_ops) of every callback. */
ody_status ody_loop_fire(ody_training_loop *loop, size_t hook_offset);
/* Whether a monitored metric is better larger: mode "max", or "auto" on an
 * accuracy (early stopping, best checkpoint, plateau schedule). */
static inline bool ody_monitor_maximizes(const char *mode, const char *monitor)
{
    return strcmp(mode, "max") == 0 || (strcmp(mode, "auto") == 0 && strstr(monitor, "accuracy"));
}

/* True when this process has received a stop signal. */
static inline bool ody_loop_stop_requested(const ody_training_loop *loop)
{
    (void)loop;
    return ody_stop_signals_received() > 0;
}

/* A metric of this epoch by its config name (val_loss, val_accuracy,
 * train_loss, train_accuracy); NaN when a val_ metric was not measured. */
double ody_loop_metric(const ody_training_loop *loop, const char *name);
/* Optimizer steps in an epoch, and done so far in this one. */
static inline int64_t ody_loop_updates_per_epoch(const ody_training_loop *loop)
{
    return (loop->state.steps_per_epoch + loop->accumulation - 1) / loop->accumulation;
}
static inline int64_t ody_loop_update_in_epoch(const ody_training_loop *loop)
{
    return (loop->state.step_in_epoch + loop->accumulation - 1) / loop->accumulation;
}

/* Micro-batches in the optimizer step that starts at step_in_epoch: the
 * accumulation, or what is left of the epoch. */
static inline int64_t ody_loop_micro_at(const ody_training_loop *loop, int64_t step_in_epoch)
{
    int64_t left = loop->state.steps_per_epoch - step_in_epoch;
    return loop->accumulation < left ? loop->accumulation : left;
}

/* Global samples in micro-step `step` of the epoch (the last may be short). */
static inline int64_t ody_loop_step_count(const ody_training_loop *loop, int64_t step)
{
    int64_t left = loop->data.sampler->n - step * loop->global_batch;
    return left < loop->global_batch ? left : loop->global_batch;
}

/* Add the seconds since t0 to a phase of this step (and to the trace). */
static inline void ody_loop_phase(ody_training_loop *loop, ody_phase phase, double t0)
{
    double now = ody_now();
    loop->state.this_epoch.times.seconds[phase] += now - t0;
    if (loop->trace)
        ody_trace_event(loop->trace, ody_phase_key(phase) + 5 /* past "time_" */, t0, now - t0);
}

/* Call on_checkpoint_saved of every callback. */
ody_status ody_loop_fire_checkpoint_saved(ody_training_loop *loop, const char *path);

/* Built-in callbacks: the console log (interval and epoch lines), the
 * metrics log (metrics.jsonl in the run directory, written by rank 0) and
 * ModelCheckpoint (when and where checkpoints are saved). */
ody_status ody_callback_console_add(ody_training_loop *loop);
ody_status ody_callback_metrics_log_add(ody_training_loop *loop, const char *run_dir, bool append);
ody_status ody_callback_model_checkpoint_add(ody_training_loop *loop, const char *run_dir);
/* EarlyStopping (early_stopping section), the learning-rate monitor (logs
 * every change of the lr) and the trace writer (logging.trace). */
ody_status ody_callback_early_stopping_add(ody_training_loop *loop);
ody_status ody_callback_lr_monitor_add(ody_training_loop *loop);
ody_status ody_callback_trace_add(ody_training_loop *loop, const char *run_dir);

/* Checkpoints of the training state (train_state.c). Save and load are
 * collective: rank 0 writes or reads, every rank agrees, load broadcasts.
 * epoch_done: the epoch's end-of-epoch work is done, so the saved position
 * is the start of the next epoch when this one is complete. */
ody_status ody_train_checkpoint_save(ody_training_loop *loop, const char *path, bool epoch_done);
ody_status ody_train_checkpoint_load(ody_training_loop *loop, const char *path);
/* Only the model's parameters (for --eval). Collective. */
ody_status ody_train_load_params(ody_training_loop *loop, const char *path);
/* Resume from `what` ("auto": the newest valid checkpoint of run_dir). */
ody_status ody_train_resume(ody_training_loop *loop, const char *run_dir, const char *what);
/* Checkpoint file names in run_dir, newest first; free with
 * ody_train_free_names. Returns how many (0 when run_dir does not exist),
 * or -1 with errno set when they cannot all be listed: a caller must not
 * take a partial list for the whole, or a missing one for none. */
int ody_train_list_checkpoints(const char *run_dir, char ***names);
void ody_train_free_names(char **names, int n);

#endif /* ODY_TRAIN_INTERNAL_H */
