/*
 * data: a subset of another data set, through an index map.
 *
 * A subset either borrows its base (ody_subset_open: the caller keeps and
 * releases it) or shares it with the other half of a split
 * (ody_subset_split: a counter held by both halves says how many still use
 * it, and the last one destroyed releases it).
 */
#include "data/data_internal.h"

#include <string.h>

/* Indices mapped per call to the base's read: a stack buffer, since reads may not allocate. */
#define SUBSET_BATCH 256

typedef struct {
    ody_dataset ds;
    ody_dataset *base;
    int64_t *map; /* (map_len) base index of each sample */
    int64_t map_len;
    int *sharers; /* NULL when base is borrowed; else subsets still using base */
} subset_dataset;

static ody_status subset_read(ody_dataset *ds, ody_ctx *ctx, const int64_t *indices, int n,
                              float *x, int32_t *y)
{
    const subset_dataset *d = (const subset_dataset *)ds;
    size_t numel = (size_t)ody_shape_numel(&ds->sample_shape);
    int64_t mapped[SUBSET_BATCH];
    ody_status st = ODY_OK;
    for (int first = 0; first < n && st == ODY_OK; first += SUBSET_BATCH) {
        int count = n - first < SUBSET_BATCH ? n - first : SUBSET_BATCH;
        for (int i = 0; i < count; i++)
            mapped[i] = d->map[indices[first + i]];
        st = ody_dataset_read(d->base, ctx, mapped, count, x + (size_t)first * numel, y + first);
    }
    return st;
}

static void subset_destroy(ody_dataset *ds, ody_ctx *ctx)
{
    subset_dataset *d = (subset_dataset *)ds;
    if (d->sharers && --*d->sharers == 0) {
        ody_free(ctx, d->sharers, sizeof *d->sharers);
        ody_dataset_destroy(ctx, d->base);
    }
    ody_free(ctx, d->map, (size_t)d->map_len * sizeof *d->map);
    ody_free(ctx, d, sizeof *d);
}

static const ody_dataset_ops subset_ops = {
    .kind = "subset", .read = subset_read, .destroy = subset_destroy};

ody_status ody_subset_open(ody_ctx *ctx, ody_dataset *base, const int64_t *indices, int64_t n,
                           ody_dataset **out)
{
    *out = NULL;
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= base->n)
            return ody_fail(ctx, ODY_ERR_DATA,
                            "%s: subset index %lld (entry %lld) is out of range: "
                            "the data set has %lld samples",
                            base->source, (long long)indices[i], (long long)i, (long long)base->n);
    void *map = NULL;
    ody_status st = ody_alloc(ctx, (size_t)n * sizeof(int64_t), "subset index map", &map);
    if (st == ODY_OK)
        st = ody_data_new(ctx, sizeof(subset_dataset), &subset_ops, base->source, out);
    if (st != ODY_OK) {
        ody_free(ctx, map, (size_t)n * sizeof(int64_t));
        return st;
    }
    subset_dataset *d = (subset_dataset *)*out;
    if (n > 0)
        memcpy(map, indices, (size_t)n * sizeof(int64_t));
    d->base = base;
    d->map = map;
    d->map_len = n;
    d->ds.n = n;
    d->ds.sample_shape = base->sample_shape;
    d->ds.num_classes = base->num_classes;
    d->ds.norm = base->norm;
    d->ds.bytes_held = (size_t)n * sizeof(int64_t);
    return ODY_OK;
}

ody_status ody_subset_split(ody_ctx *ctx, ody_dataset *base, const int64_t *order, int64_t n_first,
                            ody_dataset **first, ody_dataset **second)
{
    *first = *second = NULL;
    void *sharers = NULL;
    ody_status st = ody_alloc(ctx, sizeof(int), "subset share count", &sharers);
    if (st == ODY_OK)
        st = ody_subset_open(ctx, base, order, n_first, first);
    if (st == ODY_OK)
        st = ody_subset_open(ctx, base, order + n_first, base->n - n_first, second);
    if (st != ODY_OK) {
        /* Both halves still borrow base here, so destroying them leaves it alone. */
        ody_dataset_destroy(ctx, *first);
        ody_dataset_destroy(ctx, *second);
        *first = *second = NULL;
        ody_free(ctx, sharers, sizeof(int));
        return st;
    }
    *(int *)sharers = 2;
    ((subset_dataset *)*first)->sharers = sharers;
    ((subset_dataset *)*second)->sharers = sharers;
    return ODY_OK;
}
