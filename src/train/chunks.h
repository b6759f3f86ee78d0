/* train: the chunk plan of a step (src/train/chunks.c): where a step's
 * rows live, how they are cut into chunks at fixed global positions, and
 * which chunks this rank runs (its own, or with chunk stealing any of its
 * node's). Used by the reduction strategies (strategy.c). */
#ifndef ODY_TRAIN_CHUNKS_H
#define ODY_TRAIN_CHUNKS_H

#include "train/train_internal.h"

typedef struct ody_chunk_plan ody_chunk_plan;

/* What chunk stealing did (this rank, this run). */
typedef struct {
    int64_t chunks_stolen; /* chunks run from other ranks' shares */
    int64_t chunks_run;    /* chunks run in first rounds, with stealing */
    int64_t steps_ahead;   /* steps whose rows were read ahead */
    int64_t steps_shared;  /* steps run with stealing */
} ody_chunk_stats;

/* chunk: rows per chunk (0: a micro-batch's whole share is one chunk);
 * train_rows: the largest share of a micro-batch. Not collective. */
ody_status ody_chunk_plan_create(ody_training_loop *loop, int64_t chunk, size_t train_rows,
                                 ody_chunk_plan **out);
/* Turn on chunk stealing among the node's ranks (collective; stays off,
 * ODY_OK, where no node has two ranks or /dev/shm lacks room). */
ody_status ody_chunk_plan_share(ody_chunk_plan *p);
void ody_chunk_plan_destroy(ody_chunk_plan *p);
/* Read this rank's rows of the step's `micro` micro-batches (or take those
 * read ahead). */
ody_status ody_chunk_plan_load(ody_chunk_plan *p, int64_t micro);
/* Chunks in the current step over all ranks. */
int64_t ody_chunk_plan_step_chunks(const ody_chunk_plan *p);
/* A round over the loaded rows (see ody_strategy_ops), then its chunks in
 * turn; last: asked between a first-round chunk's forward and backward. */
void ody_chunk_plan_begin_round(ody_chunk_plan *p, bool first, bool compute);
bool ody_chunk_plan_next(ody_chunk_plan *p, ody_batch *chunk);
bool ody_chunk_plan_last(ody_chunk_plan *p);
/* With stealing: read the next step's rows into the other half of this
 * rank's slot (work for the wait at the end of a step; plan: the plan). */
void ody_chunk_plan_read_ahead(void *plan);
bool ody_chunk_plan_stealing(const ody_chunk_plan *p);
ody_chunk_stats ody_chunk_plan_stats(const ody_chunk_plan *p);

#endif /* ODY_TRAIN_CHUNKS_H */
