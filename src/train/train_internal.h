/* train: what the files of src/train share (not public). */
#ifndef ODY_TRAIN_INTERNAL_H
#define ODY_TRAIN_INTERNAL_H

#include <stddef.h>
#include <string.h>

#include "odyssey/train.h"

/* Call one hook (by offset in ody_callback_ops) of every callback. */
ody_status ody_loop_fire(ody_training_loop *loop, size_t hook_offset);
/* Size per-row buffers and the model's activations for max_rows rows. */
ody_status ody_loop_prepare_buffers(ody_training_loop *loop, size_t max_rows);
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

/* Add the seconds since t0 to a phase of this step (and to the trace). */
static inline void ody_loop_phase(ody_training_loop *loop, ody_phase phase, double t0)
{
    double now = ody_now();
    loop->state.times.seconds[phase] += now - t0;
    if (loop->trace)
        ody_trace_event(loop->trace, ody_phase_key(phase) + 5 /* past "time_" */, t0, now - t0);
}

/* The parts of a step that loop.c and deterministic.c share. */
extern const ody_step_ops ody_loop_step_ops;
int64_t ody_loop_step_count(const ody_training_loop *loop, int64_t step);
ody_status ody_loop_start_vote(ody_training_loop *loop, const ody_step_result *res);
/* Wait for the vote, act on it (failure, stop, timed checkpoint); st is the
 * status of the reduction before it. */
ody_status ody_loop_finish_vote(ody_training_loop *loop, ody_status st);
/* Start an optimizer step: its micro-batch count (returned), global sample
 * count (group_count) and zeroed sums. After it: add its sums to the
 * metrics and advance the position. */
int64_t ody_loop_begin_update(ody_training_loop *loop);
void ody_loop_count_update(ody_training_loop *loop, int64_t micro);
/* After the reduction: skip or apply the update, count the step. */
ody_status ody_loop_apply_step(ody_training_loop *loop);
/* A rank that failed before its backward still takes part in the step's
 * collectives; returns the agreed failure. */
ody_status ody_loop_fail_step(ody_training_loop *loop, ody_status local);

/* Deterministic mode (deterministic.c): one optimizer step chunk by chunk
 * with exact sums; and the exact reduction alone (compute: this rank's
 * chunks are (re)computed on a redo; false on a rank that failed). */
ody_status ody_loop_train_update_exact(ody_training_loop *loop);
/* Turn deterministic mode on: chunks of `chunk` samples, step buffers for
 * accumulation x train_rows rows. Freed by ody_training_loop_free. */
ody_status ody_loop_enable_exact(ody_training_loop *loop, int64_t chunk, size_t train_rows);
void ody_loop_disable_exact(ody_training_loop *loop);
ody_status ody_loop_exact_reduce(ody_training_loop *loop, bool compute);

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

/* Checkpoints of the training state (checkpoint.c). Save and load are
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
