/* train: the trainer wires a resolved config into data, model, optimizer,
 * reducer, loop and callbacks. */
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/train_internal.h"

struct ody_trainer {
    ody_ctx *ctx;
    const ody_config *cfg;
    char run_dir[1024];
    ody_dataset *train_set, *val_set;
    ody_model *model;
    ody_optimizer *optimizer;
    ody_reducer *reducer;
    ody_sampler *sampler, *val_sampler;
    ody_loader *loader, *val_loader;
    ody_training_loop loop;
};

/* Kernel threads per rank (OpenBLAS's and oneDNN's, ody_kernel_threads):
 * one in deterministic mode, else distributed.blas_threads, else
 * OPENBLAS_NUM_THREADS from the environment, else the node's cores (its
 * ranks' affinity masks and cgroup quota: ctx->node_cores) shared out among
 * the ranks on the node (at least one). */
static int blas_threads(const ody_ctx *ctx, const ody_config *cfg)
{
    if (cfg->distributed.deterministic)
        return 1; /* one thread: the same computation order whatever the machine */
    if (cfg->distributed.blas_threads > 0)
        return (int)cfg->distributed.blas_threads;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 1024)
            return (int)n;
    }
    long per_rank = ctx->node_cores / (ctx->node_size > 0 ? ctx->node_size : 1);
    return per_rank > 1 ? (int)per_rank : 1;
}

/* A fresh run never overwrites an earlier one: a run directory that holds
 * checkpoints is renamed to "<dir>.N" (the first free N) first. */
static ody_status move_earlier_run(ody_trainer *t)
{
    char **names = NULL;
    int n = ody_train_list_checkpoints(t->run_dir, &names);
    ody_train_free_names(names, n);
    if (n < 0) /* it may hold checkpoints: do not write over them */
        return ody_fail(t->ctx, errno == ENOMEM ? ODY_ERR_NOMEM : ODY_ERR_IO,
                        "cannot list the checkpoints in %s: %s", t->run_dir, strerror(errno));
    if (n == 0)
        return ODY_OK;
    char aside[1100];
    for (int i = 1; i < 10000; i++) {
        snprintf(aside, sizeof aside, "%s.%d", t->run_dir, i);
        if (access(aside, F_OK) != 0)
            break;
    }
    if (rename(t->run_dir, aside) != 0)
        return ody_fail(t->ctx, ODY_ERR_IO, "cannot move the earlier run %s aside to %s: %s",
                        t->run_dir, aside, strerror(errno));
    ody_log(t->ctx, ODY_LOG_WARN,
            "%s held an earlier run's checkpoints: moved it to %s (use --resume auto to continue "
            "a run)",
            t->run_dir, aside);
    return ODY_OK;
}

/* Temporary files of writers that died (killed mid-checkpoint) are removed. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[2048];
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".h5.tmp.") || strstr(e->d_name, ".yaml.tmp.")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

/* Rank 0 makes the run directory and writes the resolved config there. */
static ody_status make_run_dir(ody_trainer *t, bool fresh)
{
    ody_ctx *ctx = t->ctx;
    const ody_config *cfg = t->cfg;
    int len = snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", cfg->experiment.output_dir,
                       cfg->experiment.name);
    if (len >= (int)sizeof t->run_dir)
        return ody_fail(ctx, ODY_ERR_CONFIG, "run directory path too long: %s/%s",
                        cfg->experiment.output_dir, cfg->experiment.name);
    if (ctx->rank != 0)
        return ODY_OK;
    ody_status st = fresh ? move_earlier_run(t) : ODY_OK;
    if (st == ODY_OK)
        st = ody_mkdirs(ctx, t->run_dir);
    if (st == ODY_OK && cfg->logging.trace) { /* every rank's trace file goes there */
        char trace[1100];
        snprintf(trace, sizeof trace, "%s/trace", t->run_dir);
        st = ody_mkdirs(ctx, trace);
    }
    if (st == ODY_OK)
        remove_stale_temporaries(t->run_dir);
    char *yaml = NULL;
    if (st == ODY_OK)
        st = ody_config_to_yaml(ctx, cfg, &yaml);
    if (st == ODY_OK) {
        char path[1100];
        snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
        st = ody_write_file_atomic(ctx, path, yaml, strlen(yaml));
    }
    free(yaml);
    return st;
}

static ody_status open_data(ody_trainer *t)
{
    const ody_config *cfg = t->cfg;
    return ody_data_open(t->ctx, &cfg->data, (uint64_t)cfg->experiment.seed,
                         cfg->model.input_shape, cfg->model.num_classes, &t->train_set,
                         &t->val_set);
}

/* Every rank builds the model; rank 0's initial weights are broadcast and
 * the fingerprints compared, so all ranks start from the same point. */
static ody_status build_model(ody_trainer *t)
{
    ody_ctx *ctx = t->ctx;
    ody_model_options options = t->cfg->model;
    options.compute_bf16 = t->cfg->training.use_mixed_precision && strcmp(t->cfg->training.precision_dtype, "bf16") == 0;
    ody_status st = ody_model_create(ctx, &options, &t->model);
    st = ody_comm_agree(ctx, st);
    if (st != ODY_OK)
        return st;
    ody_model_init_params(t->model, (uint64_t)t->cfg->experiment.seed);
    st = ody_comm_bcast_floats(ctx, t->model->params.data, t->model->params.size);
    if (st == ODY_OK)
        st = ody_comm_check_consistent(ctx, t->model->params.data, t->model->params.size,
                                       "at start");
    return st;
}

static ody_wire_type wire_type(const ody_config *cfg)
{
    if (!cfg->training.use_mixed_precision || cfg->distributed.deterministic)
        return ODY_WIRE_F32; /* deterministic: exact sums of the fp32 gradients */
    return strcmp(cfg->training.precision_dtype, "fp16") == 0 ? ODY_WIRE_F16 : ODY_WIRE_BF16;
}

static ody_status build_optimizer(ody_trainer *t)
{
    const ody_optimizer_config *oc = &t->cfg->optimizer;
    ody_optimizer_params p;
    ody_optimizer_kind kind;
    if (!ody_optimizer_kind_from_name(oc->name, &kind))
        return ody_fail(t->ctx, ODY_ERR_CONFIG, "optimizer.name: unknown optimizer '%s'", oc->name);
    ody_optimizer_params_default(&p, kind);
    p.momentum = oc->momentum;
    p.dampening = oc->dampening;
    p.weight_decay = oc->weight_decay;
    p.nesterov = oc->nesterov;
    p.beta1 = oc->beta1;
    p.beta2 = oc->beta2;
    p.eps = oc->eps;
    p.alpha = oc->alpha;
    p.centered = oc->centered;
    ody_status st = ody_optimizer_create(t->ctx, &p, t->model->ntrain, &t->optimizer);
    if (st == ODY_OK)
        st = ody_reducer_create(t->ctx, t->model,
                                strcmp(t->cfg->distributed.allreduce, "blocking") == 0
                                    ? ODY_REDUCE_BLOCKING
                                    : ODY_REDUCE_BUCKETED,
                                (size_t)t->cfg->distributed.bucket_bytes, wire_type(t->cfg),
                                &t->reducer);
    return st;
}

/* The lr schedule: training.use_scheduler picks training.scheduler_type
 * with the scheduler section's parameters; otherwise a constant lr. */
static ody_status build_schedule(ody_trainer *t)
{
    const ody_config *cfg = t->cfg;
    const ody_scheduler_config *sc = &cfg->scheduler;
    ody_schedule_params p;
    ody_schedule_params_default(&p);
    if (cfg->training.use_scheduler) {
        if (!ody_schedule_kind_from_name(cfg->training.scheduler_type, &p.kind))
            return ody_fail(t->ctx, ODY_ERR_CONFIG, "training.scheduler_type: unknown '%s'",
                            cfg->training.scheduler_type);
        p.step_size = sc->step_size;
        p.gamma = sc->gamma;
        p.nmilestones = sc->n_milestones;
        for (int i = 0; i < sc->n_milestones; i++)
            p.milestones[i] = sc->milestones[i];
        p.t_max = sc->t_max;
        p.eta_min = sc->eta_min;
        p.warmup_steps = sc->warmup_steps;
        p.warmup_start_factor = sc->warmup_start_factor;
        p.maximize = ody_monitor_maximizes(sc->plateau_mode, sc->monitor);
        p.factor = sc->factor;
        p.patience = sc->patience;
        p.threshold = sc->threshold;
        p.cooldown = sc->cooldown;
        p.min_lr = sc->min_lr;
    }
    return ody_schedule_init(t->ctx, &t->loop.schedule, &p, cfg->optimizer.learning_rate,
                             cfg->training.epochs);
}

static int64_t global_batch(const ody_ctx *ctx, const ody_config *cfg)
{
    if (cfg->training.batch_size_per_rank > 0)
        return cfg->training.batch_size_per_rank * ctx->size;
    return cfg->training.batch_size;
}

static ody_status build_loaders(ody_trainer *t)
{
    ody_ctx *ctx = t->ctx;
    const ody_config *cfg = t->cfg;
    uint64_t seed = (uint64_t)cfg->experiment.seed;
    int chunk = cfg->distributed.deterministic ? (int)cfg->distributed.chunk_size : 1;
    ody_status st = ody_sampler_create(ctx, &t->sampler, t->train_set->n, global_batch(ctx, cfg),
                                       cfg->training.shuffle, cfg->training.drop_last, seed, chunk);
    if (st == ODY_OK)
        st = ody_loader_create(ctx, &t->loader, t->train_set, t->sampler, cfg->data.prefetch);
    /* Only the training loader augments: validation sees the images as they are. */
    ody_augment_options augment = ody_augment_options_of(&cfg->data);
    if (st == ODY_OK)
        st = ody_loader_augment(ctx, t->loader, &augment, seed);
    if (st == ODY_OK && t->val_set)
        st = ody_sampler_create(ctx, &t->val_sampler, t->val_set->n, cfg->training.val_batch_size,
                                false, false, seed, chunk);
    if (st == ODY_OK && t->val_set)
        st = ody_loader_create(ctx, &t->val_loader, t->val_set, t->val_sampler, cfg->data.prefetch);
    return st;
}

static ody_status build_loop(ody_trainer *t)
{
    ody_training_loop *loop = &t->loop;
    /* No early return: a failure goes on to the agreement before
     * enable_exact, where the other ranks are headed. */
    ody_status st = ody_training_loop_init(loop, t->ctx, t->cfg);
    loop->model = t->model;
    loop->optimizer = t->optimizer;
    loop->data.train_set = t->train_set;
    loop->data.val_set = t->val_set;
    loop->data.sampler = t->sampler;
    loop->data.val_sampler = t->val_sampler;
    loop->data.loader = t->loader;
    loop->data.val_loader = t->val_loader;
    loop->global_batch = t->sampler->batch;
    loop->loss_kind = strcmp(t->cfg->training.loss, "mse") == 0 ? ODY_LOSS_MSE
                                                                 : ODY_LOSS_CROSS_ENTROPY;
    loop->accumulation = t->cfg->training.accumulation_steps;
    bool fp16 = wire_type(t->cfg) == ODY_WIRE_F16;
    ody_loss_scaler_init(&loop->scaler, fp16 ? t->cfg->training.loss_scale : 0.0);
    if (st == ODY_OK)
        st = build_schedule(t);
    if (st == ODY_OK) {
        loop->state.lr = ody_schedule_lr(&loop->schedule, 0, 0);
        /* Activations for one training share; validation goes through in
         * pieces of that size (of one chunk in deterministic mode). */
        int64_t rows = ody_sampler_max_local(t->sampler);
        if (t->cfg->distributed.deterministic && t->cfg->distributed.chunk_size > rows)
            rows = t->cfg->distributed.chunk_size;
        st = ody_loop_prepare_buffers(loop, (size_t)(rows > 0 ? rows : 1));
    }
    /* the exact strategy is collective: agree first, so that all ranks or none go in */
    if (t->cfg->distributed.deterministic)
        st = ody_comm_agree(t->ctx, st);
    size_t share = (size_t)ody_sampler_max_local(t->sampler);
    if (st == ODY_OK && t->cfg->distributed.deterministic)
        st = ody_exact_step_create(loop, (int64_t)t->cfg->distributed.chunk_size, share,
                                   &loop->strategy);
    else if (st == ODY_OK)
        st = ody_float_step_create(loop, t->reducer, share, &loop->strategy);
    return st;
}

/* No add function below but the console's (first) holds a collective, so
 * one failing on one rank leaves the others at the caller's agreement. */
static ody_status add_callbacks(ody_trainer *t, bool append)
{
    ody_training_loop *loop = &t->loop;
    /* Order matters at an epoch's end: EarlyStopping decides before
     * ModelCheckpoint saves, so the last epoch is saved. */
    ody_status st = ody_callback_console_add(loop);
    if (st == ODY_OK)
        st = ody_callback_metrics_log_add(loop, t->run_dir, append);
    if (st == ODY_OK)
        st = ody_callback_early_stopping_add(loop);
    if (st == ODY_OK)
        st = ody_callback_lr_monitor_add(loop);
    if (st == ODY_OK)
        st = ody_callback_model_checkpoint_add(loop, t->run_dir);
    if (st == ODY_OK)
        st = ody_callback_trace_add(loop, t->run_dir);
    return st;
}

static void log_start(const ody_trainer *t)
{
    const ody_config *cfg = t->cfg;
    int64_t b = t->sampler->batch;
    ody_model_summary(t->ctx, t->model);
    ody_log(t->ctx, ODY_LOG_INFO,
            "odyssey-dist %s: %d rank(s), %d on rank 0's node with %d core(s); %d BLAS "
            "thread(s) each; model %s (%zu parameters); "
            "data %s: %lld train, %lld validation; global batch %lld (%lld to %lld per rank); "
            "run directory %s",
            ODY_VERSION, t->ctx->size, t->ctx->node_size, t->ctx->node_cores,
            blas_threads(t->ctx, cfg), cfg->model.name,
            t->model->nparams, cfg->data.name, (long long)t->train_set->n,
            (long long)(t->val_set ? t->val_set->n : 0), (long long)b,
            (long long)(b / t->ctx->size), (long long)ody_sampler_max_local(t->sampler),
            t->run_dir);
    const ody_data_options *d = &cfg->data;
    ody_augment_options augment = ody_augment_options_of(d);
    if (ody_augment_active(&augment) || cfg->training.label_smoothing > 0)
        ody_log(t->ctx, ODY_LOG_INFO,
                "training augmentation: random crop from %d pixels of padding, horizontal flip %s, "
                "random erasing with probability %g; label smoothing %g",
                d->crop_padding, d->horizontal_flip ? "on" : "off", d->random_erasing,
                cfg->training.label_smoothing);
}

typedef enum { BUILD_FRESH, BUILD_RESUME, BUILD_EVAL } build_mode;

/* Everything but the callbacks, in order; every phase ends agreed. */
static ody_status build(ody_ctx *ctx, const ody_config *cfg, build_mode mode, ody_trainer **out)
{
    *out = NULL;
    ody_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return ody_comm_agree(ctx, ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for the trainer"));
    t->ctx = ctx;
    t->cfg = cfg;
    ody_kernel_threads(blas_threads(ctx, cfg));
    ody_status st = ODY_OK;
    if (mode != BUILD_EVAL)
        st = ody_comm_agree(ctx, make_run_dir(t, mode == BUILD_FRESH));
    if (st == ODY_OK)
        st = ody_comm_agree(ctx, open_data(t));
    if (st == ODY_OK)
        st = build_model(t);
    if (st == ODY_OK)
        st = ody_comm_agree(ctx, build_optimizer(t));
    if (st == ODY_OK)
        st = ody_comm_agree(ctx, build_loaders(t));
    if (st == ODY_OK)
        st = ody_comm_agree(ctx, build_loop(t));
    if (st != ODY_OK) {
        ody_trainer_destroy(t);
        return st;
    }
    *out = t;
    return ODY_OK;
}

ody_status ody_trainer_create(ody_ctx *ctx, const ody_config *cfg, const char *resume,
                              ody_trainer **out)
{
    ody_trainer *t = NULL;
    ody_status st = build(ctx, cfg, resume ? BUILD_RESUME : BUILD_FRESH, &t);
    if (st != ODY_OK)
        return st;
    st = ody_comm_agree(ctx, add_callbacks(t, resume != NULL));
    if (st == ODY_OK) {
        log_start(t);
        if (resume)
            st = ody_train_resume(&t->loop, t->run_dir, resume);
    }
    if (st != ODY_OK) {
        ody_trainer_destroy(t);
        return st;
    }
    *out = t;
    return ODY_OK;
}

ody_status ody_evaluate_checkpoint(ody_ctx *ctx, const ody_config *cfg, const char *path,
                                   double *loss, double *accuracy, int64_t *samples)
{
    ody_trainer *t = NULL;
    ody_status st = build(ctx, cfg, BUILD_EVAL, &t);
    if (st == ODY_OK && !t->val_set)
        st = ody_comm_agree(ctx, ody_fail(ctx, ODY_ERR_CONFIG,
                                          "--eval needs a validation set (data.validation is none)"));
    if (st == ODY_OK)
        st = ody_train_load_params(&t->loop, path);
    if (st == ODY_OK)
        st = ody_training_loop_validate(&t->loop, loss, accuracy);
    if (st == ODY_OK)
        *samples = t->val_set->n;
    ody_trainer_destroy(t);
    return st;
}

ody_status ody_trainer_run(ody_trainer *t) { return ody_training_loop_run(&t->loop); }

ody_training_loop *ody_trainer_loop(ody_trainer *t) { return &t->loop; }

void ody_trainer_destroy(ody_trainer *t)
{
    if (!t)
        return;
    ody_ctx *ctx = t->ctx;
    ody_training_loop_free(&t->loop);
    ody_loader_destroy(ctx, t->val_loader);
    ody_loader_destroy(ctx, t->loader);
    ody_sampler_destroy(ctx, t->val_sampler);
    ody_sampler_destroy(ctx, t->sampler);
    ody_reducer_destroy(ctx, t->reducer);
    ody_optimizer_destroy(ctx, t->optimizer);
    ody_model_destroy(ctx, t->model);
    ody_dataset_destroy(ctx, t->val_set);
    ody_dataset_destroy(ctx, t->train_set);
    free(t);
}
