/*
 * MPI tests of dist and the data-parallel trainer (run on 4 ranks):
 * agreement, the step vote, the reducer (bucketed equals blocking), and
 * the equivalence of training on 1, 2 and 4 ranks.
 */
#include "ody_test.h"

#include <time.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "odyssey/comm.h"
#include "odyssey/io.h"
#include "odyssey/train.h"

static ody_ctx *world(void **state) { return *state; }

/* A LeNet-5 for 28x28 inputs, 10 classes (destroy it). */
static ody_model *lenet5(ody_ctx *ctx)
{
    ody_model_options opt = {.name = "lenet5", .num_classes = 10,
                             .input_shape = {3, {1, 28, 28}}};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create(ctx, &opt, &m), ODY_OK);
    return m;
}

static void test_agree_names_first_failing_rank(void **state)
{
    ody_ctx *ctx = world(state);
    assert_int_equal(ody_comm_agree(ctx, ODY_OK), ODY_OK);
    ody_status local = ODY_OK;
    if (ctx->rank == 2 || ctx->rank == 3)
        local = ody_fail(ctx, ODY_ERR_DATA, "file%d.idx: truncated", ctx->rank);
    ody_status st = ody_comm_agree(ctx, local);
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
    assert_int_equal(ody_vote_start(ctx, &v), ODY_OK);
    assert_int_equal(ody_vote_finish(ctx, &v), ODY_OK);
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
    assert_int_equal(ody_comm_check_consistent(ctx, buf, 100, "at start"), ODY_OK);
    if (ctx->rank == ctx->size - 1)
        buf[50] = 50.0001f;
    ody_status st = ody_comm_check_consistent(ctx, buf, 100, "after step 7");
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
    ody_model *m = lenet5(ctx);
    ody_reducer *bucketed = NULL, *blocking = NULL;
    assert_int_equal(ody_reducer_create(ctx, m, ODY_REDUCE_BUCKETED, 16 * 1024, ODY_WIRE_F32, &bucketed), ODY_OK);
    assert_int_equal(ody_reducer_create(ctx, m, ODY_REDUCE_BLOCKING, 0, ODY_WIRE_F32, &blocking), ODY_OK);
    assert_true(ody_reducer_buckets(bucketed) >= 3);
    assert_int_equal(ody_reducer_buckets(blocking), 1);

    size_t n = m->grads.size;
    float *expect = malloc(n * sizeof *expect);
    fill_grads(m, ctx->rank);
    assert_int_equal(ody_reducer_finish(blocking), ODY_OK);
    memcpy(expect, m->grads.data, n * sizeof *expect);

    /* Bucketed, started from the backward hook in layer order (last first). */
    fill_grads(m, ctx->rank);
    for (int l = m->nlayers - 1; l >= 0; l--)
        ody_reducer_layer_ready(bucketed, l);
    assert_int_equal(ody_reducer_finish(bucketed), ODY_OK);
    assert_memory_equal(expect, m->grads.data, n * sizeof *expect);
    double sum_ranks = ctx->size * (ctx->size - 1) / 2.0;
    assert_true(fabsf(m->grads.data[1] - (float)(0.25 * ctx->size + sum_ranks)) < 1e-5f);
    assert_int_equal(ody_reducer_bytes_sent(bucketed), n * sizeof(float));

    /* A rank whose backward never ran still completes the same buckets. */
    fill_grads(m, ctx->rank);
    if (ctx->rank != 0)
        for (int l = m->nlayers - 1; l >= 0; l--)
            ody_reducer_layer_ready(bucketed, l);
    assert_int_equal(ody_reducer_finish(bucketed), ODY_OK);
    assert_memory_equal(expect, m->grads.data, n * sizeof *expect);

    free(expect);
    ody_reducer_destroy(ctx, bucketed);
    ody_reducer_destroy(ctx, blocking);
    ody_model_destroy(ctx, m);
}

/* ------------------------------------------------------- equivalence */

/* %s: extra training keys. */
#define EQUIVALENCE_YAML                                                                          \
    "model: {name: lenet5, num_classes: 10, input_shape: [1, 28, 28]}\n"                         \
    "training: {epochs: 1, batch_size: 48, log_interval: 1000, save_checkpoints: false,\n"       \
    "           val_batch_size: 100%s}\n"                                                        \
    "optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0001}\n"        \
    "data: {name: synthetic, synthetic_train: 2000, synthetic_val: 300}\n"                       \
    "logging: {level: warn, csv: false, plot: false}\n"                                          \
    "distributed: {deterministic: %s}\n"

typedef struct {
    float *params;
    size_t n;
    double val_accuracy, val_loss, train_loss;
} run_result;

/* Train `yaml` on the first `ranks` ranks of the world. */
static void train_yaml_on(ody_ctx *world_ctx, int ranks, const char *yaml, const char *outdir,
                          run_result *out)
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
    assert_int_equal(ody_config_parse(ctx, yaml, "equivalence", 1, overrides, cfg), ODY_OK);
    ody_trainer *t = NULL;
    ody_status st = ody_trainer_create(ctx, cfg, NULL, &t);
    if (st != ODY_OK)
        fail_msg("%s", ody_ctx_error(ctx));
    st = ody_trainer_run(t);
    if (st != ODY_OK)
        fail_msg("%s", ody_ctx_error(ctx));
    ody_training_loop *loop = ody_trainer_loop(t);
    const ody_model *model = ody_training_loop_model(loop);
    const ody_training_metrics *metrics = ody_training_loop_metrics(loop);
    out->n = model->params.size;
    out->params = malloc(out->n * sizeof(float));
    memcpy(out->params, model->params.data, out->n * sizeof(float));
    out->val_accuracy = metrics->val_accuracy;
    out->val_loss = metrics->val_loss;
    out->train_loss = metrics->train_loss;
    ody_trainer_destroy(t);
    free(cfg);
    ody_ctx_destroy(ctx);
    MPI_Comm_free(&comm);
}

/* The equivalence config in a mode: "deterministic: true" (one epoch) or
 * "deterministic: false" (a few steps: beyond them floating-point sums in
 * another order drift apart chaotically, by design of floats). */
static void train_on(ody_ctx *world_ctx, int ranks, bool deterministic, const char *outdir,
                     run_result *out)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, EQUIVALENCE_YAML, deterministic ? "" : ", max_steps: 8",
             deterministic ? "true" : "false");
    train_yaml_on(world_ctx, ranks, yaml, outdir, out);
}

/* max |a - b| / max |a| over the buffers. */
/*
 * How far apart two runs' parameters are: the largest difference, over the
 * largest parameter (the worst element), and the difference's L2 norm over
 * the parameters' (the run as a whole).
 */
typedef struct {
    double max, l2;
} param_diff;

static param_diff diff_params(const run_result *a, const run_result *b)
{
    double maxdiff = 0, maxabs = 0, sq_diff = 0, sq = 0;
    for (size_t i = 0; i < a->n; i++) {
        double d = (double)a->params[i] - b->params[i];
        maxdiff = fmax(maxdiff, fabs(d));
        maxabs = fmax(maxabs, fabs((double)a->params[i]));
        sq_diff += d * d;
        sq += (double)a->params[i] * a->params[i];
    }
    return (param_diff){.max = maxdiff / maxabs, .l2 = sqrt(sq_diff / sq)};
}

/*
 * The fast mode's sums run in another order when the rows per call or per
 * rank change, so its runs agree to rounding, about 1e-7 of the largest
 * parameter after a step. Over a few steps one rounding can also tip a
 * ReLU or a max pool's choice and move a few weights by more: at the
 * portable level the accumulation test's 4 x 16 run parts from 1 x 64 at
 * step 4 by 2.3e-5 of the largest parameter, all in 36 weights of one of
 * conv2's output channels, while the run as a whole moves by 1e-6 in L2.
 * So the fast mode's runs are held to 1e-5 in L2: a lost or doubled
 * micro-batch, rank or scale moves every gradient, by far more.
 */
static const double FAST_L2_TOLERANCE = 1e-5;

/* The same config on 1, 2 and 4 ranks: bitwise the same parameters in
 * deterministic mode (a whole epoch), the same to FAST_L2_TOLERANCE in the fast mode. */
static void check_equivalence(ody_ctx *ctx, bool deterministic)
{
    char outdir[] = "/tmp/ody-equiv-XXXXXX";
    if (ctx->rank == 0)
        assert_non_null(mkdtemp(outdir));
    MPI_Bcast(outdir, sizeof outdir, MPI_CHAR, 0, ctx->comm);
    run_result r[3] = {{0}};
    const int ranks[3] = {1, 2, 4};
    for (int i = 0; i < 3 && ranks[i] <= ctx->size; i++)
        train_on(ctx, ranks[i], deterministic, outdir, &r[i]);
    if (ctx->rank == 0) {
        if (deterministic)
            assert_true(r[0].val_accuracy > 0.3); /* it learned, but is far from perfect */
        for (int i = 1; i < 3 && ranks[i] <= ctx->size; i++) {
            param_diff rel = diff_params(&r[0], &r[i]);
            print_message("%s: P=%d vs P=1: params rel diff %.3g (L2 %.3g), val_acc %.4f vs %.4f\n",
                          deterministic ? "deterministic" : "fast", ranks[i], rel.max, rel.l2,
                          r[i].val_accuracy, r[0].val_accuracy);
            if (deterministic)
                assert_memory_equal(r[0].params, r[i].params, r[0].n * sizeof(float));
            assert_true(rel.l2 < FAST_L2_TOLERANCE);
            assert_true(fabs(r[i].val_accuracy - r[0].val_accuracy) <= 0.002);
        }
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", outdir);
        assert_int_equal(system(cmd), 0);
    }
    for (int i = 0; i < 3; i++)
        free(r[i].params);
}

static void test_training_equivalent_on_1_2_4_ranks(void **state)
{
    check_equivalence(world(state), true);
    check_equivalence(world(state), false);
}

static void check_accumulation(ody_ctx *ctx, bool deterministic)
{
    char outdir[] = "/tmp/ody-accum-XXXXXX";
    if (ctx->rank == 0)
        assert_non_null(mkdtemp(outdir));
    MPI_Bcast(outdir, sizeof outdir, MPI_CHAR, 0, ctx->comm);
    char common[1024];
    snprintf(common, sizeof common,
             "model: {name: lenet5, dropout: 0.2}\n"
             "optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0001}\n"
             "data: {name: synthetic, synthetic_train: 3200, synthetic_val: 300}\n"
             "logging: {level: warn, csv: false, plot: false}\n"
             "distributed: {deterministic: %s}\n",
             deterministic ? "true" : "false");
    const char *steps = deterministic ? "" : ", max_steps: 6";
    char big[2048], accumulated[2048];
    snprintf(big, sizeof big,
             "%straining: {epochs: 1, batch_size: 64, save_checkpoints: false%s}\n", common, steps);
    snprintf(accumulated, sizeof accumulated,
             "%straining: {epochs: 1, batch_size: 16, accumulation_steps: 4, "
             "save_checkpoints: false%s}\n",
             common, steps);
    run_result a = {0}, b = {0};
    train_yaml_on(ctx, ctx->size, big, outdir, &a);
    train_yaml_on(ctx, ctx->size, accumulated, outdir, &b);
    param_diff rel = diff_params(&a, &b);
    if (ctx->rank == 0)
        print_message("%s: 1 x 64 vs 4 x 16 accumulated: params rel diff %.3g (L2 %.3g), val_acc %.4f vs %.4f\n",
                      deterministic ? "deterministic" : "fast", rel.max, rel.l2, a.val_accuracy,
                      b.val_accuracy);
    if (deterministic) {
        assert_memory_equal(a.params, b.params, a.n * sizeof(float));
        assert_true(a.val_accuracy > 0.3);
    }
    assert_true(rel.l2 < FAST_L2_TOLERANCE);
    assert_true(fabs(a.val_accuracy - b.val_accuracy) <= 0.002);
    free(a.params);
    free(b.params);
    if (ctx->rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", outdir);
        assert_int_equal(system(cmd), 0);
    }
}

/* 4 micro-batches of 16, accumulated, make the same step as one batch of
 * 64: same samples, one allreduce, the mean over all 64 (dropout on, so
 * its keys must match too). Bitwise in deterministic mode (the same
 * chunks), to float tolerance in the fast mode. */
static void test_accumulation_equals_large_batch(void **state)
{
    check_accumulation(world(state), true);
    check_accumulation(world(state), false);
}

/* bf16 and fp16 on the wire: half the bytes, sums within half precision. */
static void test_half_precision_reduce(void **state)
{
    ody_ctx *ctx = world(state);
    ody_model *m = lenet5(ctx);
    size_t n = m->grads.size;
    float *expect = malloc(n * sizeof *expect);
    for (size_t i = 0; i < n; i++)
        expect[i] = (float)(ctx->size * ((i % 97) * 0.25) + ctx->size * (ctx->size - 1) / 2.0);
    const ody_wire_type wires[2] = {ODY_WIRE_BF16, ODY_WIRE_F16};
    const double tolerance[2] = {1.0 / 64, 1.0 / 512}; /* relative, a few roundings */
    for (int w = 0; w < 2; w++) {
        ody_reducer *r = NULL;
        assert_int_equal(ody_reducer_create(ctx, m, ODY_REDUCE_BUCKETED, 16 * 1024, wires[w], &r),
                         ODY_OK);
        fill_grads(m, ctx->rank);
        for (int l = m->nlayers - 1; l >= 0; l--)
            ody_reducer_layer_ready(r, l);
        assert_int_equal(ody_reducer_finish(r), ODY_OK);
        for (size_t i = 0; i < n; i++)
            assert_true(fabs(m->grads.data[i] - expect[i]) <= tolerance[w] * fabs(expect[i]) + 1e-6);
        assert_int_equal(ody_reducer_bytes_sent(r), n * sizeof(uint16_t));
        ody_reducer_destroy(ctx, r);
    }
    free(expect);
    ody_model_destroy(ctx, m);
}

/* Chunk c's gradient value at element i: varied signs and magnitudes. */
static float chunk_value(int c, size_t i, float scale)
{
    return scale * (float)sin(0.37 * (double)i + 1.3 * c) * (float)(1 + (i * 7 + (size_t)c) % 13);
}

/* Sum `chunks` chunk gradients with the exact reducer, chunk c added by
 * rank owner(c); redo rounds as the reducer asks. `overlap`: a rank's last
 * chunk goes in layer by layer, last layer first, as backward sends it,
 * with a vote (rank + 1 in every count) carried when the sum can carry it. */
static void count_call(void *arg) { ++*(int *)arg; }

static void exact_sum(ody_ctx *ctx, ody_exact *e, ody_model *m, int chunks, float scale,
                      int (*owner)(int c, int size), bool overlap, int *rounds, bool *nonfinite)
{
    bool redo = true;
    *rounds = 0;
    /* work for the wait: done once, in the first round's meeting, with shared memory */
    int busy = 0;
    ody_exact_while_waiting(e, count_call, &busy);
    while (redo) {
        ody_exact_begin(e, chunks);
        memset(m->grads.data, 0, m->grads.size * sizeof(float));
        int last = -1;
        for (int c = 0; c < chunks; c++)
            last = owner(c, ctx->size) == ctx->rank ? c : last;
        /* every rank votes, chunks or not, as the training loop does */
        ody_vote vote = {.req = MPI_REQUEST_NULL};
        for (int k = 0; k < ODY_VOTE_COUNT; k++)
            vote.local[k] = ctx->rank + 1;
        bool carried = overlap && *rounds == 0 && ody_exact_carry_vote(e, &vote);
        for (int c = 0; c < chunks; c++) {
            if (owner(c, ctx->size) != ctx->rank)
                continue;
            for (int t = 0; t < m->ntensors; t++) {
                const ody_param *p = m->tensors[t];
                for (size_t i = 0; i < (size_t)ody_shape_numel(&p->shape); i++)
                    m->grads.data[p->offset + i] = chunk_value(c, p->offset + i, scale);
            }
            if (!(overlap && c == last)) {
                ody_exact_add(e, m->grads.data);
                continue;
            }
            for (int l = m->nlayers - 1; l >= 0; l--)
                ody_exact_layer_ready(e, l);
        }
        assert_int_equal(ody_exact_finish(e, m->grads.data, &redo, nonfinite), ODY_OK);
        if (carried) { /* the vote came back summed, with the sum */
            assert_int_equal(ody_vote_finish(ctx, &vote), ODY_OK);
            for (int k = 0; k < ODY_VOTE_COUNT; k++)
                assert_int_equal(vote.total[k], (int64_t)ctx->size * (ctx->size + 1) / 2);
        }
        (*rounds)++;
        assert_int_equal(busy, ody_exact_shared(e) ? 1 : 0);
        if (*nonfinite)
            return;
    }
}

static int owner_round_robin(int c, int size) { return c % size; }
static int owner_contiguous(int c, int size) { return c * size / 8; }
static int owner_first(int c, int size)
{
    (void)c;
    (void)size;
    return 0;
}

/* Regroup the ranks into "nodes" of k (0: the real nodes), as if the job
 * ran on several machines: the shared-memory sum then goes across nodes
 * through each node's first rank. */
static void fake_nodes(ody_ctx *ctx, int k)
{
    MPI_Comm_free(&ctx->node_comm);
    if (k > 0)
        MPI_Comm_split(ctx->comm, ctx->rank / k, ctx->rank, &ctx->node_comm);
    else
        MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL,
                            &ctx->node_comm);
    MPI_Comm_rank(ctx->node_comm, &ctx->node_rank);
    MPI_Comm_size(ctx->node_comm, &ctx->node_size);
}

/* The summed gradients are the sum: within one float rounding of the
 * double sum of the 8 chunks, everywhere. */
static void check_is_sum(const ody_model *m, float scale)
{
    for (int t = 0; t < m->ntensors; t++) {
        const ody_param *p = m->tensors[t];
        for (size_t i = p->offset; i < p->offset + (size_t)ody_shape_numel(&p->shape); i++) {
            double sum = 0;
            for (int c = 0; c < 8; c++)
                sum += chunk_value(c, i, scale);
            assert_true(fabs(m->grads.data[i] - sum) <= 1e-6 * fabs(sum) + 1e-30);
        }
    }
}

/* One way of summing (shared or not, on the current "nodes"): every
 * spread of the chunks, with and without overlap, small values and values
 * far beyond the first guess of the scale (redone once), gives ref's bits;
 * with record, the first sums become ref. A NaN anywhere is reported on
 * every rank and nothing is summed; the next step sums again. */
static void check_exact_sums(ody_ctx *ctx, ody_model *m, bool shared, float *ref[2], bool record)
{
    size_t n = m->grads.size;
    int (*owners[3])(int, int) = {owner_first, owner_round_robin, owner_contiguous};
    const float scales[2] = {1e-3f, 3e7f}; /* small, then far beyond the first guess */
    for (int sc = 0; sc < 2; sc++) {
        for (int o = 0; o < 6; o++) {
            ody_exact *e = NULL;
            assert_int_equal(ody_exact_create(ctx, m, 16 * 1024, shared, &e), ODY_OK);
            int rounds = 0;
            bool nonfinite = false;
            exact_sum(ctx, e, m, 8, scales[sc], owners[o % 3], o >= 3, &rounds, &nonfinite);
            assert_false(nonfinite);
            assert_int_equal(rounds, sc == 0 ? 1 : 2);
            if (record && o == 0)
                memcpy(ref[sc], m->grads.data, n * sizeof(float));
            else
                assert_memory_equal(ref[sc], m->grads.data, n * sizeof(float));
            check_is_sum(m, scales[sc]);
            ody_exact_destroy(ctx, e);
        }
    }
    ody_exact *e = NULL;
    assert_int_equal(ody_exact_create(ctx, m, 16 * 1024, shared, &e), ODY_OK);
    ody_exact_begin(e, 8);
    memset(m->grads.data, 0, n * sizeof(float));
    if (ctx->rank == ctx->size - 1)
        m->grads.data[5] = NAN;
    ody_exact_add(e, m->grads.data);
    bool redo = false, nonfinite = false;
    assert_int_equal(ody_exact_finish(e, m->grads.data, &redo, &nonfinite), ODY_OK);
    assert_true(nonfinite);
    int rounds = 0;
    exact_sum(ctx, e, m, 8, scales[0], owners[1], true, &rounds, &nonfinite);
    assert_false(nonfinite);
    assert_memory_equal(ref[0], m->grads.data, n * sizeof(float));
    /* Round after round on the same sum (its buffers reused), every
     * spread of the chunks in turn, so that a different rank comes first
     * to each piece: the same bits each time (those of the first, since the
     * scale now comes from the maxima seen), and the sum. */
    float *again = malloc(n * sizeof(float));
    assert_non_null(again);
    for (int o = 0; o < 7; o++) {
        exact_sum(ctx, e, m, 8, scales[0], owners[o % 3], o % 2, &rounds, &nonfinite);
        assert_false(nonfinite);
        if (o == 0)
            memcpy(again, m->grads.data, n * sizeof(float));
        assert_memory_equal(again, m->grads.data, n * sizeof(float));
        check_is_sum(m, scales[0]);
    }
    free(again);
    ody_exact_destroy(ctx, e);
}

/*
 * The sum is the fixed-point sum comm/exact.c promises, bit for bit: each
 * chunk's value times 2^s of its tensor rounded to nearest-even (ties
 * included), the integers summed, the sum times 2^-s rounded once to
 * float. ctest runs this file at each CPU level (mpi_comm_portable,
 * mpi_comm_avx2 and the best, mpi_comm): each level's vector loops give
 * these bits. Two steps: the first finds the scales, the second sums
 * values of which every 5th is a tie at its tensor's quantum.
 */
static void test_exact_sum_is_the_fixed_point_sum(void **state)
{
    ody_ctx *ctx = world(state);
    ody_model *m = lenet5(ctx);
    ody_exact *e = NULL;
    assert_int_equal(ody_exact_create(ctx, m, 16 * 1024, false, &e), ODY_OK);
    int nt = ody_exact_tensors(e);
    double *scale = malloc((size_t)nt * sizeof *scale);
    float *values = malloc(8 * m->grads.size * sizeof *values); /* chunk c's gradients at c * size */
    assert_true(scale && values);
    for (int step = 0; step < 2; step++) {
        ody_exact_save(e, scale); /* the scales the step starts with (its ties are at these quanta) */
        for (int c = 0; c < 8; c++)
            for (int t = 0; t < nt; t++) {
                const ody_param *p = m->tensors[t];
                for (size_t i = p->offset; i < p->offset + (size_t)ody_shape_numel(&p->shape); i++) {
                    float v = chunk_value(c, i, 1e-2f);
                    if (step == 1 && i % 5 == 0) /* (k + 1/2) quanta, k odd and even: a tie either way */
                        v = ldexpf((float)((int)(i % 23) - 11) + 0.5f, -(int)scale[t]);
                    values[c * m->grads.size + i] = v;
                }
            }
        bool redo = true, nonfinite = false;
        while (redo) {
            ody_exact_begin(e, 8);
            ody_exact_save(e, scale); /* the scales of this sum (a redo's are new) */
            for (int c = ctx->rank; c < 8; c += ctx->size) {
                memcpy(m->grads.data, values + c * m->grads.size, m->grads.size * sizeof(float));
                ody_exact_add(e, m->grads.data);
            }
            assert_int_equal(ody_exact_finish(e, m->grads.data, &redo, &nonfinite), ODY_OK);
            assert_false(nonfinite);
            assert_false(redo && step == 1); /* its values are no larger than the first step's */
        }
        for (int t = 0; t < nt; t++) {
            const ody_param *p = m->tensors[t];
            for (size_t i = p->offset; i < p->offset + (size_t)ody_shape_numel(&p->shape); i++) {
                int64_t sum = 0;
                for (int c = 0; c < 8; c++) /* nearbyint: the default rounding, to nearest-even */
                    sum += (int64_t)nearbyint(ldexp((double)values[c * m->grads.size + i], (int)scale[t]));
                float want = (float)ldexp((double)sum, -(int)scale[t]);
                if (memcmp(&want, &m->grads.data[i], sizeof want) != 0)
                    fail_msg("step %d, tensor %d, element %zu: %.9g, the fixed-point sum %.9g (2^%d)", step, t,
                             i - p->offset, m->grads.data[i], want, (int)scale[t]);
            }
        }
    }
    free(scale);
    free(values);
    ody_exact_destroy(ctx, e);
    ody_model_destroy(ctx, m);
}

/* The exact sum has the same bits whether it goes through MPI, one node's
 * shared memory or several nodes' ("nodes" of 2 ranks, and of 1). */
static void test_exact_sum_is_order_free_and_redoes(void **state)
{
    ody_ctx *ctx = world(state);
    ody_model *m = lenet5(ctx);
    size_t n = m->grads.size;
    float *ref[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    const struct { bool shared; int node; } modes[4] = {{false, 0}, {true, 0}, {true, 2}, {true, 1}};
    for (int md = 0; md < 4; md++) {
        fake_nodes(ctx, modes[md].node);
        check_exact_sums(ctx, m, modes[md].shared, ref, md == 0);
    }
    fake_nodes(ctx, 0);
    free(ref[0]);
    free(ref[1]);
    ody_model_destroy(ctx, m);
}

/*
 * Chunk stealing, over 60 rounds on one node of 4 ranks and on "nodes" of
 * 2: rank r opens (round + r) % 5 chunks (some none), works each chunk it
 * takes for a random few microseconds, and every chunk of every rank of its
 * node is taken exactly once, as the same node's gather of what each took
 * shows. Half the rounds publish with no barrier before the taking, so
 * queues open while others are already taking. A rank stops once every
 * queue is drained, as training does; then (when every queue opened
 * first) nothing is left to take.
 */
static void check_stealing(ody_ctx *ctx)
{
    enum { MAX = 4, ROUNDS = 60 };
    ody_steal *s = NULL;
    assert_int_equal(ody_steal_create(ctx, 256, MAX, &s), ODY_OK);
    if (ctx->node_size == 1) {
        assert_null(s);
        return;
    }
    assert_non_null(s);
    assert_int_equal(ody_steal_me(s), ctx->node_rank);
    int k = ctx->node_size;
    int *mine = malloc(2 * (size_t)k * MAX * sizeof *mine);
    int *all = malloc(2 * (size_t)k * k * MAX * sizeof *all);
    int *seen = malloc((size_t)k * MAX * sizeof *seen);
    int *counts = malloc((size_t)k * sizeof *counts);
    assert_true(mine && all && seen && counts);
    srand(1234 + (unsigned)ctx->rank);
    int64_t stolen = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        int own = (round + ctx->node_rank) % (MAX + 1);
        memset(ody_steal_slot(s, ctx->node_rank), round & 0xff, 256);
        ody_steal_publish(s, (uint32_t)round, own);
        if (round % 2)
            MPI_Barrier(ctx->node_comm);
        int n = 0, owner = -1, index = -1;
        bool last = false;
        while (!last && ody_steal_claim(s, (uint32_t)round, &owner, &index)) {
            assert_true(owner >= 0 && owner < k && index >= 0 && index < MAX);
            /* the owner's slot holds this round's data */
            assert_int_equal(((unsigned char *)ody_steal_slot(s, owner))[255], round & 0xff);
            mine[2 * n] = owner;
            mine[2 * n++ + 1] = index;
            stolen += owner != ctx->node_rank;
            double work = (rand() % 50) * 1e-6, t0 = ody_now(); /* compute, for a while */
            while (ody_now() - t0 < work)
                ;
            last = ody_steal_drained(s, (uint32_t)round); /* then stop, as training does */
        }
        if (last && round % 2) /* every queue was open before: none can open after */
            assert_false(ody_steal_claim(s, (uint32_t)round, &owner, &index));
        for (int i = n; i < k * MAX; i++)
            mine[2 * i] = mine[2 * i + 1] = -1;
        MPI_Allgather(mine, 2 * k * MAX, MPI_INT, all, 2 * k * MAX, MPI_INT, ctx->node_comm);
        MPI_Allgather(&own, 1, MPI_INT, counts, 1, MPI_INT, ctx->node_comm);
        memset(seen, 0, (size_t)k * MAX * sizeof *seen);
        for (int i = 0; i < k * k * MAX; i++)
            if (all[2 * i] >= 0)
                seen[all[2 * i] * MAX + all[2 * i + 1]]++;
        for (int r = 0; r < k; r++)
            for (int c = 0; c < MAX; c++)
                assert_int_equal(seen[r * MAX + c], c < counts[r] ? 1 : 0);
        MPI_Barrier(ctx->node_comm); /* the step's barrier: slots are refilled after it */
    }
    print_message("rank %d: took %lld chunks of other ranks\n", ctx->rank, (long long)stolen);
    free(mine);
    free(all);
    free(seen);
    free(counts);
    ody_steal_destroy(s);
}

static void test_stealing_takes_every_chunk_once(void **state)
{
    ody_ctx *ctx = *state;
    for (int node = 0; node <= 2; node += 2) {
        fake_nodes(ctx, node);
        check_stealing(ctx);
    }
    fake_nodes(ctx, 1); /* one rank per node: off */
    check_stealing(ctx);
    fake_nodes(ctx, 0);
}

/* CPU seconds this process has used (every thread). */
static double process_cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/*
 * The stall watchdog's thread sleeps between its checks: while this rank
 * sleeps half a second, the process uses almost no CPU. (Its deadlines are
 * on CLOCK_MONOTONIC; a condition variable on the default clock made every
 * wait end at once, and the thread spun at a core's full speed.) A slow
 * machine only lowers the figure.
 */
static void test_stall_watchdog_sleeps(void **state)
{
    ody_ctx *ctx = *state;
    ody_stall *s = NULL;
    assert_int_equal(ody_stall_create(ctx, 8.0, &s), ODY_OK);
    double cpu0 = process_cpu_seconds();
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 500000000}, NULL);
    double used = process_cpu_seconds() - cpu0;
    ody_stall_destroy(s);
    if (used > 0.05)
        fail_msg("the process used %.3f CPU seconds in 0.5 s of sleep with the watchdog running", used);
}

static const struct CMUnitTest group[] = {
    cmocka_unit_test_setup_teardown(test_stall_watchdog_sleeps, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_stealing_takes_every_chunk_once, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_exact_sum_is_order_free_and_redoes, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_exact_sum_is_the_fixed_point_sum, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_accumulation_equals_large_batch, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_half_precision_reduce, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_agree_names_first_failing_rank, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_vote_sums_flags, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_fingerprint_mismatch_is_reported, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_bucketed_reduce_equals_blocking, ody_test_ctx_setup, ody_test_ctx_teardown),
    cmocka_unit_test_setup_teardown(test_training_equivalent_on_1_2_4_ranks, ody_test_ctx_setup, ody_test_ctx_teardown),
};

ODY_TEST_MAIN(group)
