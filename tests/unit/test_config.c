/* Unit tests: io config (schema, parsing, messages, overrides, YAML round trip, find, resolve). */
#include "ody_test.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_internal.h"
#include "odyssey/io.h"
#include "odyssey/nn.h"

/* ---------------------------------------------------------------- fixture */

enum { MAX_SCRATCH = 16 };

typedef struct {
    ody_ctx *ctx;
    char dir[256];                  /* scratch directory, removed in teardown */
    char made[MAX_SCRATCH][512];    /* files and folders created in it, in order */
    int nmade;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || ody_ctx_create(&fx->ctx, MPI_COMM_WORLD) != ODY_OK)
        return -1;
    fx->ctx->log_level = ODY_LOG_WARN;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/ody-test-config-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    for (int i = fx->nmade - 1; i >= 0; i--)
        remove(fx->made[i]);
    rmdir(fx->dir);
    unsetenv("ODY_CONFIG_DIR");
    ody_ctx_destroy(fx->ctx);
    free(fx);
    return 0;
}

/* Write text to DIR/rel (rel may hold one folder level); returns the full path. */
static const char *scratch_file(fixture *fx, const char *rel, const char *text)
{
    char path[512];
    const char *slash = strchr(rel, '/');
    if (slash) {
        snprintf(path, sizeof path, "%s/%.*s", fx->dir, (int)(slash - rel), rel);
        if (mkdir(path, 0700) == 0)
            snprintf(fx->made[fx->nmade++], sizeof fx->made[0], "%s", path);
    }
    assert_true(fx->nmade < MAX_SCRATCH);
    snprintf(fx->made[fx->nmade], sizeof fx->made[0], "%s/%s", fx->dir, rel);
    FILE *f = fopen(fx->made[fx->nmade], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return fx->made[fx->nmade++];
}

static const char *baseline_path(void)
{
    static char path[480];
    const char *src = getenv("ODY_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/configs/lenet5/baseline.yaml", src ? src : ".");
    return path;
}

/* Parse text from "x.yaml" over the defaults; expect ODY_OK. */
static void parse_ok(ody_ctx *ctx, const char *text, int n, char *const *overrides, ody_config *cfg)
{
    ody_config_defaults(cfg);
    ody_status st = ody_config_parse(ctx, text, "x.yaml", n, overrides, cfg);
    if (st != ODY_OK)
        fail_msg("unexpected error: %s", ody_ctx_error(ctx));
}

/* Parse text from "x.yaml" (and overrides) and expect exactly message. */
static void expect_error(ody_ctx *ctx, const char *text, const char *override, const char *message)
{
    ody_config cfg;
    ody_config_defaults(&cfg);
    char *overrides[1] = {(char *)override};
    ody_status st = ody_config_parse(ctx, text, "x.yaml", override ? 1 : 0, overrides, &cfg);
    assert_int_equal(st, ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(ctx), message);
}

typedef struct {
    const char *text, *override, *message;
} error_case;

static void expect_errors(ody_ctx *ctx, const error_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_error(ctx, cases[i].text, cases[i].override, cases[i].message);
}

#define COUNT(array) (sizeof(array) / sizeof(array)[0])

/* Same, but only the start and a part of the message are ours (the rest is libyaml's). */
static void expect_error_parts(ody_ctx *ctx, const char *text, const char *override,
                               const char *prefix, const char *part)
{
    ody_config cfg;
    ody_config_defaults(&cfg);
    char *overrides[1] = {(char *)override};
    ody_status st = ody_config_parse(ctx, text, "x.yaml", override ? 1 : 0, overrides, &cfg);
    assert_int_equal(st, ODY_ERR_CONFIG);
    if (strncmp(ody_ctx_error(ctx), prefix, strlen(prefix)) != 0 ||
        !strstr(ody_ctx_error(ctx), part))
        fail_msg("message '%s' lacks '%s' ... '%s'", ody_ctx_error(ctx), prefix, part);
}

/* to_yaml, then parse the text into *back (from the defaults, as source). */
static void round_trip(ody_ctx *ctx, const ody_config *cfg, ody_config *back)
{
    char *text = NULL;
    assert_int_equal(ody_config_to_yaml(ctx, cfg, &text), ODY_OK);
    ody_config_defaults(back);
    ody_status st = ody_config_parse(ctx, text, cfg->source, 0, NULL, back);
    if (st != ODY_OK)
        fail_msg("%s\nin:\n%s", ody_ctx_error(ctx), text);
    free(text);
    /* A layer's line says where it was read, not what it is: the text has its own. */
    for (int i = 0; i < back->model.n_layers && i < cfg->model.n_layers; i++)
        back->model.layers[i].line = cfg->model.layers[i].line;
}

/* ------------------------------------------------------------------ schema */

static void test_schema_rows_are_consistent(void **state)
{
    (void)state;
    int n = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&n);
    assert_true(n >= 50);
    for (int i = 0; i < n; i++) {
        const ody_cfg_row *row = &rows[i];
        assert_ptr_equal(ody_cfg_find(row->section, row->key), row); /* unique */
        assert_non_null(row->doc);
        assert_null(strchr(row->doc, '|')); /* markdown table cell */
        /* A section's rows are contiguous: where one starts, no earlier row had it. */
        if (i > 0 && strcmp(row->section, rows[i - 1].section) != 0)
            for (int k = 0; k < i; k++)
                assert_string_not_equal(rows[k].section, row->section);
        if (row->type == ODY_CFG_INT && row->size == sizeof(int))
            assert_true(row->range.min >= INT_MIN && row->range.max <= INT_MAX);
        if (row->type == ODY_CFG_ENUM && row->size > 0)
            for (const char *const *v = ody_cfg_values(row); *v; v++)
                assert_true(strlen(*v) < row->size);
    }
}

static void test_every_default_parses(void **state)
{
    fixture *fx = *state;
    int n = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&n);
    ody_cfg_reader r = {.ctx = fx->ctx, .source = "schema default"};
    ody_config cfg;
    memset(&cfg, 0, sizeof cfg);
    for (int i = 0; i < n; i++) {
        if (ody_cfg_apply_text(&r, &rows[i], rows[i].def, &cfg) != ODY_OK)
            fail_msg("%s.%s: %s", rows[i].section, rows[i].key, ody_ctx_error(fx->ctx));
    }
}

static void test_defaults(void **state)
{
    (void)state;
    ody_config c;
    ody_config_defaults(&c);
    assert_string_equal(c.experiment.name, "");
    assert_string_equal(c.experiment.output_dir, "checkpoints");
    assert_int_equal(c.experiment.seed, 42);
    assert_string_equal(c.model.name, "lenet5");
    assert_int_equal(c.model.num_classes, 10);
    assert_true(ody_shape_equal(&c.model.input_shape, &(ody_shape){3, {1, 28, 28}}));
    assert_int_equal(c.model.n_hidden, 2);
    assert_int_equal(c.model.hidden_sizes[0], 256);
    assert_int_equal(c.model.hidden_sizes[1], 128);
    assert_int_equal(c.model.init, ODY_INIT_TORCH_DEFAULT);
    assert_string_equal(c.model.variant, "modern");
    assert_int_equal(c.model.n_layers, 0);
    assert_int_equal(c.training.batch_size, 64);
    assert_int_equal(c.training.val_batch_size, 1000);
    assert_true(c.training.shuffle && c.training.save_checkpoints && !c.training.drop_last);
    assert_string_equal(c.training.loss, "cross_entropy");
    assert_true(c.optimizer.learning_rate == 0.01);
    assert_string_equal(c.data.name, "fashion_mnist");
    assert_string_equal(c.data.validation, "test");
    assert_true(c.data.val_fraction == 0.1 && c.data.scale && c.data.standardize);
    assert_int_equal(c.data.synthetic_train, 60000);
    assert_string_equal(c.logging.level, "info");
    assert_string_equal(c.logging.progress, "auto");
}

/* ------------------------------------------------------------ good configs */

static void test_seed_example_parses_exactly(void **state)
{
    fixture *fx = *state;
    ody_config got, want;
    ody_config_defaults(&got);
    assert_int_equal(ody_config_load(fx->ctx, baseline_path(), 0, NULL, &got), ODY_OK);

    ody_config_defaults(&want);
    snprintf(want.source, sizeof want.source, "%s", baseline_path());
    snprintf(want.experiment.name, sizeof want.experiment.name, "lenet5-baseline");
    want.optimizer.momentum = 0.9;
    want.optimizer.weight_decay = 0.0001;
    want.distributed.chunk_size = 32;
    assert_string_equal(got.experiment.name, "lenet5-baseline");
    assert_true(got.optimizer.momentum == 0.9 && got.optimizer.weight_decay == 0.0001);
    assert_int_equal(got.distributed.chunk_size, 32);
    /* Everything else is what the file says, which is also the default. */
    assert_memory_equal(&got, &want, sizeof got);
}

static void test_empty_file_is_all_defaults(void **state)
{
    fixture *fx = *state;
    ody_config want, got;
    ody_config_defaults(&want);
    snprintf(want.source, sizeof want.source, "x.yaml");
    snprintf(want.experiment.name, sizeof want.experiment.name, "lenet5-x");
    parse_ok(fx->ctx, "", 0, NULL, &got);
    assert_memory_equal(&got, &want, sizeof got);
    parse_ok(fx->ctx, "# nothing but a comment\n\n", 0, NULL, &got);
    assert_memory_equal(&got, &want, sizeof got);
    parse_ok(fx->ctx, "data:\n  # name: mnist\n", 0, NULL, &got); /* a section left empty */
    assert_memory_equal(&got, &want, sizeof got);
}

static void test_experiment_name_from_model_and_file(void **state)
{
    fixture *fx = *state;
    ody_config c;
    ody_config_defaults(&c);
    ody_status st = ody_config_parse(fx->ctx, "model: {name: mlp}\n", "a/b/run.v2.yml", 0, NULL,
                                     &c);
    assert_int_equal(st, ODY_OK);
    assert_string_equal(c.experiment.name, "mlp-run.v2");
    assert_string_equal(c.source, "a/b/run.v2.yml");
    ody_config_defaults(&c);
    assert_int_equal(ody_config_parse(fx->ctx, "", NULL, 0, NULL, &c), ODY_OK);
    assert_string_equal(c.experiment.name, "lenet5");
    assert_string_equal(c.source, "");
    parse_ok(fx->ctx, "experiment:\n  name: mine\n", 0, NULL, &c);
    assert_string_equal(c.experiment.name, "mine");
}

static void test_scalar_forms(void **state)
{
    fixture *fx = *state;
    ody_config c;
    parse_ok(fx->ctx,
             "training:\n  shuffle: No\n  drop_last: ON\n  save_checkpoints: off\n"
             "optimizer:\n  learning_rate: 1\n  momentum: 5e-1\n  weight_decay: +0.25\n"
             "experiment:\n  output_dir: \"out dir: 1\"\n  seed: 0\n"
             "model:\n  input_shape: [784]\n  hidden_sizes: []\n  init: kaiming_normal\n",
             0, NULL, &c);
    assert_false(c.training.shuffle);
    assert_true(c.training.drop_last);
    assert_false(c.training.save_checkpoints);
    assert_true(c.optimizer.learning_rate == 1.0 && c.optimizer.momentum == 0.5);
    assert_true(c.optimizer.weight_decay == 0.25);
    assert_string_equal(c.experiment.output_dir, "out dir: 1");
    assert_int_equal(c.experiment.seed, 0);
    assert_true(ody_shape_equal(&c.model.input_shape, &(ody_shape){1, {784}}));
    assert_int_equal(c.model.n_hidden, 0);
    assert_int_equal(c.model.init, ODY_INIT_KAIMING_NORMAL);
}

static void test_optimizer_scheduler_and_training_keys(void **state)
{
    fixture *fx = *state;
    ody_config c;
    parse_ok(fx->ctx,
             "optimizer:\n  name: adamw\n  beta1: 0.8\n  beta2: 0.99\n  eps: 1e-6\n"
             "  weight_decay: 0.01\n"
             "scheduler:\n  milestones: [5, 8]\n  gamma: 0.5\n  warmup_steps: 100\n"
             "  warmup_start_factor: 0.25\n"
             "training:\n  use_scheduler: true\n  scheduler_type: multistep\n"
             "  gradient_clip_norm: 1.0\n  use_mixed_precision: true\n  precision_dtype: fp16\n"
             "  loss_scale: 1024\n  accumulation_steps: 4\n  on_nonfinite: skip\n"
             "distributed:\n  deterministic: false\n",
             0, NULL, &c);
    assert_string_equal(c.optimizer.name, "adamw");
    assert_true(c.optimizer.beta1 == 0.8 && c.optimizer.beta2 == 0.99 && c.optimizer.eps == 1e-6);
    assert_true(c.optimizer.alpha == 0.99 && !c.optimizer.centered);
    assert_int_equal(c.scheduler.n_milestones, 2);
    assert_int_equal(c.scheduler.milestones[1], 8);
    assert_true(c.scheduler.gamma == 0.5 && c.scheduler.warmup_start_factor == 0.25);
    assert_int_equal(c.scheduler.warmup_steps, 100);
    assert_int_equal(c.scheduler.patience, 10);
    assert_string_equal(c.scheduler.monitor, "val_loss");
    assert_true(c.training.use_scheduler && c.training.use_mixed_precision);
    assert_string_equal(c.training.scheduler_type, "multistep");
    assert_string_equal(c.training.precision_dtype, "fp16");
    assert_true(c.training.gradient_clip_norm == 1.0 && c.training.gradient_clip_value == 0.0);
    assert_true(c.training.loss_scale == 1024.0);
    assert_int_equal(c.training.accumulation_steps, 4);
    assert_string_equal(c.training.on_nonfinite, "skip");
    ody_config back;
    round_trip(fx->ctx, &c, &back);
    assert_memory_equal(&c, &back, sizeof c);
    /* Defaults: nothing scheduled, no clipping, float32 gradients, stop on non-finite. */
    parse_ok(fx->ctx, "", 0, NULL, &c);
    assert_false(c.training.use_scheduler || c.training.use_mixed_precision);
    assert_string_equal(c.training.scheduler_type, "none");
    assert_string_equal(c.training.precision_dtype, "bf16");
    assert_true(c.training.loss_scale == 65536.0);
    assert_int_equal(c.training.accumulation_steps, 1);
    assert_string_equal(c.training.on_nonfinite, "stop");
    /* A warmup alone is a schedule. */
    parse_ok(fx->ctx, "training: {use_scheduler: true}\nscheduler: {warmup_steps: 10}\n", 0, NULL,
             &c);
}

/* ------------------------------------------------------------------ errors */

static void test_unknown_keys_and_sections(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"training:\n  epochs: 3\n  batch_sise: 64\n", NULL,
         "x.yaml:3:3: unknown key 'batch_sise' in section 'training' "
         "(did you mean 'batch_size'?)"},
        {"model:\n  name: lenet5\noptimiser:\n  momentum: 0.9\n", NULL,
         "x.yaml:3:1: unknown section 'optimiser' (did you mean 'optimizer'?)"},
        {"training:\n  momentum: 0.9\n", NULL,
         "x.yaml:2:3: unknown key 'momentum' in section 'training' "
         "(did you mean 'optimizer.momentum'?)"},
        {"batch_size: 64\n", NULL,
         "x.yaml:1:1: unknown section 'batch_size' (did you mean 'training.batch_size'?)"},
        {"training:\n  xyzzy: 1\n", NULL,
         "x.yaml:2:3: unknown key 'xyzzy' in section 'training'"},
        {"plugh: {}\n", NULL, "x.yaml:1:1: unknown section 'plugh'"},
    };
    expect_errors(ctx, cases, COUNT(cases));
}

static void test_wrong_types(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"training:\n  batch_size: sixty-four\n", NULL,
         "x.yaml:2:15: training.batch_size: expected an integer, got 'sixty-four'"},
        {"training:\n  epochs: 2.5\n", NULL,
         "x.yaml:2:11: training.epochs: expected an integer, got '2.5'"},
        {"training:\n  epochs: 0x10\n", NULL,
         "x.yaml:2:11: training.epochs: expected an integer, got '0x10'"},
        {"training:\n  epochs:\n", NULL,
         "x.yaml:2:10: training.epochs: expected an integer, got nothing"},
        {"training:\n  epochs: [3]\n", NULL,
         "x.yaml:2:11: training.epochs: expected an integer, got a list"},
        {"optimizer:\n  learning_rate: 0.1x\n", NULL,
         "x.yaml:2:18: optimizer.learning_rate: expected a number, got '0.1x'"},
        {"optimizer:\n  learning_rate: .nan\n", NULL,
         "x.yaml:2:18: optimizer.learning_rate: expected a number, got '.nan'"},
        {"training:\n  shuffle: maybe\n", NULL,
         "x.yaml:2:12: training.shuffle: expected true or false, got 'maybe'"},
        {"model:\n  input_shape: 28\n", NULL,
         "x.yaml:2:16: model.input_shape: expected a list of integers, got '28'"},
        {"model:\n  input_shape: [1, a, 3]\n", NULL,
         "x.yaml:2:20: model.input_shape[1]: expected an integer, got 'a'"},
        {"data:\n  path: {a: 1}\n", NULL,
         "x.yaml:2:9: data.path: expected a string, got a mapping"},
        {"training: 5\n", NULL,
         "x.yaml:1:11: training: expected a mapping of keys, got '5'"},
        {"[1, 2]\n", NULL,
         "x.yaml:1:1: expected a mapping of sections (model:, training:, ...), got a list"},
        {"training:\n  [a]: 1\n", NULL,
         "x.yaml:2:3: expected a key name, got a list"},
    };
    expect_errors(ctx, cases, COUNT(cases));
}

static void test_out_of_range_and_choices(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"training:\n  batch_size: -5\n", NULL,
         "x.yaml:2:15: training.batch_size: -5 is out of range "
         "(must be >= 1 and <= 10000000)"},
        {"training:\n  log_interval: 0\n", NULL,
         "x.yaml:2:17: training.log_interval: 0 is out of range (must be >= 1)"},
        {"training:\n  max_steps: 99999999999999999999\n", NULL,
         "x.yaml:2:14: training.max_steps: 99999999999999999999 is out of range "
         "(must be >= 0)"},
        {"optimizer:\n  learning_rate: 0\n", NULL,
         "x.yaml:2:18: optimizer.learning_rate: 0 is out of range (must be > 0 and <= 10)"},
        {"optimizer:\n  momentum: 1.0\n", NULL,
         "x.yaml:2:13: optimizer.momentum: 1.0 is out of range (must be >= 0 and < 1)"},
        {"data:\n  val_fraction: 1e999\n", NULL,
         "x.yaml:2:17: data.val_fraction: 1e999 is out of range (must be > 0 and < 1)"},
        {"model:\n  hidden_sizes: [64, 0]\n", NULL,
         "x.yaml:2:22: model.hidden_sizes[1]: 0 is out of range "
         "(must be >= 1 and <= 1000000)"},
        {"model:\n  input_shape: [1, 2, 3, 4]\n", NULL,
         "x.yaml:2:16: model.input_shape: expected 1 to 3 values, got 4"},
        {"model:\n  hidden_sizes: [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]\n", NULL,
         "x.yaml:2:17: model.hidden_sizes: expected 0 to 16 values, got 17"},
        {"optimizer:\n  name: sgdd\n", NULL,
         "x.yaml:2:9: optimizer.name: 'sgdd' is not one of: sgd, adam, adamw, rmsprop"},
        {"training:\n  scheduler_type: linear\n", NULL,
         "x.yaml:2:19: training.scheduler_type: 'linear' is not one of: none, step, multistep, "
         "exponential, cosine, plateau"},
        {"model:\n  activation: gelu\n", NULL,
         "x.yaml:2:15: model.activation: 'gelu' is not one of: relu, tanh, sigmoid"},
        {"model:\n  dtype: float16\n", NULL,
         "x.yaml:2:10: model.dtype: 'float16' is not one of: float32"},
        {"model:\n  init: he\n", NULL,
         "x.yaml:2:9: model.init: 'he' is not one of: auto, zero, kaiming_uniform, "
         "kaiming_normal, xavier_uniform, xavier_normal, torch_default"},
    };
    expect_errors(ctx, cases, COUNT(cases));
    char text[400];
    snprintf(text, sizeof text, "experiment:\n  name: %0200d\n", 7);
    expect_error(ctx, text, NULL,
                 "x.yaml:2:9: experiment.name: '0000000000000000000000000000000000000000...' is "
                 "too long (at most 127 characters)");
}

static void test_malformed_yaml(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    /* An unclosed bracket, a key indented too little, a tab, a second document. */
    expect_error_parts(ctx, "model:\n  input_shape: [1, 28, 28\ntraining:\n  epochs: 3\n", NULL,
                       "x.yaml:3:9: ", "did not find expected ',' or ']'");
    expect_error_parts(ctx, "training:\n  epochs: 3\n batch_size: 4\n", NULL, "x.yaml:3:2: ",
                       "did not find expected key");
    expect_error_parts(ctx, "training:\n\tepochs: 3\n", NULL, "x.yaml:2:1: ",
                       "found character that cannot start any token");
    expect_error(ctx, "training:\n  epochs: 3\n---\ntraining:\n  epochs: 4\n", NULL,
                 "x.yaml:4:1: a config holds one YAML document; found a second");
    expect_error_parts(ctx, "model:\n  name: *nowhere\n", NULL, "x.yaml:2:9: ",
                       "found undefined alias");
}

static void test_duplicate_keys(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"training:\n  epochs: 3\n  batch_size: 8\n  epochs: 4\n", NULL,
         "x.yaml:4:3: duplicate key 'epochs' in section 'training' (first at 2:3)"},
        {"training:\n  epochs: 3\nmodel: {}\ntraining:\n  epochs: 4\n", NULL,
         "x.yaml:4:1: duplicate section 'training' (first at 1:1)"},
    };
    expect_errors(ctx, cases, COUNT(cases));
}

static void test_cross_key_checks(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"data:\n  name: idx\n", NULL, "x.yaml: data.path: required when data.name is idx"},
        {"data:\n  name: idx\n  path: /d\n  train_images: a\n  train_labels: b\n", NULL,
         "x.yaml: data.test_images: required when data.name is idx"},
        {"data:\n  name: hdf5\n", NULL, "x.yaml: data.path: required when data.name is hdf5"},
        {"data:\n  mean: 0.5\n", NULL,
         "x.yaml: data.mean: has no effect while data.std is 0 (set data.std > 0 to standardise)"},
        {"optimizer:\n  nesterov: true\n", NULL,
         "x.yaml: optimizer.nesterov: needs momentum > 0 and dampening 0"},
        {"experiment:\n  name: a/b\n", NULL,
         "x.yaml: experiment.name: 'a/b' is not a directory name (no '/', not . or ..)"},
        {"training:\n  scheduler_type: cosine\n", NULL,
         "x.yaml: training.scheduler_type: has no effect while training.use_scheduler is false"},
        {"scheduler:\n  warmup_steps: 5\n", NULL,
         "x.yaml: scheduler.warmup_steps: has no effect while training.use_scheduler is false"},
        {"training:\n  use_scheduler: true\n", NULL,
         "x.yaml: training.use_scheduler: needs training.scheduler_type (or "
         "scheduler.warmup_steps > 0 for a warmup alone)"},
        {"training:\n  use_scheduler: true\n  scheduler_type: multistep\n", NULL,
         "x.yaml: scheduler.milestones: required when training.scheduler_type is multistep"},
        {"scheduler:\n  milestones: [3, 3]\n", NULL,
         "x.yaml: scheduler.milestones: must be increasing (3 after 3)"},
        {"training: {use_scheduler: true, scheduler_type: plateau}\ndata: {validation: none}\n",
         NULL,
         "x.yaml: scheduler.monitor: val_loss needs validation (data.validation is none, "
         "training.validate_interval is 1)"},
        {"training: {gradient_clip_norm: 1, gradient_clip_value: 0.5}\n", NULL,
         "x.yaml: training.gradient_clip_value: set at most one of gradient_clip_norm and "
         "gradient_clip_value"},
        {"training: {use_mixed_precision: true, precision_dtype: fp16}\n", NULL,
         "x.yaml: training.precision_dtype: fp16 (half-precision gradients with loss scaling) "
         "needs distributed.deterministic: false (deterministic mode, the default, sums "
         "gradients exactly in integers; bf16 compute works there)"},
        /* An override can break a check that involves more than one key. */
        {"training:\n  epochs: 2\n", "data.name=idx",
         "x.yaml: data.path: required when data.name is idx"},
    };
    expect_errors(ctx, cases, COUNT(cases));
    ody_config c;
    /* Test files are needed only to validate on them. */
    parse_ok(ctx,
             "data:\n  name: idx\n  path: /d\n  train_images: a\n  train_labels: b\n"
             "  validation: split\n",
             0, NULL, &c);
    /* Both batch sizes given is fine: batch_size_per_rank wins where it is used. */
    parse_ok(ctx, "training:\n  batch_size: 64\n  batch_size_per_rank: 32\n", 0, NULL, &c);
}

/* data.crop_padding, data.horizontal_flip and training.label_smoothing: values and errors. */
static void test_augmentation_and_label_smoothing(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    ody_config c;
    ody_config_defaults(&c);
    assert_int_equal(c.data.crop_padding, 0);
    assert_false(c.data.horizontal_flip);
    assert_true(c.training.label_smoothing == 0.0);
    /* 14 is half of 28: the most a 28x28 image takes. */
    parse_ok(ctx,
             "data:\n  crop_padding: 14\n  horizontal_flip: true\ntraining:\n"
             "  label_smoothing: 0.1\n",
             0, NULL, &c);
    assert_int_equal(c.data.crop_padding, 14);
    assert_true(c.data.horizontal_flip);
    assert_true(c.training.label_smoothing == 0.1);
    /* Image files feeding a flat input: their shape is checked when they are read. */
    parse_ok(ctx, "model: {name: mlp, input_shape: [784]}\ndata: {crop_padding: 4}\n", 0, NULL, &c);
    static const error_case cases[] = {
        {"data:\n  crop_padding: -1\n", NULL,
         "x.yaml:2:17: data.crop_padding: -1 is out of range (must be >= 0 and <= 1000000)"},
        {"data:\n  crop_padding: 15\n", NULL,
         "x.yaml: data.crop_padding: 15 is more than half the image (samples 1x28x28, "
         "model.input_shape): at most 14"},
        /* The narrower side sets the limit. */
        {"model:\n  input_shape: [3, 32, 20]\ndata:\n  crop_padding: 11\n", NULL,
         "x.yaml: data.crop_padding: 11 is more than half the image (samples 3x32x20, "
         "model.input_shape): at most 10"},
        {"model:\n  name: mlp\ndata:\n  crop_padding: 2\n", "model.input_shape=[3, 3, 3]",
         "x.yaml: data.crop_padding: 2 is more than half the image (samples 3x3x3, "
         "model.input_shape): at most 1"},
        /* Synthetic data has the model's input shape: 1-D features are not images. */
        {"model: {name: mlp, input_shape: [784]}\ndata: {name: synthetic, horizontal_flip: true}\n",
         NULL,
         "x.yaml: data.horizontal_flip: augmentation needs image samples (C, H, W), but the "
         "samples are 784 (model.input_shape)"},
        {"model: {name: mlp, input_shape: [28, 28]}\ndata: {name: synthetic, crop_padding: 2}\n",
         NULL,
         "x.yaml: data.crop_padding: augmentation needs image samples (C, H, W), but the "
         "samples are 28x28 (model.input_shape)"},
        {"training:\n  label_smoothing: 1.0\n", NULL,
         "x.yaml:2:20: training.label_smoothing: 1.0 is out of range (must be >= 0 and < 1)"},
        {"training:\n  label_smoothing: -0.1\n", NULL,
         "x.yaml:2:20: training.label_smoothing: -0.1 is out of range (must be >= 0 and < 1)"},
        {"training:\n  loss: mse\n  label_smoothing: 0.1\n", NULL,
         "x.yaml: training.label_smoothing: only applies to training.loss cross_entropy (it is "
         "mse)"},
        {"data:\n  horizontal_flip: maybe\n", NULL,
         "x.yaml:2:20: data.horizontal_flip: expected true or false, got 'maybe'"},
    };
    expect_errors(ctx, cases, COUNT(cases));
}

static void test_missing_file(void **state)
{
    fixture *fx = *state;
    ody_config c;
    char path[512], want[600];
    snprintf(path, sizeof path, "%s/nope.yaml", fx->dir);
    ody_config_defaults(&c);
    assert_int_equal(ody_config_load(fx->ctx, path, 0, NULL, &c), ODY_ERR_CONFIG);
    snprintf(want, sizeof want, "no such config file: %s", path);
    assert_string_equal(ody_ctx_error(fx->ctx), want);
}

/* --------------------------------------------------------------- overrides */

static void test_overrides_apply_in_order(void **state)
{
    fixture *fx = *state;
    ody_config c;
    char *args[] = {"training.batch_size=128", "model.input_shape=[3, 32,32]",
                    "model.hidden_sizes=[64]", "optimizer.momentum=0.5",
                    "optimizer.nesterov=yes", "data.path=/data/x y", "training.batch_size=256",
                    "model.name=mlp", "experiment.output_dir="};
    parse_ok(fx->ctx, "training:\n  batch_size: 32\n", 9, args, &c);
    assert_int_equal(c.training.batch_size, 256);
    assert_true(ody_shape_equal(&c.model.input_shape, &(ody_shape){3, {3, 32, 32}}));
    assert_int_equal(c.model.n_hidden, 1);
    assert_int_equal(c.model.hidden_sizes[0], 64);
    assert_int_equal(c.model.hidden_sizes[1], 0);
    assert_true(c.optimizer.nesterov && c.optimizer.momentum == 0.5);
    assert_string_equal(c.data.path, "/data/x y");
    assert_string_equal(c.experiment.output_dir, "");
    /* Overrides come before the derived name. */
    assert_string_equal(c.experiment.name, "mlp-x");
}

static void test_override_errors(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    static const error_case cases[] = {
        {"", "training.batch_size=-5",
         "command line: training.batch_size=-5: -5 is out of range "
         "(must be >= 1 and <= 10000000)"},
        {"", "batch_size=64",
         "command line: batch_size=64: expected section.key=value "
         "(did you mean 'training.batch_size'?)"},
        {"", "training.batch_size",
         "command line: training.batch_size: expected section.key=value"},
        {"", ".epochs=3",
         "command line: .epochs=3: expected section.key=value "
         "(did you mean 'training.epochs'?)"},
        {"", "training.batch_sise=1",
         "command line: training.batch_sise=1: unknown key 'batch_sise' in section "
         "'training' (did you mean 'batch_size'?)"},
        {"", "optimiser.momentum=0.5",
         "command line: optimiser.momentum=0.5: unknown section 'optimiser' "
         "(did you mean 'optimizer'?)"},
        {"", "model.input_shape=[1,0,28]",
         "command line: model.input_shape=[1,0,28]: model.input_shape[1]: 0 is out of "
         "range (must be >= 1 and <= 1000000)"},
        {"", "training.epochs=[1]",
         "command line: training.epochs=[1]: expected an integer, got a list"},
    };
    expect_errors(ctx, cases, COUNT(cases));
    expect_error_parts(ctx, "", "model.hidden_sizes=[1,", "command line: model.hidden_sizes=[1,: ",
                       "did not find expected node content");
}

/* ------------------------------------------------------------------ layers */

static const char *const sequential_yaml =
    "model:\n"
    "  name: sequential\n"
    "  input_shape: [1, 28, 28]\n"
    "  layers:\n"
    "    - {type: conv2d, out_channels: 6, kernel_size: 5, padding: 2, init: xavier_uniform}\n"
    "    - type: relu\n"
    "    - type: maxpool2d\n"
    "      kernel_size: 2\n"
    "    - {type: flatten}\n"
    "    - {type: dropout, p: 0.25}\n"
    "    - {type: linear, out_features: 10}\n";

static void test_sequential_layers_parse_and_build(void **state)
{
    fixture *fx = *state;
    ody_config c;
    parse_ok(fx->ctx, sequential_yaml, 0, NULL, &c);
    assert_int_equal(c.model.n_layers, 6);
    const ody_layer_spec *conv = &c.model.layers[0];
    assert_string_equal(conv->kind, "conv2d");
    assert_true(conv->args[0] == 6 && conv->args[1] == 5);
    assert_true(conv->args[2] == 1 && conv->args[3] == 2); /* stride's default, padding */
    assert_int_equal(conv->init, ODY_INIT_XAVIER_UNIFORM);
    assert_string_equal(c.model.layers[2].kind, "maxpool2d");
    assert_true(c.model.layers[2].args[0] == 2);
    assert_true(c.model.layers[4].args[0] == 0.25);
    assert_int_equal(c.model.layers[5].init, ODY_INIT_AUTO);
    /* What the config gives is what nn builds from. */
    ody_model *model = NULL;
    assert_int_equal(ody_model_create(fx->ctx, &c.model, &model), ODY_OK);
    assert_int_equal(model->nlayers, 6);
    ody_model_destroy(fx->ctx, model);
}

static void test_layer_errors(void **state)
{
    ody_ctx *ctx = ((fixture *)*state)->ctx;
    const char *head = "model:\n  name: sequential\n  layers:\n";
    const struct {
        const char *layer, *message;
    } cases[] = {
        {"    - {type: conv, out_channels: 6}\n",
         "x.yaml:4:14: model.layers[0]: unknown layer type 'conv' (one of: conv2d, maxpool2d, "
         "avgpool2d, linear, relu, tanh, sigmoid, dropout, flatten, batchnorm, global_avgpool)"},
        {"    - {type: conv2d, out_channels: 6, kernal_size: 5}\n",
         "x.yaml:4:39: model.layers[0]: unknown argument 'kernal_size' for conv2d "
         "(did you mean 'kernel_size'?)"},
        {"    - {type: relu}\n    - {type: conv2d, out_channels: 6, foo: 5}\n",
         "x.yaml:5:39: model.layers[1]: unknown argument 'foo' for conv2d "
         "(it takes: out_channels, kernel_size, stride, padding, algorithm, init)"},
        {"    - {type: conv2d, out_channels: 6}\n",
         "x.yaml:4:7: model.layers[0]: conv2d needs 'kernel_size' (side of the square kernel)"},
        {"    - {type: conv2d, out_channels: 6, kernel_size: 2.5}\n",
         "x.yaml:4:52: model.layers[0].kernel_size: expected an integer, got '2.5'"},
        {"    - {type: conv2d, out_channels: 6, kernel_size: 0}\n",
         "x.yaml:4:52: model.layers[0].kernel_size: 0 is out of range (must be >= 1 and <= 1024)"},
        {"    - {type: dropout, p: 1}\n",
         "x.yaml:4:26: model.layers[0].p: 1 is out of range (must be >= 0 and <= 0.999)"},
        {"    - {out_channels: 6}\n",
         "x.yaml:4:7: model.layers[0]: missing 'type' (one of: conv2d, maxpool2d, avgpool2d, "
         "linear, relu, tanh, sigmoid, dropout, flatten, batchnorm, global_avgpool)"},
        {"    - relu\n",
         "x.yaml:4:7: model.layers[0]: expected a mapping {type: KIND, ...}, got 'relu'"},
        {"    - {type: relu, init: he}\n",
         "x.yaml:4:26: model.layers[0].init: 'he' is not one of: auto, zero, kaiming_uniform, "
         "kaiming_normal, xavier_uniform, xavier_normal, torch_default"},
        {"    - {type: relu, type: tanh}\n",
         "x.yaml:4:20: model.layers[0]: duplicate argument 'type' (first at 4:8)"},
        {"    {type: relu}\n",
         "x.yaml:4:5: model.layers: expected a list of layers, got a mapping"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", head, cases[i].layer);
        expect_error(ctx, text, NULL, cases[i].message);
    }
    expect_error(ctx, "model:\n  name: sequential\n", NULL,
                 "x.yaml: model.layers: required when model.name is sequential");
    expect_error(ctx, "model:\n  layers: [{type: relu}]\n", NULL,
                 "x.yaml: model.layers: only read when model.name is sequential (it is 'lenet5')");
    expect_error(ctx, "model:\n  name: resnet\n", NULL,
                 "x.yaml:2:9: model.name: 'resnet' is not one of: lenet5, mlp, sequential");
    char many[4096] = "model:\n  name: sequential\n  layers: [";
    for (int i = 0; i < ODY_MODEL_MAX_LAYERS + 1; i++)
        strcat(many, i ? ", {type: relu}" : "{type: relu}");
    strcat(many, "]\n");
    expect_error(ctx, many, NULL, "x.yaml:3:11: model.layers: expected at most 128 layers, got 129");
    expect_error(ctx, "model:\n  name: sequential\n",
                 "model.layers=[{type: linear, out_features: 0}]",
                 "command line: model.layers=[{type: linear, out_features: 0}]: "
                 "model.layers[0].out_features: 0 is out of range (must be >= 1 and <= 16777216)");
}

static void test_layers_override(void **state)
{
    fixture *fx = *state;
    ody_config c;
    char *args[] = {"model.name=sequential",
                    "model.layers=[{type: flatten}, {type: linear, out_features: 10}]"};
    parse_ok(fx->ctx, "", 2, args, &c);
    assert_int_equal(c.model.n_layers, 2);
    assert_string_equal(c.model.layers[1].kind, "linear");
    assert_true(c.model.layers[1].args[0] == 10);
}

/* --------------------------------------------------------------- round trip */

static void test_defaults_round_trip(void **state)
{
    fixture *fx = *state;
    ody_config c, back;
    parse_ok(fx->ctx, "", 0, NULL, &c); /* the defaults, resolved */
    round_trip(fx->ctx, &c, &back);
    assert_memory_equal(&c, &back, sizeof c);
}

static void test_baseline_round_trips(void **state)
{
    fixture *fx = *state;
    ody_config c, back;
    ody_config_defaults(&c);
    assert_int_equal(ody_config_load(fx->ctx, baseline_path(), 0, NULL, &c), ODY_OK);
    round_trip(fx->ctx, &c, &back);
    assert_memory_equal(&c, &back, sizeof c);
}

static void test_awkward_values_round_trip(void **state)
{
    fixture *fx = *state;
    ody_config c, back;
    char *args[] = {"experiment.name=\"yes\"", "experiment.output_dir='it''s: \"here\" # not \\x'",
                    "data.path=\"tab\\there\\u00e9\"", "data.train_images=\"123\"",
                    "data.test_images=\"\"", "optimizer.learning_rate=0.30000000000000004",
                    "optimizer.weight_decay=1e-300", "data.mean=-0.0", "data.std=1e300",
                    "model.hidden_sizes=[]", "model.input_shape=[1000000]", "model.init=zero",
                    "experiment.seed=9223372036854775807", "training.max_steps=0"};
    parse_ok(fx->ctx, "", 14, args, &c);
    assert_string_equal(c.experiment.name, "yes");
    assert_string_equal(c.experiment.output_dir, "it's: \"here\" # not \\x");
    assert_string_equal(c.data.path, "tab\there\xc3\xa9");
    assert_true(signbit(c.data.mean));
    round_trip(fx->ctx, &c, &back);
    assert_memory_equal(&c, &back, sizeof c);
}

static void test_sequential_round_trips(void **state)
{
    fixture *fx = *state;
    ody_config c, back;
    parse_ok(fx->ctx, sequential_yaml, 0, NULL, &c);
    round_trip(fx->ctx, &c, &back);
    assert_memory_equal(&c, &back, sizeof c);
    char *text = NULL;
    assert_int_equal(ody_config_to_yaml(fx->ctx, &c, &text), ODY_OK);
    assert_non_null(strstr(text, "\n  layers:\n    - {type: conv2d, out_channels: 6, "
                                 "kernel_size: 5, stride: 1, padding: 2, algorithm: 0, "
                                 "init: xavier_uniform}\n"
                                 "    - {type: relu}\n"));
    assert_non_null(strstr(text, "\n    - {type: dropout, p: 0.25}\n"));
    free(text);
}

static void test_yaml_has_every_key_in_order(void **state)
{
    fixture *fx = *state;
    ody_config c;
    char *text = NULL;
    parse_ok(fx->ctx, "", 0, NULL, &c);
    assert_int_equal(ody_config_to_yaml(fx->ctx, &c, &text), ODY_OK);
    assert_int_equal(strncmp(text, "# odyssey-dist resolved config\n", 31), 0);
    int n = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&n);
    const char *at = text;
    for (int i = 0; i < n; i++) {
        char line[96];
        if (i == 0 || strcmp(rows[i].section, rows[i - 1].section) != 0) {
            snprintf(line, sizeof line, "\n%s:\n", rows[i].section);
            assert_non_null(at = strstr(at, line));
        }
        snprintf(line, sizeof line, "\n  %s: ", rows[i].key);
        if (!(at = strstr(at, line)))
            fail_msg("%s.%s missing or out of order", rows[i].section, rows[i].key);
    }
    assert_non_null(strstr(text, "\n  input_shape: [1, 28, 28]\n"));
    assert_non_null(strstr(text, "\n  learning_rate: 0.01\n"));
    assert_non_null(strstr(text, "\n  path: \"\"\n"));
    free(text);
}

static void test_reference_lists_every_key(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    ody_config_write_reference(f);
    fclose(f);
    assert_non_null(strstr(text, "| key | type | default | allowed | description |"));
    int n = 0;
    const ody_cfg_row *rows = ody_cfg_schema(&n);
    for (int i = 0; i < n; i++) {
        char cell[96];
        snprintf(cell, sizeof cell, "| `%s.%s` | %s | `%s` |", rows[i].section, rows[i].key,
                 ody_cfg_type_name(rows[i].type), rows[i].def);
        if (!strstr(text, cell))
            fail_msg("reference lacks %s", cell);
    }
    assert_non_null(strstr(text, "| `training.batch_size` | int | `64` | >= 1 and <= 10000000 |"));
    assert_non_null(strstr(text, "| sgd, adam, adamw, rmsprop |"));
    assert_non_null(strstr(text, "| lenet5, mlp, sequential |"));
    int nkinds = 0;
    const ody_layer_kind *kinds = ody_layer_kinds(&nkinds);
    for (int k = 0; k < nkinds; k++) {
        char cell[64];
        snprintf(cell, sizeof cell, "| `%s` |", kinds[k].kind);
        assert_non_null(strstr(text, cell));
    }
    assert_non_null(strstr(text, "| | `out_channels` | required | whole, >= 1 and <= 1048576 |"));
    free(text);
}

/* ------------------------------------------------------ find, load, resolve */

static void test_find_and_load_experiment(void **state)
{
    fixture *fx = *state;
    FILE *f = fopen(baseline_path(), "r");
    assert_non_null(f);
    char text[4096];
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    const char *file = scratch_file(fx, "lenet5/baseline.yaml", text);
    setenv("ODY_CONFIG_DIR", fx->dir, 1);

    char path[512];
    assert_int_equal(ody_config_find(fx->ctx, "lenet5/baseline", path, sizeof path), ODY_OK);
    assert_string_equal(path, file);
    assert_int_equal(ody_config_find(fx->ctx, "lenet5/baseline.yaml", path, sizeof path), ODY_OK);
    assert_string_equal(path, file);
    assert_int_equal(ody_config_find(fx->ctx, file, path, sizeof path), ODY_OK);
    assert_string_equal(path, file);
    assert_int_equal(ody_config_find(fx->ctx, "lenet5", path, sizeof path), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(fx->ctx), "no such config file: lenet5"));
    assert_int_equal(ody_config_find(fx->ctx, "lenet5/baseline", path, 8), ODY_ERR_CONFIG);

    ody_config c;
    assert_int_equal(ody_config_load_experiment(fx->ctx, "lenet5", "baseline", &c), ODY_OK);
    assert_string_equal(c.experiment.name, "lenet5-baseline");
    assert_string_equal(c.source, file);
    assert_true(c.optimizer.momentum == 0.9);
    assert_int_equal(ody_config_load_experiment(fx->ctx, "lenet5", "nope", &c), ODY_ERR_CONFIG);
}

static void test_load_rejects_binary_and_folders(void **state)
{
    fixture *fx = *state;
    ody_config c;
    ody_config_defaults(&c);
    assert_int_equal(ody_config_load(fx->ctx, fx->dir, 0, NULL, &c), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(fx->ctx), fx->dir));
    const char *bin = scratch_file(fx, "bin.yaml", "model:\n  name: lenet5\n");
    FILE *f = fopen(bin, "ab");
    fputc(0, f);
    fclose(f);
    assert_int_equal(ody_config_load(fx->ctx, bin, 0, NULL, &c), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(fx->ctx), "NUL byte at offset 22"));
}

static void test_resolve_as_singleton(void **state)
{
    fixture *fx = *state;
    const char *file = scratch_file(fx, "run.yaml", "training:\n  epochs: 3\n");
    char *args[] = {"optimizer.learning_rate=0.1"};
    ody_config want, got;
    ody_config_defaults(&want);
    assert_int_equal(ody_config_load(fx->ctx, file, 1, args, &want), ODY_OK);
    memset(&got, 0xab, sizeof got);
    assert_int_equal(ody_config_resolve(fx->ctx, file, 1, args, &got), ODY_OK);
    assert_memory_equal(&got, &want, sizeof got);
    assert_string_equal(got.experiment.name, "lenet5-run");
    assert_true(got.optimizer.learning_rate == 0.1 && got.training.epochs == 3);

    char *bad[] = {"training.epochs=0"};
    assert_int_equal(ody_config_resolve(fx->ctx, file, 1, bad, &got), ODY_ERR_CONFIG);
    assert_string_equal(ody_ctx_error(fx->ctx),
                        "command line: training.epochs=0: 0 is out of range "
                        "(must be >= 1 and <= 1000000)");
    setenv("ODY_CONFIG_DIR", fx->dir, 1);
    assert_int_equal(ody_config_resolve(fx->ctx, "nope", 0, NULL, &got), ODY_ERR_CONFIG);
    assert_non_null(strstr(ody_ctx_error(fx->ctx), "no such config file: nope"));
}

#define FX(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

static const struct CMUnitTest group[] = {
    cmocka_unit_test(test_schema_rows_are_consistent),
    FX(test_every_default_parses),
    cmocka_unit_test(test_defaults),
    FX(test_seed_example_parses_exactly),
    FX(test_empty_file_is_all_defaults),
    FX(test_experiment_name_from_model_and_file),
    FX(test_scalar_forms),
    FX(test_optimizer_scheduler_and_training_keys),
    FX(test_unknown_keys_and_sections),
    FX(test_wrong_types),
    FX(test_out_of_range_and_choices),
    FX(test_malformed_yaml),
    FX(test_duplicate_keys),
    FX(test_cross_key_checks),
    FX(test_augmentation_and_label_smoothing),
    FX(test_missing_file),
    FX(test_sequential_layers_parse_and_build),
    FX(test_layer_errors),
    FX(test_layers_override),
    FX(test_overrides_apply_in_order),
    FX(test_override_errors),
    FX(test_defaults_round_trip),
    FX(test_baseline_round_trips),
    FX(test_awkward_values_round_trip),
    FX(test_sequential_round_trips),
    FX(test_yaml_has_every_key_in_order),
    cmocka_unit_test(test_reference_lists_every_key),
    FX(test_find_and_load_experiment),
    FX(test_load_rejects_binary_and_folders),
    FX(test_resolve_as_singleton),
};

ODY_TEST_MAIN(group)
