/* train: what the files of src/train share (not public). */
#ifndef ODY_TRAIN_INTERNAL_H
#define ODY_TRAIN_INTERNAL_H

#include <stddef.h>

#include "odyssey/train.h"

/* Call one hook (by offset in ody_callback_ops) of every callback. */
ody_status ody_loop_fire(ody_training_loop *loop, size_t hook_offset);
/* Size per-row buffers and the model's activations for max_rows rows. */
ody_status ody_loop_prepare_buffers(ody_training_loop *loop, size_t max_rows);
/* True when this process has received a stop signal. */
static inline bool ody_loop_stop_requested(const ody_training_loop *loop)
{
    (void)loop;
    return ody_stop_signals_received() > 0;
}

/* Built-in callbacks: the console log (interval and epoch lines) and the
 * metrics log (metrics.jsonl in the run directory, written by rank 0). */
ody_status ody_callback_console_add(ody_training_loop *loop);
ody_status ody_callback_metrics_log_add(ody_training_loop *loop, const char *run_dir);

#endif /* ODY_TRAIN_INTERNAL_H */
