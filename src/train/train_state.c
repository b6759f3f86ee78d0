/*
 * train: the training state in a checkpoint, and back.
 *
 * Rank 0 writes (parameters and optimizer state are identical on every
 * rank) and rank 0 reads and checks; what it read is broadcast, so a run
 * resumes on any number of ranks. The position is kept in global samples:
 * the epoch's order depends only on (seed, epoch), so step k of an epoch
 * is the same samples at any rank count. Layout: checkpoints/README.md.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/train_internal.h"

/* Everything but the big buffers, as rank 0 reads it, broadcast as bytes. */
typedef struct {
    int64_t epoch, step_in_epoch, global_step, samples_seen;
    int64_t global_batch, world_size, train_samples;
    int64_t epoch_loss_fixed, epoch_correct, epoch_count;
    int64_t optimizer_steps;
    double lr;
    double best_val_loss, best_val_accuracy;
    int64_t best_epoch;
    int64_t history_len;
    int64_t skipped_steps;
    int nschedule, nscaler, nscales;
    double scales[ODY_MODEL_MAX_LAYERS * ODY_LAYER_MAX_PARAMS];
    double schedule[ODY_SCHEDULE_STATE_MAX];
    double scaler[ODY_LOSS_SCALER_STATE];
    int ncb[ODY_MAX_CALLBACKS];
    double cb[ODY_MAX_CALLBACKS][ODY_CALLBACK_STATE_MAX];
} resume_header;

/* The metric history as series, in this order. */
static const char *const history_names[] = {"epoch", "train_loss", "train_accuracy", "val_loss",
                                            "val_accuracy", "lr", "samples_per_sec"};
#define NHIST ((int)(sizeof history_names / sizeof *history_names))

static double *history_field(ody_epoch_record *r, int f)
{
    double *fields[NHIST] = {NULL, &r->train_loss, &r->train_accuracy, &r->val_loss,
                             &r->val_accuracy, &r->lr, &r->samples_per_sec};
    return fields[f];
}

/* ---------------------------------------------------------------- save */

/* The model's layers as "conv2d 6x28x28; relu 6x28x28; ...": two models
 * with equal parameter shapes but other layers (tanh for relu) differ. */
static void describe_model(const ody_model *m, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < m->nlayers && used < len; i++) {
        char shape[64];
        ody_shape_format(&m->layers[i]->out_shape, shape, sizeof shape);
        used += (size_t)snprintf(out + used, len - used, "%s%s %s", i ? "; " : "",
                                 m->layers[i]->ops->kind, shape);
    }
}

/* The first layer where two descriptions differ, for the error message. */
static void first_difference(const char *a, const char *b, char *out, size_t len)
{
    int layer = 1;
    while (*a && *a == *b) {
        layer += (*a == ';');
        a++;
        b++;
    }
    while (layer > 1 && a[-1] != ' ' && a[-1] != ';')
        a--, b--;
    snprintf(out, len, "layer %d: the checkpoint has '%.*s', the config '%.*s'", layer,
             (int)strcspn(a, ";"), a, (int)strcspn(b, ";"), b);
}

static ody_status put_buffers(ody_ctx *ctx, ody_ckpt *ck, const ody_training_loop *loop)
{
    const ody_model *m = loop->model;
    const ody_optimizer *opt = loop->optimizer;
    char name[160];
    char arch[4096];
    describe_model(m, arch, sizeof arch);
    ody_status st = ody_ckpt_put_string(ctx, ck, "model/name", loop->cfg->model.name);
    if (st == ODY_OK)
        st = ody_ckpt_put_string(ctx, ck, "model/architecture", arch);
    if (st == ODY_OK)
        st = ody_ckpt_put_i64(ctx, ck, "model/parameters", (int64_t)m->nparams);
    for (int t = 0; st == ODY_OK && t < m->ntensors; t++) {
        snprintf(name, sizeof name, "model/%s", m->tensors[t]->name);
        st = ody_ckpt_put_tensor(ctx, ck, name, &m->tensors[t]->shape, m->tensors[t]->value);
    }
    if (st == ODY_OK)
        st = ody_ckpt_put_string(ctx, ck, "optimizer/name", loop->cfg->optimizer.name);
    if (st == ODY_OK)
        st = ody_ckpt_put_i64(ctx, ck, "optimizer/steps", opt->steps);
    for (int s = 0; st == ODY_OK && s < opt->nstate; s++)
        for (int t = 0; st == ODY_OK && t < m->ntensors; t++) {
            const ody_param *p = m->tensors[t];
            if (p->buffer) /* no optimizer state */
                continue;
            snprintf(name, sizeof name, "optimizer/%s/%s", opt->state_names[s], p->name);
            st = ody_ckpt_put_tensor(ctx, ck, name, &p->shape, opt->state[s].data + p->offset);
        }
    return st;
}

/* Position to resume from: after a finished epoch, the start of the next.
 * sums: the epoch's train sums over all ranks (loss, correct, count). */
static void resume_position(const ody_training_loop *loop, bool epoch_done, const int64_t sums[3],
                            resume_header *h)
{
    const ody_loop_state *s = &loop->state;
    h->epoch = s->epoch;
    h->step_in_epoch = s->step_in_epoch;
    h->epoch_loss_fixed = sums[0];
    h->epoch_correct = sums[1];
    h->epoch_count = sums[2];
    if (epoch_done && s->step_in_epoch >= s->steps_per_epoch) {
        h->epoch++;
        h->step_in_epoch = 0;
        h->epoch_loss_fixed = h->epoch_correct = h->epoch_count = 0;
    }
}

/* Deterministic mode's fixed-point scales: a resumed run continues with the
 * same ones, so its sums round exactly as the uninterrupted run's. */
static ody_status put_exact_scales(ody_ctx *ctx, ody_ckpt *ck, const ody_exact *e)
{
    int n = ody_exact_tensors(e);
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the fixed-point scales");
    ody_exact_save(e, v);
    ody_status st = ody_ckpt_put_series(ctx, ck, "deterministic/scales", v, n);
    free(v);
    return st;
}

static ody_status put_state(ody_ctx *ctx, ody_ckpt *ck, const ody_training_loop *loop,
                            bool epoch_done, const int64_t sums[3])
{
    resume_header h = {0};
    resume_position(loop, epoch_done, sums, &h);
    const ody_loop_state *s = &loop->state;
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"state/epoch", h.epoch},
        {"state/step_in_epoch", h.step_in_epoch},
        {"state/sample_cursor", h.step_in_epoch * loop->global_batch},
        {"state/global_step", s->global_step},
        {"state/samples_seen", s->samples_seen},
        {"state/global_batch", loop->global_batch},
        {"state/world_size", loop->ctx->size},
        {"state/train_samples", loop->data.sampler->n},
        {"state/epoch_loss_fixed", h.epoch_loss_fixed},
        {"state/epoch_correct", h.epoch_correct},
        {"state/epoch_count", h.epoch_count},
        {"rng/seed", loop->cfg->experiment.seed},
        {"rng/shuffle_counter", h.epoch},
        {"rng/dropout_counter", s->global_step},
        {"metrics/best_epoch", loop->metrics.best_epoch},
    };
    ody_status st = ODY_OK;
    for (size_t i = 0; st == ODY_OK && i < sizeof ints / sizeof *ints; i++)
        st = ody_ckpt_put_i64(ctx, ck, ints[i].name, ints[i].v);
    if (st == ODY_OK)
        st = ody_ckpt_put_i64(ctx, ck, "state/skipped_steps", s->skipped_steps);
    if (st == ODY_OK)
        st = ody_ckpt_put_f64(ctx, ck, "state/lr", s->lr);
    double v[ODY_SCHEDULE_STATE_MAX];
    if (st == ODY_OK)
        st = ody_ckpt_put_series(ctx, ck, "scheduler/state", v, ody_schedule_save(&loop->schedule, v));
    if (st == ODY_OK)
        st = ody_ckpt_put_series(ctx, ck, "scaler/state", v, ody_loss_scaler_save(&loop->scaler, v));
    ody_exact *exact = ody_exact_step_sum(loop->strategy);
    if (st == ODY_OK && exact)
        st = put_exact_scales(ctx, ck, exact);
    if (st == ODY_OK)
        st = ody_ckpt_put_f64(ctx, ck, "metrics/best_val_loss", loop->metrics.best_val_loss);
    if (st == ODY_OK)
        st = ody_ckpt_put_f64(ctx, ck, "metrics/best_val_accuracy", loop->metrics.best_val_accuracy);
    return st;
}

static ody_status put_history(ody_ctx *ctx, ody_ckpt *ck, const ody_training_loop *loop)
{
    const ody_training_metrics *m = &loop->metrics;
    int64_t n = m->history_len;
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the metric history");
    ody_status st = ODY_OK;
    for (int f = 0; st == ODY_OK && f < NHIST; f++) {
        for (int64_t i = 0; i < n; i++) {
            ody_epoch_record *r = &m->history[i];
            v[i] = f == 0 ? (double)r->epoch : *history_field(r, f);
        }
        char name[64];
        snprintf(name, sizeof name, "metrics/%s", history_names[f]);
        st = ody_ckpt_put_series(ctx, ck, name, v, n);
    }
    free(v);
    return st;
}

static ody_status put_callbacks(ody_ctx *ctx, ody_ckpt *ck, const ody_training_loop *loop)
{
    ody_status st = ODY_OK;
    for (int i = 0; st == ODY_OK && i < loop->ncallbacks; i++) {
        const ody_callback *cb = &loop->callbacks[i];
        if (!cb->ops->save_state)
            continue;
        double v[ODY_CALLBACK_STATE_MAX];
        int n = cb->ops->save_state(cb->self, loop, v);
        char name[96];
        snprintf(name, sizeof name, "callbacks/%s", cb->ops->name);
        st = ody_ckpt_put_series(ctx, ck, name, v, n);
    }
    return st;
}

static ody_status write_checkpoint(ody_training_loop *loop, const char *path, bool epoch_done,
                                   const int64_t sums[3])
{
    ody_ctx *ctx = loop->ctx;
    ody_ckpt *ck = NULL;
    char *yaml = NULL;
    ody_status st = ody_ckpt_create(ctx, path, &ck);
    if (st == ODY_OK)
        st = ody_config_to_yaml(ctx, loop->cfg, &yaml);
    if (st == ODY_OK)
        st = ody_ckpt_put_string(ctx, ck, "config", yaml);
    free(yaml);
    if (st == ODY_OK)
        st = put_buffers(ctx, ck, loop);
    if (st == ODY_OK)
        st = put_state(ctx, ck, loop, epoch_done, sums);
    if (st == ODY_OK)
        st = put_history(ctx, ck, loop);
    if (st == ODY_OK)
        st = put_callbacks(ctx, ck, loop);
    if (st != ODY_OK) {
        ody_ckpt_abort(ck);
        return st;
    }
    return ody_ckpt_commit(ctx, ck);
}

ody_status ody_train_checkpoint_save(ody_training_loop *loop, const char *path, bool epoch_done)
{
    double t0 = ody_now();
    /* The epoch's train sums are each rank's own: the checkpoint keeps their total. */
    const ody_training_metrics *m = &loop->metrics;
    int64_t sums[3] = {m->epoch_loss_fixed, m->epoch_correct, m->epoch_count};
    ody_status st = ody_comm_sum_i64(loop->ctx, sums, 3);
    if (st == ODY_OK && loop->ctx->rank == 0)
        st = write_checkpoint(loop, path, epoch_done, sums);
    st = ody_comm_agree(loop->ctx, st);
    ody_loop_phase(loop, ODY_PHASE_CHECKPOINT, t0);
    return st;
}

/* ---------------------------------------------------------------- load */

/* The checkpoint's model (name, layers, parameter count) and optimizer
 * (unless NULL: evaluation needs none) must be this run's; the message
 * names the first difference. */
static ody_status compare_identity(ody_ctx *ctx, const ody_training_loop *loop, const char *name,
                                   const char *arch, int64_t count, const char *optimizer)
{
    const ody_model *m = loop->model;
    char mine[4096], diff[512];
    describe_model(m, mine, sizeof mine);
    if (strcmp(name, loop->cfg->model.name) != 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "model does not match: the checkpoint holds a %s, the config builds a %s",
                        name, loop->cfg->model.name);
    if (strcmp(arch, mine) != 0) {
        first_difference(arch, mine, diff, sizeof diff);
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "model does not match the config: %s", diff);
    }
    if (count != (int64_t)m->nparams)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "model does not match: the checkpoint has %lld parameters, the config's "
                        "%s has %zu",
                        (long long)count, m->name, m->nparams);
    if (optimizer && strcmp(optimizer, loop->cfg->optimizer.name) != 0)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "optimizer does not match: the checkpoint was trained with %s, the "
                        "config asks for %s",
                        optimizer, loop->cfg->optimizer.name);
    return ODY_OK;
}

/* *unreadable: the identity could not be read (rather than not matching).
 * with_optimizer: the optimizer must match too (a resume). */
static ody_status check_identity(ody_ctx *ctx, ody_ckpt *ck, const ody_training_loop *loop,
                                 bool with_optimizer, bool *unreadable)
{
    char *name = NULL, *arch = NULL, *optimizer = NULL;
    int64_t count = 0;
    ody_status st = ody_ckpt_get_string(ctx, ck, "model/name", &name);
    if (st == ODY_OK)
        st = ody_ckpt_get_string(ctx, ck, "model/architecture", &arch);
    if (st == ODY_OK)
        st = ody_ckpt_get_i64(ctx, ck, "model/parameters", &count);
    if (st == ODY_OK && with_optimizer)
        st = ody_ckpt_get_string(ctx, ck, "optimizer/name", &optimizer);
    *unreadable = st == ODY_ERR_CHECKPOINT;
    if (st == ODY_OK)
        st = compare_identity(ctx, loop, name, arch, count, optimizer);
    free(name);
    free(arch);
    free(optimizer);
    return st;
}

/* The parameters, every read checksummed. */
static ody_status get_params(ody_ctx *ctx, ody_ckpt *ck, ody_model *m)
{
    char name[160];
    ody_status st = ODY_OK;
    for (int t = 0; st == ODY_OK && t < m->ntensors; t++) {
        snprintf(name, sizeof name, "model/%s", m->tensors[t]->name);
        st = ody_ckpt_get_tensor(ctx, ck, name, &m->tensors[t]->shape, m->tensors[t]->value);
    }
    return st;
}

/* The parameters and the optimizer state. */
static ody_status get_buffers(ody_ctx *ctx, ody_ckpt *ck, ody_training_loop *loop)
{
    ody_model *m = loop->model;
    ody_optimizer *opt = loop->optimizer;
    char name[160];
    ody_status st = get_params(ctx, ck, m);
    for (int s = 0; st == ODY_OK && s < opt->nstate; s++)
        for (int t = 0; st == ODY_OK && t < m->ntensors; t++) {
            const ody_param *p = m->tensors[t];
            if (p->buffer)
                continue;
            snprintf(name, sizeof name, "optimizer/%s/%s", opt->state_names[s], p->name);
            st = ody_ckpt_get_tensor(ctx, ck, name, &p->shape, opt->state[s].data + p->offset);
        }
    return st;
}

/* A series of at most max values into v; *n gets its length. */
static ody_status get_small_series(ody_ctx *ctx, ody_ckpt *ck, const char *name, double *v,
                                   int max, int *n)
{
    double *all = NULL;
    int64_t len = 0;
    ody_status st = ody_ckpt_get_series(ctx, ck, name, &all, &len);
    if (st == ODY_OK && len > max)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s holds %lld values (at most %d)", name,
                      (long long)len, max);
    if (st == ODY_OK && len > 0)
        memcpy(v, all, (size_t)len * sizeof *v);
    *n = (int)len;
    free(all);
    return st;
}

static ody_status get_header(ody_ctx *ctx, ody_ckpt *ck, resume_header *h)
{
    const struct {
        const char *name;
        int64_t *v;
    } ints[] = {
        {"state/epoch", &h->epoch},
        {"state/step_in_epoch", &h->step_in_epoch},
        {"state/global_step", &h->global_step},
        {"state/samples_seen", &h->samples_seen},
        {"state/global_batch", &h->global_batch},
        {"state/world_size", &h->world_size},
        {"state/train_samples", &h->train_samples},
        {"state/epoch_loss_fixed", &h->epoch_loss_fixed},
        {"state/epoch_correct", &h->epoch_correct},
        {"state/epoch_count", &h->epoch_count},
        {"optimizer/steps", &h->optimizer_steps},
        {"metrics/best_epoch", &h->best_epoch},
        {"state/skipped_steps", &h->skipped_steps},
    };
    ody_status st = ODY_OK;
    for (size_t i = 0; st == ODY_OK && i < sizeof ints / sizeof *ints; i++)
        st = ody_ckpt_get_i64(ctx, ck, ints[i].name, ints[i].v);
    if (st == ODY_OK)
        st = ody_ckpt_get_f64(ctx, ck, "state/lr", &h->lr);
    if (st == ODY_OK)
        st = get_small_series(ctx, ck, "scheduler/state", h->schedule, ODY_SCHEDULE_STATE_MAX,
                              &h->nschedule);
    if (st == ODY_OK)
        st = get_small_series(ctx, ck, "scaler/state", h->scaler, ODY_LOSS_SCALER_STATE,
                              &h->nscaler);
    if (st == ODY_OK && ody_ckpt_has(ck, "deterministic/scales"))
        st = get_small_series(ctx, ck, "deterministic/scales", h->scales,
                              (int)(sizeof h->scales / sizeof *h->scales), &h->nscales);
    if (st == ODY_OK)
        st = ody_ckpt_get_f64(ctx, ck, "metrics/best_val_loss", &h->best_val_loss);
    if (st == ODY_OK)
        st = ody_ckpt_get_f64(ctx, ck, "metrics/best_val_accuracy", &h->best_val_accuracy);
    return st;
}

/* The checkpoint must continue this config's experiment. */
static ody_status check_compatible(ody_training_loop *loop, const resume_header *h)
{
    ody_ctx *ctx = loop->ctx;
    if (h->global_batch != loop->global_batch)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "global batch does not match: the checkpoint was written with %lld "
                        "(on %lld ranks), this run has %lld; resume with training.batch_size=%lld",
                        (long long)h->global_batch, (long long)h->world_size,
                        (long long)loop->global_batch, (long long)h->global_batch);
    if (h->train_samples != loop->data.sampler->n)
        return ody_fail(ctx, ODY_ERR_CHECKPOINT,
                        "training set does not match: the checkpoint saw %lld samples, this run has %lld",
                        (long long)h->train_samples, (long long)loop->data.sampler->n);
    if (h->step_in_epoch > ody_sampler_steps(loop->data.sampler))
        return ody_fail(ctx, ODY_ERR_CHECKPOINT, "position step %lld is past the end of the epoch",
                        (long long)h->step_in_epoch);
    return ODY_OK;
}

/* Rank 0 reads history and callback state into the header and the loop. */
static ody_status get_history(ody_ctx *ctx, ody_ckpt *ck, ody_training_loop *loop,
                              resume_header *h)
{
    ody_training_metrics *m = &loop->metrics;
    ody_status st = ODY_OK;
    for (int f = 0; st == ODY_OK && f < NHIST; f++) {
        double *v = NULL;
        int64_t n = 0;
        char name[64];
        snprintf(name, sizeof name, "metrics/%s", history_names[f]);
        st = ody_ckpt_get_series(ctx, ck, name, &v, &n);
        if (st == ODY_OK && f == 0) {
            m->history_len = 0;
            for (int64_t i = 0; i < n && st == ODY_OK; i++)
                if (!ody_training_metrics_push_epoch(m, 0, 0))
                    st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the metric history");
            h->history_len = n;
        } else if (st == ODY_OK && n != h->history_len) {
            st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "%s has %lld values, metrics/epoch has %lld",
                          name, (long long)n, (long long)h->history_len);
        }
        for (int64_t i = 0; st == ODY_OK && i < n; i++) {
            if (f == 0)
                m->history[i].epoch = (int64_t)v[i];
            else
                *history_field(&m->history[i], f) = v[i];
        }
        free(v);
    }
    for (int i = 0; st == ODY_OK && i < loop->ncallbacks; i++) {
        const ody_callback *cb = &loop->callbacks[i];
        char name[96];
        snprintf(name, sizeof name, "callbacks/%s", cb->ops->name);
        if (!cb->ops->load_state || !ody_ckpt_has(ck, name))
            continue;
        st = get_small_series(ctx, ck, name, h->cb[i], ODY_CALLBACK_STATE_MAX, &h->ncb[i]);
    }
    return st;
}

/* Rank 0: open, check and read `path` into the loop and h, in one pass:
 * every dataset and attribute read verifies its checksum. *unreadable
 * tells a damaged or foreign file (another checkpoint may do) from one
 * that reads fine but does not fit this run (none will). */
static ody_status read_checkpoint(ody_training_loop *loop, const char *path, resume_header *h,
                                  bool *unreadable)
{
    ody_ctx *ctx = loop->ctx;
    ody_ckpt *ck = NULL;
    memset(h, 0, sizeof *h);
    ody_status st = ody_ckpt_open(ctx, path, &ck);
    if (st == ODY_OK)
        st = get_header(ctx, ck, h);
    /* Damaged or foreign, not out of memory: an older checkpoint is no
     * answer to that, and resuming from one would drop the newer's steps. */
    *unreadable = st == ODY_ERR_CHECKPOINT;
    if (st == ODY_OK)
        st = check_identity(ctx, ck, loop, true, unreadable);
    if (st == ODY_OK)
        st = check_compatible(loop, h);
    if (st == ODY_OK) {
        st = get_buffers(ctx, ck, loop);
        if (st == ODY_OK)
            st = get_history(ctx, ck, loop, h);
        *unreadable = st == ODY_ERR_CHECKPOINT;
    }
    ody_ckpt_close(ck);
    if (st != ODY_OK && strstr(ctx->err, path) == NULL)
        ody_error_prefix(ctx, "%s", path);
    return st;
}

/* Send what rank 0 read to every rank. */
static ody_status broadcast_state(ody_training_loop *loop, resume_header *h)
{
    ody_ctx *ctx = loop->ctx;
    ody_wait_begin(ctx, ODY_WAIT_BROADCAST);
    MPI_Bcast(h, (int)sizeof *h, MPI_BYTE, 0, ctx->comm);
    ody_wait_end(ctx);
    ody_status st = ody_comm_bcast_floats(ctx, loop->model->params.data, loop->model->params.size);
    for (int s = 0; st == ODY_OK && s < loop->optimizer->nstate; s++)
        st = ody_comm_bcast_floats(ctx, loop->optimizer->state[s].data, loop->optimizer->n);
    ody_training_metrics *m = &loop->metrics;
    if (ctx->rank != 0) {
        m->history_len = 0;
        for (int64_t i = 0; st == ODY_OK && i < h->history_len; i++)
            if (!ody_training_metrics_push_epoch(m, 0, 0))
                st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the metric history");
    }
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK && h->history_len > 0) {
        ody_wait_begin(ctx, ODY_WAIT_BROADCAST);
        MPI_Bcast(m->history, (int)(h->history_len * (int64_t)sizeof *m->history), MPI_BYTE, 0,
                  ctx->comm);
        ody_wait_end(ctx);
    }
    return st;
}

/* Every rank takes the header into its loop. */
static void apply_header(ody_training_loop *loop, const resume_header *h)
{
    ody_loop_state *s = &loop->state;
    s->epoch = h->epoch;
    s->step_in_epoch = h->step_in_epoch;
    s->global_step = h->global_step;
    s->samples_seen = h->samples_seen;
    s->lr = h->lr;
    s->skipped_steps = h->skipped_steps;
    loop->optimizer->steps = h->optimizer_steps;
    ody_schedule_load(&loop->schedule, h->schedule, h->nschedule);
    ody_loss_scaler_load(&loop->scaler, h->scaler, h->nscaler);
    ody_exact *exact = ody_exact_step_sum(loop->strategy);
    if (exact && h->nscales > 0)
        ody_exact_load(exact, h->scales, h->nscales);
    /* The epoch's sums so far go to rank 0 alone: the epoch's end adds up
     * every rank's sums, and the others start this part of the epoch at 0. */
    ody_training_metrics *m = &loop->metrics;
    bool root = loop->ctx->rank == 0;
    m->epoch_loss_fixed = root ? h->epoch_loss_fixed : 0;
    m->epoch_correct = root ? h->epoch_correct : 0;
    m->epoch_count = root ? h->epoch_count : 0;
    m->best_val_loss = h->best_val_loss;
    m->best_val_accuracy = h->best_val_accuracy;
    m->best_epoch = h->best_epoch;
    for (int i = 0; i < loop->ncallbacks; i++)
        if (h->ncb[i] > 0 && loop->callbacks[i].ops->load_state)
            loop->callbacks[i].ops->load_state(loop->callbacks[i].self, loop, h->cb[i], h->ncb[i]);
}

/* After rank 0's read (status st): agree, send it to every rank, take it. */
static ody_status share_loaded(ody_training_loop *loop, ody_status st, resume_header *h,
                               const char *path)
{
    st = ody_comm_agree(loop->ctx, st);
    if (st == ODY_OK)
        st = broadcast_state(loop, h);
    if (st != ODY_OK)
        return st;
    apply_header(loop, h);
    ody_log(loop->ctx, ODY_LOG_INFO,
            "resumed from %s: epoch %lld, step %lld of the epoch (global step %lld, %lld samples "
            "seen); written on %lld rank(s), continuing on %d",
            path, (long long)h->epoch + 1, (long long)h->step_in_epoch, (long long)h->global_step,
            (long long)h->samples_seen, (long long)h->world_size, loop->ctx->size);
    return ody_comm_check_consistent(loop->ctx, loop->model->params.data,
                                     loop->model->params.size, "after resuming");
}

ody_status ody_train_checkpoint_load(ody_training_loop *loop, const char *path)
{
    resume_header h;
    bool unreadable = false;
    ody_status st = ODY_OK;
    if (loop->ctx->rank == 0)
        st = read_checkpoint(loop, path, &h, &unreadable);
    return share_loaded(loop, st, &h, path);
}

ody_status ody_train_load_params(ody_training_loop *loop, const char *path)
{
    ody_ctx *ctx = loop->ctx;
    ody_model *m = loop->model;
    ody_status st = ODY_OK;
    if (ctx->rank == 0) {
        ody_ckpt *ck = NULL;
        bool unreadable = false;
        st = ody_ckpt_open(ctx, path, &ck);
        if (st == ODY_OK) /* the same model as a resume needs; any optimizer */
            st = check_identity(ctx, ck, loop, false, &unreadable);
        if (st == ODY_OK)
            st = get_params(ctx, ck, m);
        ody_ckpt_close(ck);
    }
    st = ody_comm_agree(ctx, st);
    if (st == ODY_OK)
        st = ody_comm_bcast_floats(ctx, m->params.data, m->params.size);
    return st;
}

/* --------------------------------------------------- finding a checkpoint */

static int compare_desc(const void *a, const void *b)
{
    return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the run's checkpoints, newest first (names sort by epoch and step). */
int ody_train_list_checkpoints(const char *run_dir, char ***names)
{
    *names = NULL;
    DIR *d = opendir(run_dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int n = 0, cap = 0;
    char **list = NULL;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) != 0 || len < 8 || strcmp(e->d_name + len - 3, ".h5") != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown)
                break;
            list = grown;
        }
        if ((list[n] = strdup(e->d_name)) == NULL)
            break;
        n++;
        errno = 0;
    }
    int failed = errno; /* a failed allocation or readdir */
    closedir(d);
    if (failed) {
        ody_train_free_names(list, n);
        errno = failed;
        return -1;
    }
    if (n > 1)
        qsort(list, (size_t)n, sizeof *list, compare_desc);
    *names = list;
    return n;
}

void ody_train_free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Rank 0: read the newest checkpoint of run_dir that reads whole, into
 * loop and h, its path into path ("" when the directory holds none). A
 * damaged one is reported and the one before it tried; one that reads but
 * does not fit this run is an error (an older one would not fit either). */
static ody_status read_newest(ody_training_loop *loop, const char *run_dir, resume_header *h,
                              char *path, size_t len)
{
    ody_ctx *ctx = loop->ctx;
    char **names = NULL;
    int n = ody_train_list_checkpoints(run_dir, &names);
    path[0] = '\0';
    if (n < 0)
        return ody_fail(ctx, errno == ENOMEM ? ODY_ERR_NOMEM : ODY_ERR_CHECKPOINT,
                        "cannot list the checkpoints in %s: %s", run_dir, strerror(errno));
    ody_status st = ODY_OK;
    char first_error[ODY_ERRMSG_MAX] = "";
    bool unreadable = false;
    /* latest.h5 first: after a --resume PATH from an earlier checkpoint the
     * newest name may belong to the abandoned continuation. Then by name,
     * newest first (the target of latest.h5 again is harmless). */
    char latest[1024] = "", link[1100];
    snprintf(link, sizeof link, "%s/latest.h5", run_dir);
    ssize_t got = readlink(link, latest, sizeof latest - 1);
    latest[got > 0 && !memchr(latest, '/', (size_t)got) ? got : 0] = '\0'; /* ours are names */
    for (int i = latest[0] ? -1 : 0; i < n; i++) {
        const char *file = i < 0 ? latest : names[i];
        if (i >= 0 && strcmp(file, latest) == 0)
            continue;
        char candidate[2048];
        snprintf(candidate, sizeof candidate, "%s/%s", run_dir, file);
        st = read_checkpoint(loop, candidate, h, &unreadable);
        if (st == ODY_OK)
            snprintf(path, len, "%s", candidate);
        if (st == ODY_OK || !unreadable)
            break;
        ody_log(ctx, ODY_LOG_WARN, "skipping checkpoint %s", ody_ctx_error(ctx));
        if (!first_error[0])
            snprintf(first_error, sizeof first_error, "%s", ody_ctx_error(ctx));
    }
    if (st != ODY_OK && unreadable)
        st = ody_fail(ctx, ODY_ERR_CHECKPOINT, "no valid checkpoint in %s (%d tried; newest: %s)",
                      run_dir, n, first_error);
    ody_train_free_names(names, n);
    return st;
}

ody_status ody_train_resume(ody_training_loop *loop, const char *run_dir, const char *what)
{
    ody_ctx *ctx = loop->ctx;
    if (strcmp(what, "auto") != 0)
        return ody_train_checkpoint_load(loop, what);
    char path[2048] = "";
    resume_header h;
    memset(&h, 0, sizeof h);
    ody_status st = ODY_OK;
    if (ctx->rank == 0)
        st = read_newest(loop, run_dir, &h, path, sizeof path);
    int fresh = st == ODY_OK && !path[0];
    ody_wait_begin(ctx, ODY_WAIT_BROADCAST); /* while rank 0 reads (heartbeats per tensor) */
    MPI_Bcast(&fresh, 1, MPI_INT, 0, ctx->comm);
    ody_wait_end(ctx);
    if (fresh) {
        ody_log(ctx, ODY_LOG_INFO, "--resume auto: no checkpoint in %s yet, starting fresh",
                run_dir);
        return ODY_OK;
    }
    ody_wait_begin(ctx, ODY_WAIT_BROADCAST);
    MPI_Bcast(path, (int)sizeof path, MPI_CHAR, 0, ctx->comm);
    ody_wait_end(ctx);
    return share_loaded(loop, st, &h, path);
}
