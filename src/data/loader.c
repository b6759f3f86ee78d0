/*
 * data: the loader. It reads this rank's share of each step into buffers
 * sized at creation for the largest share (ody_sampler_max_local).
 *
 * With prefetch there are two buffer sets (slots) and one worker thread.
 * Invariant: between calls, a read of step next_step into slot `current`
 * has been requested from the worker (unless the epoch is over or a read
 * failed). next() waits for that read, requests step + 1 into the other
 * slot and hands out the first; the caller's batch stays untouched until
 * its next call. At most one read is ever outstanding, so the worker's
 * private ctx (its error text) is read only after the worker is done.
 *
 * Both paths fill a slot with the same function (fill), so the batches are
 * the same with and without prefetch. A training loader also augments its
 * samples there (ody_loader_augment): on the worker with prefetch, so it
 * overlaps the caller's compute, keyed by what the sample is and never by
 * who reads it.
 */
#include "data/data_internal.h"

#include <pthread.h>
#include <string.h>

typedef struct {
    float *x;     /* (max_rows, numel) */
    int32_t *y;   /* (max_rows) */
    int64_t *ids; /* (max_rows) */
    int n;
    int64_t step, global_count;
    bool ready; /* with prefetch: the requested read is done */
    ody_status status;
} slot;

struct ody_loader {
    ody_dataset *ds;
    ody_sampler *sampler;
    size_t numel, max_rows;
    int nslots;
    slot slots[2];
    bool started;
    int64_t steps, next_step;
    int current; /* slot of next_step (prefetch) */
    bool prefetch;
    pthread_t worker;
    bool worker_running; /* the thread, lock and conditions exist */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* worker: a request or quit */
    pthread_cond_t done; /* caller: a request finished */
    int request;         /* slot the worker is asked to fill, -1 when idle */
    bool quit;
    ody_ctx worker_ctx; /* private copy: the worker's error messages land here */
    /* augmentation (ody_loader_augment); set before any read, then only read */
    ody_augment_options augment;
    bool augmenting;     /* augment does something */
    uint64_t augment_seed;
    float augment_fill;  /* the padding: a black pixel, normalised */
    float *augment_scratch; /* (H * W) one plane */
};

/* Augment the n rows of sl as the data-set samples sl->ids of the sampler's epoch. */
static void augment_rows(const ody_loader *l, slot *sl)
{
    const ody_shape shape = l->ds->sample_shape;
    for (int i = 0; i < sl->n; i++) {
        ody_augment_draw d =
            ody_augment_choose(&l->augment, &shape, l->augment_seed, l->sampler->epoch, sl->ids[i]);
        ody_augment_apply(sl->x + (size_t)i * l->numel, shape, l->augment.crop_padding, d,
                          l->augment_fill, l->augment_scratch);
    }
}

/* Read step `step` of this rank into sl. Never allocates; errors go to ctx. */
static ody_status fill(ody_loader *l, ody_ctx *ctx, slot *sl, int64_t step)
{
    ody_share share;
    ody_sampler_share(l->sampler, step, &share);
    sl->step = step;
    sl->global_count = share.global_count;
    sl->n = 0;
    if ((size_t)share.local_count > l->max_rows)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "loader: step %lld has %lld rows, buffers hold %zu",
                        (long long)step, (long long)share.local_count, l->max_rows);
    sl->n = (int)share.local_count;
    if (sl->n > 0)
        memcpy(sl->ids, share.indices, (size_t)sl->n * sizeof *sl->ids);
    ody_status st = ody_dataset_read(l->ds, ctx, sl->ids, sl->n, sl->x, sl->y);
    if (st == ODY_OK && l->augmenting)
        augment_rows(l, sl);
    return st;
}

static void *worker_main(void *arg)
{
    ody_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->quit && l->request < 0)
            pthread_cond_wait(&l->wake, &l->lock);
        if (l->quit)
            break;
        slot *sl = &l->slots[l->request];
        pthread_mutex_unlock(&l->lock);
        ody_status st = fill(l, &l->worker_ctx, sl, sl->step);
        pthread_mutex_lock(&l->lock);
        sl->status = st;
        sl->ready = true;
        l->request = -1;
        pthread_cond_broadcast(&l->done);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* Ask the (idle) worker to read `step` into slot `index`. */
static void request(ody_loader *l, int index, int64_t step)
{
    pthread_mutex_lock(&l->lock);
    l->slots[index].step = step;
    l->slots[index].ready = false;
    l->request = index;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/* Wait until the worker is idle: any outstanding read has finished. */
static void wait_idle(ody_loader *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->request >= 0)
        pthread_cond_wait(&l->done, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

/* Wait for slot `index`'s read; its error (text from the worker's ctx) goes to ctx. */
static ody_status await(ody_loader *l, ody_ctx *ctx, int index)
{
    slot *sl = &l->slots[index];
    pthread_mutex_lock(&l->lock);
    while (!sl->ready)
        pthread_cond_wait(&l->done, &l->lock);
    ody_status st = sl->status;
    if (st != ODY_OK)
        ody_fail(ctx, st, "%s", ody_ctx_error(&l->worker_ctx));
    pthread_mutex_unlock(&l->lock);
    return st;
}

/* One (H, W) plane of the samples (sample_shape is (C, H, W) once augmenting). */
static size_t augment_scratch_bytes(const ody_loader *l)
{
    return (size_t)l->ds->sample_shape.dims[1] * (size_t)l->ds->sample_shape.dims[2] *
           sizeof(float);
}

static ody_status slots_create(ody_ctx *ctx, ody_loader *l)
{
    ody_status st = ODY_OK;
    for (int i = 0; i < l->nslots && st == ODY_OK; i++) {
        void *x = NULL, *y = NULL, *ids = NULL;
        st = ody_alloc(ctx, l->max_rows * l->numel * sizeof(float), "loader batch", &x);
        if (st == ODY_OK)
            st = ody_alloc(ctx, l->max_rows * sizeof(int32_t), "loader labels", &y);
        if (st == ODY_OK)
            st = ody_alloc(ctx, l->max_rows * sizeof(int64_t), "loader sample ids", &ids);
        l->slots[i] = (slot){.x = x, .y = y, .ids = ids, .step = -1};
    }
    return st;
}

static void slots_destroy(ody_ctx *ctx, ody_loader *l)
{
    for (int i = 0; i < l->nslots; i++) {
        ody_free(ctx, l->slots[i].x, l->max_rows * l->numel * sizeof(float));
        ody_free(ctx, l->slots[i].y, l->max_rows * sizeof(int32_t));
        ody_free(ctx, l->slots[i].ids, l->max_rows * sizeof(int64_t));
    }
}

static ody_status worker_start(ody_ctx *ctx, ody_loader *l)
{
    l->worker_ctx = *ctx;
    ody_ctx_clear_error(&l->worker_ctx);
    l->request = -1;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->done, NULL);
    int rc = pthread_create(&l->worker, NULL, worker_main, l);
    if (rc != 0) {
        pthread_cond_destroy(&l->done);
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
        return ody_fail(ctx, ODY_ERR_INTERNAL, "loader: cannot start the prefetch thread: %s",
                        strerror(rc));
    }
    l->worker_running = true;
    return ODY_OK;
}

ody_status ody_loader_create(ody_ctx *ctx, ody_loader **out, ody_dataset *ds, ody_sampler *sampler,
                             bool prefetch)
{
    *out = NULL;
    if (sampler->n > ds->n)
        return ody_fail(ctx, ODY_ERR_INTERNAL,
                        "loader: the sampler covers %lld samples but %s has %lld",
                        (long long)sampler->n, ds->source, (long long)ds->n);
    void *p = NULL;
    ody_status st = ody_alloc(ctx, sizeof(ody_loader), "loader", &p);
    if (st != ODY_OK)
        return st;
    ody_loader *l = p;
    l->ds = ds;
    l->sampler = sampler;
    l->numel = (size_t)ody_shape_numel(&ds->sample_shape);
    l->max_rows = (size_t)ody_sampler_max_local(sampler);
    l->prefetch = prefetch;
    l->nslots = prefetch ? 2 : 1;
    st = slots_create(ctx, l);
    if (st == ODY_OK && prefetch)
        st = worker_start(ctx, l);
    if (st != ODY_OK) {
        ody_loader_destroy(ctx, l);
        return st;
    }
    *out = l;
    return ODY_OK;
}

void ody_loader_destroy(ody_ctx *ctx, ody_loader *l)
{
    if (!l)
        return;
    if (l->worker_running) {
        pthread_mutex_lock(&l->lock);
        l->quit = true; /* an outstanding read finishes first; the worker then sees quit */
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->worker, NULL);
        pthread_cond_destroy(&l->done);
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
    }
    slots_destroy(ctx, l);
    if (l->augment_scratch)
        ody_free(ctx, l->augment_scratch, augment_scratch_bytes(l));
    ody_free(ctx, l, sizeof *l);
}

ody_status ody_loader_augment(ody_ctx *ctx, ody_loader *l, const ody_augment_options *opt,
                              uint64_t seed)
{
    ody_status st = ody_augment_check(ctx, opt, &l->ds->sample_shape, l->ds->source);
    if (st != ODY_OK)
        return st;
    bool on = ody_augment_active(opt);
    if (on && !l->augment_scratch) {
        void *p = NULL;
        st = ody_alloc(ctx, augment_scratch_bytes(l), "augmentation scratch", &p);
        if (st != ODY_OK)
            return st;
        l->augment_scratch = p;
    }
    if (l->prefetch)
        wait_idle(l); /* no read may run while the settings change */
    l->augment = *opt;
    l->augment_seed = seed;
    l->augment_fill = ody_augment_fill(l->ds->norm);
    l->augmenting = on;
    return ODY_OK;
}

ody_status ody_loader_start_epoch(ody_ctx *ctx, ody_loader *l, int64_t epoch, int64_t first_step)
{
    /* A read in flight uses the sampler's order: let it finish before the order changes. */
    if (l->prefetch)
        wait_idle(l);
    ody_sampler_set_epoch(l->sampler, epoch);
    l->steps = ody_sampler_steps(l->sampler);
    if (first_step < 0 || first_step > l->steps) {
        l->started = false;
        return ody_fail(ctx, ODY_ERR_INTERNAL,
                        "loader: first step %lld is outside the epoch's %lld steps",
                        (long long)first_step, (long long)l->steps);
    }
    l->next_step = first_step;
    l->current = 0;
    l->started = true;
    if (l->prefetch && first_step < l->steps)
        request(l, l->current, first_step);
    return ODY_OK;
}

ody_status ody_loader_next(ody_ctx *ctx, ody_loader *l, ody_batch *out, bool *done)
{
    *done = false;
    if (!l->started)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "loader: next() before start_epoch()");
    if (l->next_step >= l->steps) {
        *done = true;
        return ODY_OK;
    }
    int64_t step = l->next_step;
    slot *sl = &l->slots[l->current];
    ody_status st = l->prefetch ? await(l, ctx, l->current) : fill(l, ctx, sl, step);
    if (st != ODY_OK)
        return st; /* a failed step stays failed: calling again returns the same error */
    l->next_step++;
    if (l->prefetch) {
        l->current ^= 1;
        if (l->next_step < l->steps)
            request(l, l->current, l->next_step);
    }
    *out = (ody_batch){.step = sl->step,
                       .n = sl->n,
                       .global_count = sl->global_count,
                       .x = sl->x,
                       .y = sl->y,
                       .ids = sl->ids};
    return ODY_OK;
}
