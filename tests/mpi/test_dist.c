/*
 * MPI tests of dist and the data-parallel trainer (run on 4 ranks):
 * agreement, the step vote, the reducer (bucketed equals blocking), and
 * the equivalence of training on 1, 2 and 4 ranks.
 */
#include "ody_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/dist.h"
#include "odyssey/io.h"
#include "odyssey/train.h"

static ody_ctx *world(void **state) { return *state; }

static void test_agree_names_first_failing_rank(void **state)
{
    ody_ctx *ctx = world(state);
    assert_int_equal(ody_dist_agree(ctx, ODY_OK), ODY_OK);
    ody_status local = ODY_OK;
    if (ctx->rank == 2 || ctx->rank == 3)
        local = ody_fail(ctx, ODY_ERR_DATA, "file%d.idx: truncated", ctx->rank);
    ody_status st = ody_dist_agree(ctx, local);
    assert_int_equal(st, ODY_ERR_DATA);
    assert_string_equal(ody_ctx_error(ctx), "rank 2: file2.idx: truncated");
    ody_ctx_clear_error(ctx);
}

static void test_vote_sums_flags(void **state)
{
    ody_ctx *ctx = world(state);
    ody_vote v = {0};
    v.local[ODY_VOTE_NONFINITE] = (ctx->rank == 1);
    v.local[ODY_VOTE_STOP] = 1;
    double wait = 0;
    assert_int_equal(ody_vote_start(ctx, &v), ODY_OK);
    assert_int_equal(ody_vote_finish(ctx, &v, &wait), ODY_OK);
    assert_int_equal(v.total[ODY_VOTE_FAILED], 0);
    assert_int_equal(v.total[ODY_VOTE_NONFINITE], 1);
    assert_int_equal(v.total[ODY_VOTE_STOP], ctx->size);
}

static void test_fingerprint_mismatch_is_reported(void **state)
{
    ody_ctx *ctx = world(state);
    float buf[100];
    for (int i = 0; i < 100; i++)
        buf[i] = (float)i;
    assert_int_equal(ody_dist_check_consistent(ctx, buf, 100, "at start"), ODY_OK);
    if (ctx->rank == ctx->size - 1)
        buf[50] = 50.0001f;
    ody_status st = ody_dist_check_consistent(ctx, buf, 100, "after step 7");
    if (ctx->size == 1) {
        assert_int_equal(st, ODY_OK);
        return;
    }
    assert_int_equal(st, ODY_ERR_INTERNAL);
    char want[128];
    snprintf(want, sizeof want, "after step 7: rank %d's fingerprint differs", ctx->size - 1);
    assert_non_null(strstr(ody_ctx_error(ctx), want));
    ody_ctx_clear_error(ctx);
}

/* Fill the model's gradients with rank-dependent values, reduce, compare. */
static void fill_grads(ody_model *m, int rank)
{
    for (size_t i = 0; i < m->grads.size; i++)
        m->grads.data[i] = (float)((i % 97) * 0.25 + rank);
}

static void test_bucketed_reduce_equals_blocking(void **state)
{
    ody_ctx *ctx = world(state);
    ody_model_options opt = {.name = "lenet5", .num_classes = 10,
                             .input_shape = {3, {1, 28, 28}}};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create(ctx, &opt, &m), ODY_OK);
    ody_reducer *bucketed = NULL, *blocking = NULL;
    assert_int_equal(ody_reducer_create(ctx, m, ODY_REDUCE_BUCKETED, 16 * 1024, &bucketed), ODY_OK);
    assert_int_equal(ody_reducer_create(ctx, m, ODY_REDUCE_BLOCKING, 0, &blocking), ODY_OK);
    assert_true(ody_reducer_buckets(bucketed) >= 3);
    assert_int_equal(ody_reducer_buckets(blocking), 1);

    size_t n = m->grads.size;
    float *expect = malloc(n * sizeof *expect);
    fill_grads(m, ctx->rank);
    double wait = 0;
    assert_int_equal(ody_reducer_finish(blocking, &wait), ODY_OK);
    memcpy(expect, m->grads.data, n * sizeof *expect);

    /* Bucketed, started from the backward hook in layer order (last first). */
    fill_grads(m, ctx->rank);
    for (int l = m->nlayers - 1; l >= 0; l--)
        ody_reducer_layer_ready(bucketed, l);
    assert_int_equal(ody_reducer_finish(bucketed, &wait), ODY_OK);
    assert_memory_equal(expect, m->grads.data, n * sizeof *expect);
    double sum_ranks = ctx->size * (ctx->size - 1) / 2.0;
    assert_true(fabsf(m->grads.data[1] - (float)(0.25 * ctx->size + sum_ranks)) < 1e-5f);
    assert_int_equal(ody_reducer_bytes_sent(bucketed), n * sizeof(float));

    /* A rank whose backward never ran still completes the same buckets. */
    fill_grads(m, ctx->rank);
    if (ctx->rank != 0)
        for (int l = m->nlayers - 1; l >= 0; l--)
            ody_reducer_layer_ready(bucketed, l);
    assert_int_equal(ody_reducer_finish(bucketed, &wait), ODY_OK);
    assert_memory_equal(expect, m->grads.data, n * sizeof *expect);

    free(expect);
    ody_reducer_destroy(ctx, bucketed);
    ody_reducer_destroy(ctx, blocking);
    ody_model_destroy(ctx, m);
}

/* ------------------------------------------------------- equivalence */

static const char *equivalence_yaml =
    "model: {name: lenet5, num_classes: 10, input_shape: [1, 28, 28]}\n"
    "training: {epochs: 1, batch_size: 48, log_interval: 1000, save_checkpoints: false,\n"
    "           val_batch_size: 100}\n"
    "optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0001}\n"
    "data: {name: synthetic, synthetic_train: 2000, synthetic_val: 300}\n"
    "logging: {level: warn}\n";

typedef struct {
    float *params;
    size_t n;
    double val_accuracy, val_loss, train_loss;
} run_result;

/* Train the equivalence config on the first `ranks` ranks of the world. */
static void train_on(ody_ctx *world_ctx, int ranks, const char *outdir, run_result *out)
{
    MPI_Comm comm;
    int color = world_ctx->rank < ranks ? 0 : MPI_UNDEFINED;
    MPI_Comm_split(world_ctx->comm, color, world_ctx->rank, &comm);
    if (comm == MPI_COMM_NULL)
        return;
    ody_ctx *ctx = NULL;
    assert_int_equal(ody_ctx_create(&ctx, comm), ODY_OK);
    ctx->log_level = ODY_LOG_WARN;
    ody_config *cfg = calloc(1, sizeof *cfg);
    ody_config_defaults(cfg);
    char dir[256];
    snprintf(dir, sizeof dir, "experiment.output_dir=%s", outdir);
    char *overrides[] = {dir};
    assert_int_equal(ody_config_parse(ctx, equivalence_yaml, "equivalence", 1, overrides, cfg),
                     ODY_OK);
    ody_trainer *t = NULL;
    ody_status st = ody_trainer_create(ctx, cfg, NULL, &t);
    if (st != ODY_OK)
        fail_msg("%s", ody_ctx_error(ctx));
    st = ody_trainer_run(t);
    if (st != ODY_OK)
        fail_msg("%s", ody_ctx_error(ctx));
    ody_training_loop *loop = ody_trainer_loop(t);
    out->n = loop->model->params.size;
    out->params = malloc(out->n * sizeof(float));
    memcpy(out->params, loop->model->params.data, out->n * sizeof(float));
    out->val_accuracy = loop->metrics.val_accuracy;
    out->val_loss = loop->metrics.val_loss;
    out->train_loss = loop->metrics.train_loss;
    ody_trainer_destroy(t);
    free(cfg);
    ody_ctx_destroy(ctx);
    MPI_Comm_free(&comm);
}

/* max |a - b| / max |a| over the buffers. */
static double relative_diff(const run_result *a, const run_result *b)
{
    double maxdiff = 0, maxabs = 0;
    for (size_t i = 0; i < a->n; i++) {
        maxdiff = fmax(maxdiff, fabs((double)a->params[i] - b->params[i]));
        maxabs = fmax(maxabs, fabs((double)a->params[i]));
    }
    return maxdiff / maxabs;
}

static void test_training_equivalent_on_1_2_4_ranks(void **state)
{
    ody_ctx *ctx = world(state);
    char outdir[] = "/tmp/ody-equiv-XXXXXX";
    if (ctx->rank == 0)
        assert_non_null(mkdtemp(outdir));
    MPI_Bcast(outdir, sizeof outdir, MPI_CHAR, 0, ctx->comm);
    run_result r[3] = {{0}};
    const int ranks[3] = {1, 2, 4};
    for (int i = 0; i < 3 && ranks[i] <= ctx->size; i++)
        train_on(ctx, ranks[i], outdir, &r[i]);
    if (ctx->rank == 0) {
        assert_true(r[0].val_accuracy > 0.3); /* it learned, but is far from perfect */
        for (int i = 1; i < 3 && ranks[i] <= ctx->size; i++) {
            double rel = relative_diff(&r[0], &r[i]);
            print_message("P=%d vs P=1: params rel diff %.3g, val_acc %.4f vs %.4f\n", ranks[i],
                          rel, r[i].val_accuracy, r[0].val_accuracy);
            assert_true(rel < 1e-5);
            assert_true(fabs(r[i].val_accuracy - r[0].val_accuracy) <= 0.002);
        }
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", outdir);
        assert_int_equal(system(cmd), 0);
    }
    for (int i = 0; i < 3; i++)
        free(r[i].params);
}

static const struct CMUnitTest group[] = {
    cmocka_unit_test_setup_teardown(test_agree_names_first_failing_rank, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_vote_sums_flags, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_fingerprint_mismatch_is_reported, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_bucketed_reduce_equals_blocking, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_training_equivalent_on_1_2_4_ranks, ody_test_ctx_setup, ody_test_ctx_teardown),
};

ODY_TEST_MAIN(group)
