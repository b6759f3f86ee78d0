/*
 * data: the sampler. The order of an epoch is a permutation keyed by
 * (seed, epoch) and nothing else; step s covers global positions
 * [s*B, s*B + count) of it, and rank r takes a contiguous part of those.
 *
 * The parts are made of whole chunks: with nchunks = ceil(count / chunk)
 * chunks and P ranks, rank r gets q = nchunks / P chunks plus one more
 * when r < nchunks % P, starting at chunk r*q + min(r, nchunks % P). The
 * last chunk may be short, so positions are clipped to count. With
 * chunk = 1 the parts differ in size by at most one sample.
 */
#include "data/data_internal.h"

ody_status ody_sampler_create(ody_ctx *ctx, ody_sampler **out, int64_t n, int64_t batch,
                              bool shuffle, bool drop_last, uint64_t seed, int chunk)
{
    *out = NULL;
    if (n < 0)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "sampler: %lld samples", (long long)n);
    if (batch < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "training.batch_size: %lld (need at least 1)",
                        (long long)batch);
    if (chunk < 1)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "sampler: chunk %d (need at least 1)", chunk);
    void *s = NULL, *order = NULL;
    ody_status st = ody_alloc(ctx, sizeof(ody_sampler), "sampler", &s);
    if (st == ODY_OK)
        st = ody_alloc(ctx, (size_t)n * sizeof(int64_t), "sampler order", &order);
    if (st != ODY_OK) {
        ody_free(ctx, s, sizeof(ody_sampler));
        return st;
    }
    ody_sampler *sampler = s;
    *sampler = (ody_sampler){.n = n,
                             .batch = batch,
                             .shuffle = shuffle,
                             .drop_last = drop_last,
                             .seed = seed,
                             .rank = ctx->rank,
                             .size = ctx->size,
                             .chunk = chunk,
                             .epoch = -1,
                             .order = order};
    for (int64_t i = 0; i < n; i++)
        sampler->order[i] = i;
    *out = sampler;
    return ODY_OK;
}

void ody_sampler_destroy(ody_ctx *ctx, ody_sampler *s)
{
    if (!s)
        return;
    ody_free(ctx, s->order, (size_t)s->n * sizeof(int64_t));
    ody_free(ctx, s, sizeof *s);
}

int64_t ody_sampler_steps(const ody_sampler *s)
{
    return s->drop_last ? s->n / s->batch : (s->n + s->batch - 1) / s->batch;
}

void ody_sampler_set_epoch(ody_sampler *s, int64_t epoch)
{
    if (s->shuffle) {
        ody_rng_key key = {.seed = s->seed, .stream = ODY_STREAM_SHUFFLE};
        ody_rng_permutation(key, (uint64_t)epoch, s->n, s->order);
    } else {
        for (int64_t i = 0; i < s->n; i++)
            s->order[i] = i;
    }
    s->epoch = epoch;
}

/* Rank `rank`'s part [*first, *first + *count) of a step of `total` positions. */
static void part_of(int64_t total, int chunk, int size, int rank, int64_t *first, int64_t *count)
{
    int64_t chunks = (total + chunk - 1) / chunk;
    int64_t each = chunks / size, extra = chunks % size;
    int64_t begin = rank * each + (rank < extra ? rank : extra);
    int64_t end = begin + each + (rank < extra ? 1 : 0);
    int64_t lo = begin * chunk, hi = end * chunk;
    lo = lo < total ? lo : total;
    hi = hi < total ? hi : total;
    *first = lo;
    *count = hi - lo;
}

/* Samples in step `step` across all ranks (0 past the end of the epoch). */
static int64_t step_count(const ody_sampler *s, int64_t step)
{
    if (step < 0 || step >= ody_sampler_steps(s))
        return 0;
    int64_t left = s->n - step * s->batch;
    return left < s->batch ? left : s->batch;
}

void ody_sampler_share(const ody_sampler *s, int64_t step, ody_share *out)
{
    int64_t total = step_count(s, step), first, count;
    part_of(total, s->chunk, s->size, s->rank, &first, &count);
    int64_t global_first = total > 0 ? step * s->batch : 0;
    *out = (ody_share){.step = step,
                       .global_first = global_first,
                       .global_count = total,
                       .local_first = global_first + first,
                       .local_count = count,
                       .indices = s->order + global_first + first};
}

int64_t ody_sampler_max_local(const ody_sampler *s)
{
    /* Only two step sizes occur: a full batch and the last, partial one. */
    int64_t steps = ody_sampler_steps(s), most = 0;
    int64_t sizes[2] = {step_count(s, 0), step_count(s, steps - 1)};
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < s->size; r++) {
            int64_t first, count;
            part_of(sizes[k], s->chunk, s->size, r, &first, &count);
            most = count > most ? count : most;
        }
    return most;
}
