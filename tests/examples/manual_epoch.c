/*
 * Example: the seed design's run_epoch_manual with its training_step.
 *
 * A user with data already in memory (x: n rows of the model's input, y:
 * labels) trains the model of a config with their own step: the loop
 * slices the arrays into batches and calls the batch function, which runs
 * ody_training_step over the five parts (zero_grad, forward, loss,
 * backward, optimizer_step). One process, no sampler, no allreduce.
 *
 * Here: two Gaussian blobs in 2-D, a 2-16-2 MLP from a YAML config, plain
 * SGD; the loss must fall and the blobs be told apart. Run as a test
 * (example_manual_epoch); it exits non-zero when training does not work.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/train.h"

#define SAMPLES 512
#define BATCH 32
#define EPOCHS 8

/* What the batch function needs: the model, an optimizer, its buffers. */
typedef struct {
    ody_model *model;
    ody_optimizer *optimizer;
    ody_forward_info info;
    const float *logits;
    float losses[BATCH];
    float dlogits[BATCH * 2];
    ody_step_result sums; /* this epoch's */
} manual;

static ody_status zero_grad(void *user)
{
    ody_model_zero_grad(((manual *)user)->model);
    return ODY_OK;
}

static ody_status forward(void *user, const ody_batch *b)
{
    manual *m = user;
    m->info = (ody_forward_info){.training = true, .seed = 1, .sample_ids = b->ids};
    m->logits = ody_model_forward(m->model, &m->info, b->n, b->x);
    return m->logits ? ODY_OK : ODY_ERR_INTERNAL;
}

static ody_status loss(void *user, const ody_batch *b, ody_step_result *res)
{
    manual *m = user;
    ody_loss_forward(ODY_LOSS_CROSS_ENTROPY, 0.0, b->n, 2, m->logits, b->y, m->losses,
                     &res->correct);
    for (int i = 0; i < b->n; i++)
        res->loss_fixed += ody_loss_to_fixed(m->losses[i]);
    res->count += b->n;
    ody_loss_backward(ODY_LOSS_CROSS_ENTROPY, 0.0, b->n, 2, m->logits, b->y, 1.0f / (float)b->n,
                      m->dlogits);
    return ODY_OK;
}

static ody_status backward(void *user, const ody_batch *b)
{
    manual *m = user;
    ody_model_backward(m->model, &m->info, b->n, b->x, m->dlogits, NULL, NULL);
    return ODY_OK;
}

static ody_status optimizer_step(void *user)
{
    manual *m = user;
    ody_optimizer_step(m->optimizer, m->model->params.data, m->model->grads.data, 0.1);
    return ODY_OK;
}

static const ody_step_ops ops = {zero_grad, forward, loss, backward, optimizer_step};

/* The batch function run_epoch_manual calls: one whole training step. */
static ody_status train_batch(void *user, const ody_batch *b)
{
    manual *m = user;
    return ody_training_step(&ops, m, b, true, true, &m->sums);
}

/* Two blobs: class c around (4c - 2, 4c - 2), unit spread (they barely overlap). */
static void make_data(float *x, int32_t *y)
{
    uint32_t r[4];
    for (int i = 0; i < SAMPLES; i++) {
        ody_philox((ody_rng_key){7, 1}, (uint64_t)i, 0, r);
        y[i] = i % 2;
        float u1 = ody_u32_to_unit(r[0]) + 1e-7f, u2 = ody_u32_to_unit(r[1]);
        float g1 = sqrtf(-2 * logf(u1)) * cosf(6.2831853f * u2);
        float g2 = sqrtf(-2 * logf(u1)) * sinf(6.2831853f * u2);
        x[2 * i] = (float)(4 * y[i] - 2) + g1;
        x[2 * i + 1] = (float)(4 * y[i] - 2) + g2;
    }
}

static const char *config_text = "model:\n"
                                 "  name: mlp\n"
                                 "  num_classes: 2\n"
                                 "  input_shape: [2]\n"
                                 "  hidden_sizes: [16]\n"
                                 "data:\n"
                                 "  name: synthetic\n"
                                 "  synthetic_train: 64\n"
                                 "  synthetic_val: 64\n"
                                 "training:\n"
                                 "  batch_size: 32\n"
                                 "logging:\n"
                                 "  level: warn\n"
                                 "  plot: false\n";

static int run(ody_ctx *ctx, const char *out_dir)
{
    ody_config *cfg = calloc(1, sizeof *cfg);
    char override[600];
    snprintf(override, sizeof override, "experiment.output_dir=%s", out_dir);
    char *overrides[] = {override};
    ody_trainer *trainer = NULL;
    ody_config_defaults(cfg);
    ody_status st = ody_config_parse(ctx, config_text, "manual_epoch.yaml", 1, overrides, cfg);
    if (st == ODY_OK) /* the model of the config, built and initialised */
        st = ody_trainer_create(ctx, cfg, NULL, &trainer);
    manual m = {0};
    ody_optimizer_params p;
    ody_optimizer_params_default(&p, ODY_OPT_SGD);
    p.momentum = 0.9;
    if (st == ODY_OK) {
        m.model = ody_training_loop_model(ody_trainer_loop(trainer));
        st = ody_optimizer_create(ctx, &p, m.model->params.size, &m.optimizer);
    }
    float *x = malloc(SAMPLES * 2 * sizeof *x);
    int32_t *y = malloc(SAMPLES * sizeof *y);
    int failed = st != ODY_OK || !x || !y;
    double first = NAN, last = NAN, accuracy = 0;
    if (!failed) {
        make_data(x, y);
        for (int epoch = 0; epoch < EPOCHS && st == ODY_OK; epoch++) {
            memset(&m.sums, 0, sizeof m.sums);
            st = ody_training_loop_run_epoch_manual(ody_trainer_loop(trainer), x, y, SAMPLES,
                                                    BATCH, train_batch, &m);
            double mean = ody_loss_from_fixed(m.sums.loss_fixed) / (double)m.sums.count;
            accuracy = (double)m.sums.correct / (double)m.sums.count;
            printf("epoch %d: loss %.4f accuracy %.2f%%\n", epoch + 1, mean, 100 * accuracy);
            first = epoch == 0 ? mean : first;
            last = mean;
        }
    }
    if (st != ODY_OK)
        fprintf(stderr, "manual_epoch: %s: %s\n", ody_status_name(st), ody_ctx_error(ctx));
    else if (!(last < 0.5 * first) || accuracy < 0.97) {
        fprintf(stderr, "manual_epoch: training did not work (loss %.4f -> %.4f, accuracy %.2f)\n",
                first, last, accuracy);
        failed = 1;
    }
    ody_optimizer_destroy(ctx, m.optimizer);
    ody_trainer_destroy(trainer);
    free(x);
    free(y);
    free(cfg);
    return failed || st != ODY_OK;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    char dir[] = "/tmp/ody-manual-XXXXXX";
    ody_ctx *ctx = NULL;
    int code = 1;
    if (mkdtemp(dir) && ody_ctx_create(&ctx, MPI_COMM_WORLD) == ODY_OK) {
        ctx->log_level = ODY_LOG_WARN; /* what the program does with logging.level */
        code = run(ctx, dir);
        ody_ctx_destroy(ctx);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        code |= system(cmd) != 0;
    }
    MPI_Finalize();
    return code;
}
