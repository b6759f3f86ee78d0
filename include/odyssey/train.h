/*
 * train: the training step, the loop, metrics (TrainingMetrics,
 * LossTracker), callbacks, and the trainer that wires a resolved config
 * into data, model, optimizer, reducer and logs.
 *
 * One step, as data flows (src/train/step.c, the same for every mode):
 * this rank's rows -> its chunks at fixed global positions, each through
 * forward -> loss -> backward (the sum of the gradients and the step's
 * vote start in the last backward) -> the reduction strategy finishes the
 * sum (exact fixed-point, or float bucketed allreduce) -> vote -> decide,
 * clip, schedule, update -> metrics -> callbacks. The names follow the
 * seed's training-infrastructure design:
 * training_step, TrainingLoop.run / run_epoch / run_epoch_manual,
 * TrainerConfig, TrainingMetrics, LossTracker.
 */
#ifndef ODYSSEY_TRAIN_H
#define ODYSSEY_TRAIN_H

#include "odyssey/core.h"
#include "odyssey/data.h"
#include "odyssey/comm.h"
#include "odyssey/io.h"
#include "odyssey/nn.h"
#include "odyssey/optim.h"

/* The seed's TrainerConfig is the config's training section. */
typedef ody_training_config ody_trainer_config;

/* ------------------------------------------------------------------ step */

/* Local sums of one step: exact (fixed-point loss) so ranks add exactly. */
typedef struct {
    int64_t loss_fixed; /* sum of per-sample losses, ody_loss_to_fixed */
    int64_t correct;    /* rows whose argmax equals the label */
    int64_t count;      /* rows */
    bool nonfinite;     /* some loss was inf or NaN */
} ody_step_result;

/*
 * The five parts of a training step (the seed's training_step), each with
 * the caller's context pointer. Any may be NULL to skip it.
 */
typedef struct {
    ody_status (*zero_grad)(void *user);
    ody_status (*forward)(void *user, const ody_batch *batch);
    ody_status (*loss)(void *user, const ody_batch *batch, ody_step_result *res);
    ody_status (*backward)(void *user, const ody_batch *batch);
    ody_status (*optimizer_step)(void *user);
} ody_step_ops;

/*
 * Run one step on a batch: zero_grad (when zero_grad_first), forward,
 * loss, backward, optimizer_step (when step_optimizer; false for all but
 * the last micro-batch of an accumulated step). Stops at the first part
 * that fails and returns its status.
 */
ody_status ody_training_step(const ody_step_ops *ops, void *user, const ody_batch *batch,
                             bool zero_grad_first, bool step_optimizer, ody_step_result *res);

/* --------------------------------------------------------------- metrics */

/* One epoch's record, kept for the summary, plots and checkpoints. */
typedef struct {
    int64_t epoch;
    double train_loss, train_accuracy;
    double val_loss, val_accuracy; /* NaN when not validated */
    double lr;
    double samples_per_sec;
} ody_epoch_record;

/* The seed's TrainingMetrics. Accuracies are fractions in [0, 1]. */
typedef struct {
    int64_t current_epoch;
    int64_t current_batch;
    double train_loss, train_accuracy;
    double val_loss, val_accuracy;
    double best_val_loss, best_val_accuracy;
    int64_t best_epoch; /* epoch of best_val_accuracy (-1 before any) */
    /* sums of the current epoch on this rank */
    int64_t epoch_loss_fixed, epoch_correct, epoch_count;
    ody_epoch_record *history;
    int64_t history_len, history_cap;
} ody_training_metrics;

void ody_training_metrics_init(ody_training_metrics *m);
void ody_training_metrics_free(ody_training_metrics *m);
/* Start an epoch: zero the running sums, set current_epoch. */
void ody_training_metrics_reset_epoch(ody_training_metrics *m, int64_t epoch);
/* Add a step's local sums. */
void ody_training_metrics_update_train(ody_training_metrics *m, const ody_step_result *r);
/* Set the epoch's train loss/accuracy from global sums (after reduction). */
void ody_training_metrics_set_train(ody_training_metrics *m, int64_t loss_fixed, int64_t correct,
                                    int64_t count);
/* Record validation results; returns true when accuracy improved on the best. */
bool ody_training_metrics_update_val(ody_training_metrics *m, double loss, double accuracy);
/* Append the current epoch to the history (false when out of memory). */
bool ody_training_metrics_push_epoch(ody_training_metrics *m, double lr, double samples_per_sec);
/* Print the summary table of every epoch and the best values. */
void ody_training_metrics_print_summary(const ody_training_metrics *m, FILE *out);

/* The seed's LossTracker: all-time average and a moving window. */
typedef struct {
    int window;
    int filled, next;
    double *recent;
    double total;
    int64_t count;
} ody_loss_tracker;

ody_status ody_loss_tracker_init(ody_ctx *ctx, ody_loss_tracker *t, int window);
void ody_loss_tracker_free(ody_loss_tracker *t);
void ody_loss_tracker_add(ody_loss_tracker *t, double loss);
/* Mean of every value added (0 when none). */
double ody_loss_tracker_average(const ody_loss_tracker *t);
/* Mean of the last `window` values (0 when none). */
double ody_loss_tracker_recent_average(const ody_loss_tracker *t);

/* ------------------------------------------------------------- callbacks */

typedef struct ody_training_loop ody_training_loop;

/*
 * Lifecycle hooks. A user extends the loop with a table of function
 * pointers and a context (self); any hook may be NULL. A hook that returns
 * an error stops the run with that error (on every rank: hooks run on every
 * rank, and their status is agreed at the next boundary).
 */
typedef struct {
    const char *name;
    ody_status (*on_train_begin)(void *self, ody_training_loop *loop);
    ody_status (*on_train_end)(void *self, ody_training_loop *loop);
    ody_status (*on_epoch_begin)(void *self, ody_training_loop *loop);
    ody_status (*on_epoch_end)(void *self, ody_training_loop *loop);
    ody_status (*on_batch_begin)(void *self, ody_training_loop *loop);
    ody_status (*on_batch_end)(void *self, ody_training_loop *loop);
    ody_status (*on_validation_end)(void *self, ody_training_loop *loop);
    ody_status (*on_checkpoint_saved)(void *self, ody_training_loop *loop, const char *path);
    /*
     * State that must survive a resume, as up to ODY_CALLBACK_STATE_MAX
     * doubles (stored in the checkpoint under callbacks/<name>): save_state
     * writes them and returns how many; load_state gets them back on every
     * rank. Both may be NULL for a stateless callback.
     */
    int (*save_state)(void *self, const ody_training_loop *loop, double *v);
    void (*load_state)(void *self, ody_training_loop *loop, const double *v, int n);
    /* Release self (called when the loop is destroyed; may be NULL). */
    void (*destroy)(void *self);
} ody_callback_ops;

#define ODY_CALLBACK_STATE_MAX 16

#define ODY_MAX_CALLBACKS 16

typedef struct {
    const ody_callback_ops *ops;
    void *self;
} ody_callback;

/* --------------------------------------------------------------- the loop */

/* What the loop measures in the epoch in progress. */
typedef struct {
    double start_time;
    double train_seconds;
    int64_t samples;        /* global samples trained on */
    ody_phase_times times;  /* this rank's phase seconds */
    ody_phase_times times_mean, times_max; /* reduced at the epoch end */
    double grad_norm_sum;   /* the steps' gradient norms, summed (for the mean) */
    int64_t updates;        /* optimizer steps applied */
    int64_t skipped;        /* optimizer steps skipped (non-finite) */
} ody_epoch_stats;

/* What the loop knows about the current position and speed. */
typedef struct {
    int64_t epoch;          /* 0-based epoch in progress */
    int64_t step_in_epoch;  /* micro-steps done in this epoch */
    int64_t steps_per_epoch;
    int64_t global_step;    /* optimizer steps done in all */
    int64_t samples_seen;   /* global samples trained on in all */
    double lr;
    ody_epoch_stats this_epoch;
    bool validated;         /* validation ran at the end of this epoch */
    bool finishing;         /* this epoch is the run's last (epochs, max_steps or a stop) */
    bool stop;              /* a callback asked to stop after this epoch */
    bool stop_signal;       /* some rank got SIGTERM/SIGUSR1: stop at this step */
    double grad_norm;       /* global L2 norm of the last step's gradient, before clipping */
    int64_t skipped_steps;  /* optimizer steps skipped in all */
    bool checkpoint_due;    /* rank 0 asked for a timed checkpoint at this step */
    size_t alloc_at_start;  /* library bytes allocated when training started */
    size_t rss_at_start;    /* resident bytes when training started */
} ody_loop_state;

/* Micro-batches one optimizer step holds at most in deterministic mode
 * (training.accumulation_steps there). */
#define ODY_MAX_MICRO_BATCHES 64

/*
 * Test knob: tests reach a failure at a point by construction, not by
 * timing. From the environment: rank ODY_FAIL_RANK (default 0), at the
 * start of optimizer step ODY_FAIL_STEP (1-based, counted over the whole
 * run; a comma-separated list of up to 8 steps), does ODY_FAIL_ACTION to
 * itself: term or usr1 (raise that stop signal: the step's vote carries
 * it, its checkpoint is written, exit 75), kill (SIGKILL), stop (SIGSTOP),
 * stall (sleeps forever, alive), hold (waits until a stop signal
 * arrives from outside, so that a test's signal lands at that step), or
 * kernel (the model's first layer fails as a kernel that cannot make or
 * run its primitive would: the step's vote ends the run on every rank). It
 * writes one line first, with the wall-clock time. Unset: nothing happens.
 */
typedef enum {
    ODY_FAULT_NONE = 0, ODY_FAULT_TERM, ODY_FAULT_USR1, ODY_FAULT_KILL, ODY_FAULT_STOP,
    ODY_FAULT_STALL, ODY_FAULT_HOLD, ODY_FAULT_KERNEL
} ody_fault_action;
#define ODY_FAULT_MAX_STEPS 8
typedef struct {
    int rank;
    int nsteps;
    int64_t steps[ODY_FAULT_MAX_STEPS];
    ody_fault_action action;
} ody_fault_knob;

/*
 * The loop (opaque; the trainer builds it, ody_trainer_loop gives it) and
 * what callbacks read of it: its state, metrics, model and config.
 */
ody_ctx *ody_training_loop_ctx(const ody_training_loop *loop);
const ody_config *ody_training_loop_config(const ody_training_loop *loop);
ody_loop_state *ody_training_loop_state(ody_training_loop *loop);
ody_training_metrics *ody_training_loop_metrics(ody_training_loop *loop);
ody_model *ody_training_loop_model(ody_training_loop *loop);

/* Add a callback. The loop owns self from here on, even on failure: it
 * calls ops->destroy(self) when freed, or at once when it cannot add it. */
ody_status ody_training_loop_add_callback(ody_training_loop *loop, const ody_callback_ops *ops,
                                          void *self);
/*
 * Train epochs [state.epoch, cfg.training.epochs) with validation every
 * validate_interval epochs and callbacks at every boundary. Collective.
 */
ody_status ody_training_loop_run(ody_training_loop *loop);
/* Train one epoch from state.step_in_epoch to its end. Collective. */
ody_status ody_training_loop_run_epoch(ody_training_loop *loop);
/*
 * Evaluate the validation set: global mean loss and accuracy, exact
 * across ranks (each rank evaluates its contiguous share). Collective.
 */
ody_status ody_training_loop_validate(ody_training_loop *loop, double *loss, double *accuracy);

/*
 * The seed's legacy run_epoch_manual: slice in-memory arrays x (n, sample
 * numel) and y (n) into batches of batch_size rows in order and call
 * fn(user, batch) for each; fn usually calls ody_training_step. Not
 * distributed; no sampler; batch ids are the row indices.
 */
typedef ody_status (*ody_manual_batch_fn)(void *user, const ody_batch *batch);
ody_status ody_training_loop_run_epoch_manual(ody_training_loop *loop, const float *x,
                                              const int32_t *y, int64_t n, int batch_size,
                                              ody_manual_batch_fn fn, void *user);

/* -------------------------------------------------------------- signals */

/*
 * SIGTERM and SIGUSR1 (what schedulers send before a time limit or a
 * preemption) only set a flag; the ranks agree on it at the next step
 * boundary. Installed by the program, once.
 */
ody_status ody_stop_signals_install(ody_ctx *ctx);
/* Number of stop signals received so far by this process. */
int ody_stop_signals_received(void);

/* Read the knob; ODY_ERR_USAGE naming the variable when a value is bad. */
ody_status ody_fault_knob_read(ody_ctx *ctx, ody_fault_knob *knob);
/* Act when this is the knob's rank and step (`step` 1-based); true when
 * the action is the caller's to do (kernel: fail the model's first layer). */
bool ody_fault_knob_fire(const ody_ctx *ctx, const ody_fault_knob *knob, int64_t step);

/* ------------------------------------------------------------- trainer */

typedef struct ody_trainer ody_trainer;

/*
 * Build everything a run needs from a resolved config: run directory,
 * data, model (initialised and broadcast from rank 0), optimizer, reducer,
 * loop and the built-in callbacks. Collective; errors are agreed so every
 * rank returns the same status and message.
 *
 * resume: NULL for a fresh run (an earlier run's checkpoints in the run
 * directory are moved aside to "<run dir>.N", never deleted); "auto" to
 * continue from the newest valid checkpoint of the run directory (corrupt
 * ones are reported and skipped; none at all is a fresh start); or the path
 * of a checkpoint. A checkpoint whose model, optimizer, global batch or
 * training set does not match the config is refused (ODY_ERR_CHECKPOINT).
 */
ody_status ody_trainer_create(ody_ctx *ctx, const ody_config *cfg, const char *resume,
                              ody_trainer **out);
/*
 * Load the parameters of the checkpoint at path into the model of cfg and
 * evaluate them on cfg's validation set (data.validation: test, the test
 * set): every rank its share, metrics exact. Touches no run directory.
 * Collective. Prints nothing.
 */
ody_status ody_evaluate_checkpoint(ody_ctx *ctx, const ody_config *cfg, const char *path,
                                   double *loss, double *accuracy, int64_t *samples);
/* Train to the end. Collective. */
ody_status ody_trainer_run(ody_trainer *t);
/* The loop inside (for tests and callbacks). */
ody_training_loop *ody_trainer_loop(ody_trainer *t);
void ody_trainer_destroy(ody_trainer *t);

#endif /* ODYSSEY_TRAIN_H */
