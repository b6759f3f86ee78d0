/*
 * Unit tests of the model as a graph (residual blocks: branches, adds and
 * the gradient slots), batchnorm (gradients, running statistics, buffers,
 * evaluation) and global average pooling, and of residual blocks in
 * configs (parsing, repeat, round trip, located errors).
 */
#include "ody_test.h"

#include <math.h>

#include "odyssey/io.h"
#include "odyssey/nn.h"

static ody_layer_spec spec_of(ody_ctx *ctx, const char *kind, int nargs, const double *args)
{
    ody_layer_spec s;
    assert_int_equal(ody_layer_spec_default(ctx, kind, &s), ODY_OK);
    for (int i = 0; i < nargs; i++)
        s.args[i] = args[i];
    return s;
}

static ody_layer_spec residual_head(int layers, int shortcut, int activation)
{
    ody_layer_spec s = {.kind = "residual"};
    s.args[ODY_RESIDUAL_LAYERS] = layers;
    s.args[ODY_RESIDUAL_SHORTCUT] = shortcut;
    s.args[ODY_RESIDUAL_ACTIVATION] = activation;
    return s;
}

/* Uniform values in [lo, hi) from a fixed sequence (xorshift), the same on every run. */
static void fill(uint64_t seed, float *x, size_t n, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 11) * 0x1.0p-53);
    }
}

enum { N = 4, C_IN = 2, SIDE = 6, CLASSES = 3 };

/*
 * A small residual net on 2x6x6: conv, bn, relu; a block with an identity
 * shortcut; a block that halves the size and doubles the channels (a
 * projection); global average pooling; a linear layer. smooth: tanh in
 * place of every relu (no kinks for finite differences to step over).
 */
static int tiny_resnet_specs(ody_ctx *ctx, ody_layer_spec *s, bool smooth)
{
    int n = 0;
    const char *act = smooth ? "tanh" : "relu";
    int block_act = smooth ? ODY_RESIDUAL_NONE : ODY_RESIDUAL_RELU;
    s[n++] = spec_of(ctx, "conv2d", 4, (double[]){4, 3, 1, 1});
    s[n++] = spec_of(ctx, "batchnorm", 0, NULL);
    s[n++] = spec_of(ctx, act, 0, NULL);
    s[n++] = residual_head(5, ODY_SHORTCUT_AUTO, block_act);
    s[n++] = spec_of(ctx, "conv2d", 4, (double[]){4, 3, 1, 1});
    s[n++] = spec_of(ctx, "batchnorm", 0, NULL);
    s[n++] = spec_of(ctx, act, 0, NULL);
    s[n++] = spec_of(ctx, "conv2d", 4, (double[]){4, 3, 1, 1});
    s[n++] = spec_of(ctx, "batchnorm", 0, NULL);
    s[n++] = residual_head(5, ODY_SHORTCUT_AUTO, block_act);
    s[n++] = spec_of(ctx, "conv2d", 4, (double[]){8, 3, 2, 1});
    s[n++] = spec_of(ctx, "batchnorm", 0, NULL);
    s[n++] = spec_of(ctx, act, 0, NULL);
    s[n++] = spec_of(ctx, "conv2d", 4, (double[]){8, 3, 1, 1});
    s[n++] = spec_of(ctx, "batchnorm", 0, NULL);
    s[n++] = spec_of(ctx, "global_avgpool", 0, NULL);
    s[n++] = spec_of(ctx, "linear", 1, (double[]){CLASSES});
    return n;
}

static ody_model *tiny_resnet(ody_ctx *ctx, ody_backend backend, bool fusion, bool smooth)
{
    ody_layer_spec s[32];
    int n = tiny_resnet_specs(ctx, s, smooth);
    for (int i = 0; i < n; i++)
        s[i].backend = backend;
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "tiny", s, n, ody_shape3(C_IN, SIDE, SIDE), &m), ODY_OK);
    assert_int_equal(ody_model_set_fusion(ctx, m, fusion), ODY_OK);
    ody_model_init_params(m, 7);
    /* batchnorm's scale and shift away from 1 and 0, so that their gradients show */
    for (int t = 0; t < m->ntensors; t++)
        if (strstr(m->tensors[t]->name, "bn") && !m->tensors[t]->buffer)
            fill(100 + (uint64_t)t, m->tensors[t]->value, (size_t)ody_shape_numel(&m->tensors[t]->shape), 0.5f, 1.5f);
    assert_int_equal(ody_model_prepare(ctx, m, N), ODY_OK);
    return m;
}

/* sum_i w_i * logits_i, in double. */
static double objective(ody_model *m, const ody_forward_info *info, const float *x, const float *w)
{
    const float *z = ody_model_forward(m, info, N, x);
    assert_non_null(z);
    double s = 0.0;
    for (int i = 0; i < N * CLASSES; i++)
        s += (double)w[i] * z[i];
    return s;
}

/* Every trainable parameter's gradient against a central difference of the objective. */
static void check_model_gradients(ody_ctx *ctx, ody_backend backend, bool fusion)
{
    ody_model *m = tiny_resnet(ctx, backend, fusion, true);
    float x[N * C_IN * SIDE * SIDE], w[N * CLASSES];
    fill(1, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
    fill(2, w, sizeof w / sizeof w[0], -1.0f, 1.0f);
    ody_forward_info info = {.training = true, .seed = 1, .step = 0};
    ody_model_zero_grad(m);
    objective(m, &info, x, w);
    ody_model_backward(m, &info, N, x, w, NULL, NULL);
    assert_int_equal(m->status, ODY_OK);
    size_t count = m->ntrain;
    float *analytic = malloc(count * sizeof *analytic);
    memcpy(analytic, m->grads.data, count * sizeof *analytic);
    double worst = 0.0, scale = 0.0;
    for (size_t k = 0; k < count; k++)
        scale = fmax(scale, fabs(analytic[k]));
    for (int t = 0; t < m->ntensors; t++) {
        ody_param *p = m->tensors[t];
        if (p->buffer)
            continue;
        for (size_t e = 0; e < (size_t)ody_shape_numel(&p->shape); e++) {
            float keep = p->value[e];
            const float h = 1e-2f;
            p->value[e] = keep + h;
            double up = objective(m, &info, x, w);
            p->value[e] = keep - h;
            double down = objective(m, &info, x, w);
            p->value[e] = keep;
            double fd = (up - down) / (2.0 * h), err = fabs(fd - analytic[p->offset + e]);
            if (err > worst)
                worst = err;
            if (err > 3e-3 * scale + 1e-3)
                fail_msg("%s[%zu]: analytic %g, finite difference %g (scale %g)", p->name, e,
                         analytic[p->offset + e], fd, scale);
        }
    }
    print_message("  backend %d, fusion %d: worst |analytic - fd| %.3g (largest gradient %.3g)\n", backend, fusion,
                  worst, scale);
    free(analytic);
    ody_model_destroy(ctx, m);
}

static void test_residual_model_gradients(void **state)
{
    check_model_gradients(*state, ODY_BACKEND_ONEDNN, true);
    check_model_gradients(*state, ODY_BACKEND_OPENBLAS, false);
}

/*
 * Fusion (batchnorm + relu, a block's add + relu) gives the same bits as
 * every layer alone: outputs, parameter gradients, running statistics.
 */
static void test_fused_equals_unfused(void **state)
{
    ody_ctx *ctx = *state;
    ody_model *m[2] = {tiny_resnet(ctx, ODY_BACKEND_ONEDNN, true, false),
                       tiny_resnet(ctx, ODY_BACKEND_ONEDNN, false, false)};
    assert_int_equal(m[0]->span[1], 2);  /* bn1 + relu1 */
    assert_int_equal(m[0]->span[8], 2);  /* add1 + relu3 */
    assert_int_equal(m[1]->span[1], 1);
    float x[N * C_IN * SIDE * SIDE], w[N * CLASSES], z[2][N * CLASSES];
    fill(11, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
    fill(12, w, sizeof w / sizeof w[0], -1.0f, 1.0f);
    ody_forward_info info = {.training = true, .batch_rows = 2 * N};
    for (int k = 0; k < 2; k++) {
        ody_model_zero_grad(m[k]);
        memcpy(z[k], ody_model_forward(m[k], &info, N, x), sizeof z[k]);
        ody_model_backward(m[k], &info, N, x, w, NULL, NULL);
        ody_model_update_buffers(m[k]);
    }
    assert_memory_equal(z[0], z[1], sizeof z[0]);
    assert_memory_equal(m[0]->grads.data, m[1]->grads.data, m[0]->grads.size * sizeof(float));
    assert_memory_equal(m[0]->params.data, m[1]->params.data, m[0]->params.size * sizeof(float));
    for (int k = 0; k < 2; k++)
        ody_model_destroy(ctx, m[k]);
}

/* A sync within one process: the parts of the set's chunks, added in order. */
static bool sum_parts(void *user, const double *part, int count, double *total)
{
    const ody_chunk_set *set = user;
    for (int k = 0; k < count; k++)
        total[k] = 0.0;
    for (int c = 0; c < set->nchunks; c++)
        for (int k = 0; k < count; k++)
            total[k] += part[c * count + k];
    return true;
}

/*
 * Batchnorm over the global batch in lockstep: two chunks of N/2 rows give
 * what one chunk of N rows gives over the chunk (the same statistics, up
 * to rounding): logits, gradients and running statistics.
 */
static void test_global_statistics_in_lockstep(void **state)
{
    ody_ctx *ctx = *state;
    ody_layer_spec s[32];
    int n = tiny_resnet_specs(ctx, s, false);
    ody_model *m[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < n; i++)
            if (strcmp(s[i].kind, "batchnorm") == 0 || strcmp(s[i].kind, "residual") == 0)
                s[i].args[strcmp(s[i].kind, "batchnorm") == 0 ? 2 : ODY_RESIDUAL_BN_STATISTICS] = k == 0 ? 2 : 1;
        assert_int_equal(ody_model_create_from_specs(ctx, "tiny", s, n, ody_shape3(C_IN, SIDE, SIDE), &m[k]), ODY_OK);
        ody_model_init_params(m[k], 7);
        assert_int_equal(ody_model_prepare(ctx, m[k], N), ODY_OK);
    }
    assert_false(m[0]->lockstep);
    assert_true(m[1]->lockstep);
    float x[N * C_IN * SIDE * SIDE], w[N * CLASSES];
    fill(21, x, sizeof x / sizeof x[0], -1.0f, 2.0f);
    fill(22, w, sizeof w / sizeof w[0], -1.0f, 1.0f);
    ody_forward_info info = {.training = true, .batch_rows = N};
    ody_model_zero_grad(m[0]);
    const float *z0 = ody_model_forward(m[0], &info, N, x);
    ody_model_backward(m[0], &info, N, x, w, NULL, NULL);
    ody_model_update_buffers(m[0]);

    const size_t per = C_IN * SIDE * SIDE;
    int rows[2] = {N / 2, N / 2};
    const float *xs[2] = {x, x + (N / 2) * per};
    ody_forward_info infos[2] = {info, info};
    ody_chunk_set set = {.nchunks = 2, .rows = rows, .x = xs, .info = infos, .sync = sum_parts, .step_rows = N,
                         .owner = true};
    set.user = &set;
    ody_model_zero_grad(m[1]);
    const float *z1 = ody_model_forward_chunks(m[1], &set);
    assert_non_null(z1);
    ody_model_backward_chunks(m[1], &set, w, NULL, NULL, NULL);
    ody_model_update_buffers(m[1]);
    for (int i = 0; i < N * CLASSES; i++)
        assert_float_equal(z0[i], z1[i], 1e-5);
    double scale = 0.0;
    for (size_t k = 0; k < m[0]->params.size; k++)
        scale = fmax(scale, fabs(m[0]->grads.data[k]));
    for (size_t k = 0; k < m[0]->ntrain; k++)
        if (fabs(m[0]->grads.data[k] - m[1]->grads.data[k]) > 1e-5 * scale)
            for (int t = 0; t < m[0]->ntensors; t++)
                if (m[0]->tensors[t]->offset <= k && k < m[0]->tensors[t]->offset + (size_t)ody_shape_numel(&m[0]->tensors[t]->shape))
                    fail_msg("%s[%zu]: chunk %g, global %g", m[0]->tensors[t]->name, k - m[0]->tensors[t]->offset,
                             m[0]->grads.data[k], m[1]->grads.data[k]);
    for (size_t k = m[0]->ntrain; k < m[0]->params.size; k++)
        assert_float_equal(m[0]->params.data[k], m[1]->params.data[k], 1e-5);
    for (int k = 0; k < 2; k++)
        ody_model_destroy(ctx, m[k]);
}

/* The graph: where each layer reads from, the projection, and the few gradient buffers it needs. */
static void test_residual_graph(void **state)
{
    ody_ctx *ctx = *state;
    ody_model *m = tiny_resnet(ctx, ODY_BACKEND_ONEDNN, true, false);
    /* conv1 bn1 relu1 | conv2 bn2 relu2 conv3 bn3 add1 relu3 | conv4 bn4 relu4 conv5 bn5 conv6 bn6 add2 relu5 | gap1 fc1 */
    assert_int_equal(m->nlayers, 21);
    const char *names[] = {"conv1", "bn1",  "relu1", "conv2", "bn2",  "relu2", "conv3", "bn3", "add1", "relu3", "conv4",
                           "bn4",   "relu4", "conv5", "bn5",  "conv6", "bn6",  "add2",  "relu5", "gap1", "fc1"};
    for (int i = 0; i < m->nlayers; i++)
        assert_string_equal(m->layers[i]->name, names[i]);
    assert_int_equal(m->layers[8]->src, 7);   /* add1 = bn3 + relu1 (identity) */
    assert_int_equal(m->layers[8]->src2, 2);
    assert_int_equal(m->layers[15]->src, 9);  /* conv6, the projection, reads relu3 */
    ody_param *proj = ody_model_find_param(m, "conv6.weight");
    assert_non_null(proj);
    assert_int_equal(proj->shape.dims[0], 8);
    assert_int_equal(proj->shape.dims[2], 1);
    assert_int_equal(m->layers[17]->src, 14); /* add2 = bn5 + bn6 */
    assert_int_equal(m->layers[17]->src2, 16);
    assert_int_equal(m->fanout[2], 2);
    assert_int_equal(m->fanout[9], 2);
    assert_true(m->nslots <= 3);
    assert_true(m->grad_tmp); /* a block's input gets its second gradient added */
    ody_model_destroy(ctx, m);

    /* A chain needs two gradient buffers used in turn, and no tmp. */
    ody_layer_spec s[3] = {spec_of(ctx, "linear", 1, (double[]){5}), spec_of(ctx, "relu", 0, NULL),
                           spec_of(ctx, "linear", 1, (double[]){2})};
    assert_int_equal(ody_model_create_from_specs(ctx, "chain", s, 3, ody_shape1(4), &m), ODY_OK);
    assert_int_equal(ody_model_set_fusion(ctx, m, false), ODY_OK);
    assert_int_equal(ody_model_prepare(ctx, m, 2), ODY_OK);
    assert_int_equal(m->nslots, 2);
    assert_false(m->grad_tmp);
    ody_model_destroy(ctx, m);
}

/* Buffers: after the trainable tensors, named, not counted, not in any layer's range. */
static void test_buffers_layout(void **state)
{
    ody_ctx *ctx = *state;
    ody_model *m = tiny_resnet(ctx, ODY_BACKEND_ONEDNN, true, false);
    ody_param *rm = ody_model_find_param(m, "bn2.running_mean"), *rv = ody_model_find_param(m, "bn2.running_var");
    assert_non_null(rm);
    assert_non_null(rv);
    assert_true(rm->buffer && rv->buffer);
    assert_true(rm->offset >= m->ntrain && rv->offset >= m->ntrain);
    assert_true(m->ntrain < m->params.size);
    assert_float_equal(rv->value[0], 1.0f, 0.0f); /* running_var starts at 1, running_mean at 0 */
    assert_float_equal(rm->value[0], 0.0f, 0.0f);
    size_t trainable = 0;
    for (int t = 0; t < m->ntensors; t++)
        if (!m->tensors[t]->buffer) {
            trainable += (size_t)ody_shape_numel(&m->tensors[t]->shape);
            assert_true(m->tensors[t]->offset < m->ntrain);
        }
    assert_int_equal(trainable, m->nparams);
    for (int i = 0; i < m->nlayers; i++)
        assert_true(m->layer_range[i].end <= m->ntrain);
    ody_model_destroy(ctx, m);
}

/*
 * Running statistics: two chunks of a step each add their share; after the
 * update the running values are (1 - momentum) * old + momentum * the
 * chunk-weighted mean of the chunks' mean and unbiased variance.
 * Evaluation then normalises with them.
 */
static void test_batchnorm_running_statistics(void **state)
{
    ody_ctx *ctx = *state;
    enum { F = 3, ROWS = 4 };
    ody_layer_spec s[2] = {spec_of(ctx, "batchnorm", 1, (double[]){0.25}), spec_of(ctx, "linear", 1, (double[]){2})};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "bn", s, 2, ody_shape1(F), &m), ODY_OK);
    ody_model_init_params(m, 3);
    assert_int_equal(ody_model_prepare(ctx, m, ROWS), ODY_OK);
    float x[2][ROWS * F];
    fill(5, x[0], ROWS * F, -2.0f, 3.0f);
    fill(6, x[1], ROWS * F, 0.0f, 1.0f);
    ody_model_zero_grad(m);
    ody_forward_info info = {.training = true, .batch_rows = 2 * ROWS};
    for (int c = 0; c < 2; c++)
        assert_non_null(ody_model_forward(m, &info, ROWS, x[c]));
    ody_param *rm = ody_model_find_param(m, "bn1.running_mean"), *rv = ody_model_find_param(m, "bn1.running_var");
    ody_model_update_buffers(m);
    double want_mean[F], want_var[F];
    for (int f = 0; f < F; f++) {
        double mean_sum = 0.0, var_sum = 0.0;
        for (int c = 0; c < 2; c++) {
            double mu = 0.0, q = 0.0;
            for (int i = 0; i < ROWS; i++)
                mu += x[c][i * F + f];
            mu /= ROWS;
            for (int i = 0; i < ROWS; i++)
                q += (x[c][i * F + f] - mu) * (x[c][i * F + f] - mu);
            mean_sum += 0.5 * mu;
            var_sum += 0.5 * q / (ROWS - 1);
        }
        want_mean[f] = 0.75 * 0.0 + 0.25 * mean_sum;
        want_var[f] = 0.75 * 1.0 + 0.25 * var_sum;
        assert_float_equal(rm->value[f], want_mean[f], 1e-6);
        assert_float_equal(rv->value[f], want_var[f], 1e-6);
    }
    /* evaluation: (x - running_mean) / sqrt(running_var + eps) * weight + bias, through the linear layer */
    ody_param *bw = ody_model_find_param(m, "bn1.weight"), *bb = ody_model_find_param(m, "bn1.bias");
    fill(9, bw->value, F, 0.5f, 2.0f);
    fill(10, bb->value, F, -1.0f, 1.0f);
    const float *z = ody_model_forward(m, NULL, ROWS, x[0]);
    ody_param *fw = ody_model_find_param(m, "fc1.weight"), *fb = ody_model_find_param(m, "fc1.bias");
    for (int i = 0; i < ROWS; i++)
        for (int o = 0; o < 2; o++) {
            double want = fb->value[o];
            for (int f = 0; f < F; f++) {
                double y = (x[0][i * F + f] - rm->value[f]) / sqrt(rv->value[f] + 1e-5) * bw->value[f] + bb->value[f];
                want += fw->value[o * F + f] * y;
            }
            assert_float_equal(z[i * 2 + o], want, 1e-5);
        }
    ody_model_destroy(ctx, m);
}

/* FNV-1a over the bytes of n floats, on from h. */
static uint64_t fnv(uint64_t h, const float *x, size_t n)
{
    const unsigned char *b = (const unsigned char *)x;
    for (size_t i = 0; i < n * sizeof *x; i++)
        h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

/*
 * Batchnorm's bits are pinned: two batchnorms (the first alone, the second
 * with its relu fused) on 13 x 11 planes (143 values a channel: whole
 * 8-lane groups and a tail), forward in training, backward (the second's
 * input gradient reaches the first's weight gradient), forward in
 * evaluation. ctest runs it at each CPU level: every level's loops give
 * these bits, which were those of the plain loops before them.
 */
static void test_batchnorm_pinned_bits(void **state)
{
    ody_ctx *ctx = *state;
    enum { ROWS = 5, CH = 3, H = 13, W = 11, NUMEL = CH * H * W };
    ody_layer_spec s[3] = {spec_of(ctx, "batchnorm", 0, NULL), spec_of(ctx, "batchnorm", 0, NULL),
                           spec_of(ctx, "relu", 0, NULL)};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "bn", s, 3, ody_shape3(CH, H, W), &m), ODY_OK);
    assert_int_equal(ody_model_set_fusion(ctx, m, true), ODY_OK);
    for (int t = 0; t < m->ntensors; t++) /* weights and biases away from 1 and 0 */
        if (!m->tensors[t]->buffer)
            fill(200 + (uint64_t)t, m->tensors[t]->value, (size_t)ody_shape_numel(&m->tensors[t]->shape), -1.5f,
                 1.5f);
    assert_int_equal(ody_model_prepare(ctx, m, ROWS), ODY_OK);
    assert_int_equal(m->span[1], 2); /* bn2 + relu */
    static float x[ROWS * NUMEL], dz[ROWS * NUMEL];
    fill(21, x, ROWS * NUMEL, -3.0f, 5.0f);
    fill(22, dz, ROWS * NUMEL, -1.0f, 1.0f);
    ody_forward_info info = {.training = true, .batch_rows = 2 * ROWS};
    ody_model_zero_grad(m);
    const float *z = ody_model_forward(m, &info, ROWS, x);
    assert_non_null(z);
    uint64_t h[3] = {fnv(0xcbf29ce484222325ull, z, ROWS * NUMEL)};
    ody_model_backward(m, &info, ROWS, x, dz, NULL, NULL);
    assert_int_equal(m->status, ODY_OK);
    h[1] = fnv(0xcbf29ce484222325ull, m->grads.data, m->grads.size);
    ody_model_update_buffers(m);
    z = ody_model_forward(m, NULL, ROWS, x);
    h[2] = fnv(0xcbf29ce484222325ull, z, ROWS * NUMEL);
    print_message("batchnorm bits: %016llx %016llx %016llx\n", (unsigned long long)h[0], (unsigned long long)h[1],
                  (unsigned long long)h[2]);
    const uint64_t want[3] = {0xd8eb621307e31a11ull, 0x81cf78d6a9add064ull, 0x7cfac0faec4a0fdfull};
    for (int k = 0; k < 3; k++)
        assert_true(h[k] == want[k]);
    ody_model_destroy(ctx, m);
}

/* A global average pool's output and gradient. */
static void test_global_avgpool(void **state)
{
    ody_ctx *ctx = *state;
    ody_layer_spec s[2] = {spec_of(ctx, "conv2d", 4, (double[]){2, 1, 1, 0}), spec_of(ctx, "global_avgpool", 0, NULL)};
    ody_model *m = NULL;
    assert_int_equal(ody_model_create_from_specs(ctx, "gap", s, 2, ody_shape3(1, 3, 4), &m), ODY_OK);
    assert_int_equal(m->num_classes, 2);
    ody_model_init_params(m, 1);
    assert_int_equal(ody_model_prepare(ctx, m, 2), ODY_OK);
    float x[2 * 12];
    fill(3, x, 24, -1.0f, 1.0f);
    const float *y = ody_model_forward(m, NULL, 2, x);
    const float *w = ody_model_find_param(m, "conv1.weight")->value, *b = ody_model_find_param(m, "conv1.bias")->value;
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 2; c++) {
            double mean = 0.0;
            for (int e = 0; e < 12; e++)
                mean += x[i * 12 + e];
            assert_float_equal(y[i * 2 + c], w[c] * mean / 12.0 + b[c], 1e-5);
        }
    /* d/dw of sum y = sum over rows of the mean of x */
    ody_model_zero_grad(m);
    ody_forward_info info = {.training = true};
    ody_model_forward(m, &info, 2, x);
    float ones[4] = {1, 1, 1, 1};
    ody_model_backward(m, &info, 2, x, ones, NULL, NULL);
    double want = 0.0;
    for (int e = 0; e < 24; e++)
        want += x[e] / 12.0;
    assert_float_equal(ody_model_find_param(m, "conv1.weight")->grad[0], want, 1e-5);
    ody_model_destroy(ctx, m);
}

/* ------------------------------------------------------------ configs */

static const char *resnet_yaml =
    "model:\n"
    "  name: sequential\n"
    "  num_classes: 10\n"
    "  input_shape: [1, 8, 8]\n"
    "  layers:\n"
    "    - {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}\n"
    "    - {type: batchnorm}\n"
    "    - {type: relu}\n"
    "    - type: residual\n"
    "      repeat: 2\n"
    "      layers:\n"
    "        - {type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}\n"
    "        - {type: batchnorm, momentum: 0.2}\n"
    "    - type: residual\n"
    "      shortcut: projection\n"
    "      activation: none\n"
    "      layers:\n"
    "        - {type: conv2d, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}\n"
    "        - {type: batchnorm}\n"
    "    - {type: global_avgpool}\n"
    "    - {type: linear, out_features: 10}\n";

static void test_residual_config_parses_and_round_trips(void **state)
{
    ody_ctx *ctx = *state;
    ody_config c, back;
    ody_config_defaults(&c);
    assert_int_equal(ody_config_parse(ctx, resnet_yaml, "x.yaml", 0, NULL, &c), ODY_OK);
    /* 3 + 2 x (1 + 2) + (1 + 2) + 2 */
    assert_int_equal(c.model.n_layers, 14);
    assert_string_equal(c.model.layers[3].kind, "residual");
    assert_int_equal((int)c.model.layers[3].args[ODY_RESIDUAL_LAYERS], 2);
    assert_string_equal(c.model.layers[6].kind, "residual");
    assert_int_equal(c.model.layers[4].line, 12);
    assert_int_equal((int)c.model.layers[9].args[ODY_RESIDUAL_SHORTCUT], ODY_SHORTCUT_PROJECTION);
    assert_int_equal((int)c.model.layers[9].args[ODY_RESIDUAL_ACTIVATION], ODY_RESIDUAL_NONE);
    char *text = NULL;
    assert_int_equal(ody_config_to_yaml(ctx, &c, &text), ODY_OK);
    assert_non_null(strstr(text, "{type: residual, shortcut: auto, activation: relu, layers: [{type: conv2d"));
    ody_config_defaults(&back);
    assert_int_equal(ody_config_parse(ctx, text, "x.yaml", 0, NULL, &back), ODY_OK);
    free(text);
    for (int i = 0; i < back.model.n_layers; i++)
        back.model.layers[i].line = c.model.layers[i].line;
    assert_memory_equal(&c.model, &back.model, sizeof c.model);
    ody_model *m = NULL;
    assert_int_equal(ody_model_create(ctx, &c.model, &m), ODY_OK);
    /* 3 + 2 x (2 + add + relu) + (2 + projection conv, bn + add) + 2 */
    assert_int_equal(m->nlayers, 3 + 8 + 5 + 2);
    ody_model_destroy(ctx, m);
}

static void expect_config_error(ody_ctx *ctx, const char *layers, const char *message)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "model:\n  name: sequential\n  num_classes: 4\n  input_shape: [2, 8, 8]\n  layers:\n%s",
             layers);
    ody_config c;
    ody_config_defaults(&c);
    ody_status st = ody_config_parse(ctx, yaml, "x.yaml", 0, NULL, &c);
    if (st == ODY_OK) { /* the shapes are checked when the model is built */
        ody_model *m = NULL;
        st = ody_model_create(ctx, &c.model, &m);
        ody_model_destroy(ctx, m);
    }
    assert_int_equal(st, ODY_ERR_CONFIG);
    if (!strstr(ody_ctx_error(ctx), message))
        fail_msg("error '%s' does not contain '%s'", ody_ctx_error(ctx), message);
}

static void test_residual_config_errors(void **state)
{
    ody_ctx *ctx = *state;
    expect_config_error(ctx,
                        "    - type: residual\n"
                        "      shortcut: identity\n"
                        "      layers: [{type: conv2d, out_channels: 4, kernel_size: 3, padding: 1}]\n"
                        "    - {type: global_avgpool}\n",
                        "layer 1 (residual, line 6): residual block: its layers give 4x8x8 but an identity "
                        "shortcut passes 2x8x8");
    expect_config_error(ctx,
                        "    - type: residual\n"
                        "      layers: [{type: conv2d, out_channels: 4, kernel_size: 2}]\n",
                        "residual block: no strided 1x1 convolution takes its input 2x8x8 to its output 4x7x7");
    expect_config_error(ctx,
                        "    - type: residual\n"
                        "      layers:\n"
                        "        - type: residual\n"
                        "          layers: [{type: relu}]\n",
                        "x.yaml:8:11: model.layers[0].layers[0]: a residual block cannot hold another residual block");
    expect_config_error(ctx, "    - {type: residual, layers: []}\n", "a residual block needs at least one layer");
    expect_config_error(ctx, "    - {type: residual}\n", "a residual block needs 'layers'");
    expect_config_error(ctx, "    - {type: residual, layers: [{type: relu}], shortcut: conv}\n",
                        "model.layers[0].shortcut: 'conv' is not one of: auto, identity, projection");
    expect_config_error(ctx, "    - {type: residual, layers: [{type: relu}], stride: 2}\n",
                        "unknown key 'stride' for a residual block (it takes: layers, shortcut, activation, repeat)");
    expect_config_error(ctx, "    - {type: flatten}\n    - {type: batchnorm}\n    - {type: global_avgpool}\n",
                        "layer 3 (global_avgpool, line 8): global_avgpool averages each channel of a (C, H, W) input");
    expect_config_error(ctx,
                        "    - {type: conv2d, out_channels: 2, kernel_size: 1}\n    - {type: batchnorm, statistics: 1}\n"
                        "    - {type: batchnorm, statistics: 2}\n    - {type: global_avgpool}\n",
                        "bn1 (config line 7) takes its statistics over the global batch but bn2 (config line 8) over the "
                        "chunk: use one kind for every batchnorm (model.batchnorm)");
    expect_config_error(ctx, "    - {type: conv2d, out_channels: 2, kernel_size: 1}\n    - {type: batchnorm, eps: 0}\n",
                        "x.yaml:7:30: model.layers[1].eps: 0 is out of range (must be >= 1e-12 and <= 1)");
}

#define CTX_TEST(fn) cmocka_unit_test_setup_teardown(fn, ody_test_ctx_setup, ody_test_ctx_teardown)

static const struct CMUnitTest group[] = {
    CTX_TEST(test_residual_model_gradients),
    CTX_TEST(test_fused_equals_unfused),
    CTX_TEST(test_global_statistics_in_lockstep),
    CTX_TEST(test_residual_graph),
    CTX_TEST(test_buffers_layout),
    CTX_TEST(test_batchnorm_running_statistics),
    CTX_TEST(test_batchnorm_pinned_bits),
    CTX_TEST(test_global_avgpool),
    CTX_TEST(test_residual_config_parses_and_round_trips),
    CTX_TEST(test_residual_config_errors),
};

ODY_TEST_MAIN(group)
