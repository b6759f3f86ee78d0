/*
 * io: the config schema, one row per key, and the helpers that describe
 * it: lookup, did-you-mean suggestions, range text, the markdown reference.
 *
 * To add a key: add its field to the struct in io.h (or the module header
 * that owns it) and one row here, in the section's block. Parsing, range
 * checks, --print-config and the reference follow from the row.
 */
#include "io/io_internal.h"
#include "odyssey/data.h"
#include "odyssey/optim.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* A row whose key is the name of its field in ody_config's section struct. */
#define ROW(sec, field, type_, ...)                                                               \
    {.section = #sec, .key = #field, .type = (type_), .offset = offsetof(ody_config, sec.field), \
     .size = sizeof(((ody_config *)0)->sec.field), __VA_ARGS__}

/* Where a list row keeps its element count. */
#define COUNT_AT(sec, field) offsetof(ody_config, sec.field)

/* Ranges: closed [lo, hi], at least lo, or unbounded. */
#define IN(lo, hi) .range = {(lo), (hi), false, false}
#define AT_LEAST(lo) .range = {(lo), INFINITY, false, false}
#define ANY_NUMBER .range = {-INFINITY, INFINITY, false, false}
#define POSITIVE .range = {0, INFINITY, true, false}
#define FRACTION_BELOW_1 .range = {0, 1, false, true}

_Static_assert(ODY_CONFIG_MAX_MILESTONES <= ODY_SCHEDULE_MAX_MILESTONES,
               "scheduler.milestones must fit ody_schedule_params");

const char *const ody_cfg_init_names[] = {
    [ODY_INIT_AUTO] = "auto",
    [ODY_INIT_ZERO] = "zero",
    [ODY_INIT_KAIMING_UNIFORM] = "kaiming_uniform",
    [ODY_INIT_KAIMING_NORMAL] = "kaiming_normal",
    [ODY_INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [ODY_INIT_XAVIER_NORMAL] = "xavier_normal",
    [ODY_INIT_TORCH_DEFAULT] = "torch_default",
    NULL};

static const char *const dtype_values[] = {"float32", NULL};
static const char *const variant_values[] = {"modern", "classic", NULL};
static const char *const activation_values[] = {"relu", "tanh", "sigmoid", NULL};
static const char *const loss_values[] = {"cross_entropy", "mse", NULL};
static const char *const backend_values[] = {"onednn", "openblas", NULL};
static const char *const batchnorm_values[] = {"chunk", "global", NULL};
static const char *const precision_values[] = {"bf16", "fp16", NULL};
static const char *const nonfinite_values[] = {"stop", "skip", NULL};
static const char *const plateau_mode_values[] = {"auto", "min", "max", NULL};
static const char *const monitor_values[] = {"val_loss", "val_accuracy", "train_loss",
                                             "train_accuracy", NULL};
static const char *const validation_values[] = {"test", "split", "none", NULL};
static const char *const allreduce_values[] = {"bucketed", "blocking", NULL};
static const char *const mode_values[] = {"auto", "max", "min", NULL};
static const char *const level_values[] = {"error", "warn", "info", "debug", NULL};
static const char *const progress_values[] = {"auto", "always", "never", NULL};

static const ody_cfg_row schema[] = {
    /* experiment */
    ROW(experiment, name, ODY_CFG_STRING, .def = "\"\"",
        .doc = "run directory name under output_dir; empty: <model.name>-<config file stem>"),
    ROW(experiment, output_dir, ODY_CFG_STRING, .def = "checkpoints",
        .doc = "root of the run directories"),
    ROW(experiment, seed, ODY_CFG_INT, .def = "42", AT_LEAST(0),
        .doc = "seed of every random stream (init, shuffle, dropout, split, synthetic data, "
               "augmentation)"),

    /* model */
    ROW(model, name, ODY_CFG_ENUM, .def = "lenet5", .values_fn = ody_model_names,
        .doc = "model from the registry; sequential builds model.layers"),
    ROW(model, num_classes, ODY_CFG_INT, .def = "10", IN(2, 100000),
        .doc = "number of classes (outputs of the last layer)"),
    ROW(model, input_shape, ODY_CFG_SHAPE, .def = "[1, 28, 28]", IN(1, 1e6),
        .doc = "shape of one sample, [C, H, W] (1 to 3 dimensions)"),
    ROW(model, dropout, ODY_CFG_FLOAT, .def = "0.0", IN(0, 0.99),
        .doc = "dropout probability before the fully connected layers (0: none)"),
    {.section = "model", .key = "dtype", .type = ODY_CFG_ENUM, .def = "float32",
     .values = dtype_values, .doc = "parameter and activation type"},
    ROW(model, variant, ODY_CFG_ENUM, .def = "modern", .values = variant_values,
        .doc = "lenet5: modern (relu, max pooling) or classic (tanh, average pooling)"),
    ROW(model, activation, ODY_CFG_ENUM, .def = "relu", .values = activation_values,
        .doc = "mlp: activation between the layers"),
    ROW(model, hidden_sizes, ODY_CFG_INT_LIST, .count_offset = COUNT_AT(model, n_hidden),
        .def = "[256, 128]", IN(1, 1e6), .doc = "mlp: widths of the hidden layers (at most 16)"),
    ROW(model, init, ODY_CFG_INIT, .def = "torch_default", .values = ody_cfg_init_names,
        .doc = "initialisation of every parameter: torch_default is PyTorch's (weights and "
               "biases U(+-1/sqrt(fan_in))); auto: Kaiming before ReLU, Xavier otherwise"),
    ROW(model, conv_algorithm, ODY_CFG_ENUM, .def = "auto", .values_fn = ody_conv_algorithm_names,
        .doc = "conv2d layers left at algorithm 0: direct (per sample, fused with a following relu + "
               "2x2 max pool), gemm (im2col + sgemm), onednn (oneDNN's primitives) or auto (onednn "
               "backend: direct for small filters followed by relu + 2x2 max pool, else onednn; "
               "openblas backend: gemm for 48+ output channels not followed by relu + 2x2 max "
               "pool, else direct)"),
    ROW(model, backend, ODY_CFG_ENUM, .def = "onednn", .values = backend_values,
        .doc = "kernels: onednn (oneDNN, JIT-compiled for this CPU: AVX-512 where it has it) or "
               "openblas (OpenBLAS sgemm and the project's own direct kernels, the portable one)"),
    ROW(model, batchnorm, ODY_CFG_ENUM, .def = "chunk", .values = batchnorm_values,
        .doc = "batchnorm statistics in training: chunk (over each chunk of distributed.chunk_size rows "
               "at fixed positions of the global batch, no communication; the rank's share in fast mode) "
               "or global (over the whole global batch: exact sums across ranks, three rounds of small "
               "allgathers per batchnorm and step; needs training.accumulation_steps 1)"),
    ROW(model, layers, ODY_CFG_LAYERS, .count_offset = COUNT_AT(model, n_layers), .def = "[]",
        .doc = "sequential: the layers in order, e.g. [{type: linear, out_features: 10}]"),

    /* training */
    ROW(training, epochs, ODY_CFG_INT, .def = "10", IN(1, 1e6),
        .doc = "passes over the training set"),
    ROW(training, batch_size, ODY_CFG_INT, .def = "64", IN(1, 1e7),
        .doc = "global batch, split across the ranks (same experiment at any rank count)"),
    ROW(training, batch_size_per_rank, ODY_CFG_INT, .def = "0", IN(0, 1e7),
        .doc = "> 0: global batch = this x ranks, overriding batch_size (weak scaling)"),
    ROW(training, log_interval, ODY_CFG_INT, .def = "100", AT_LEAST(1),
        .doc = "optimizer steps between log lines and steps.jsonl records"),
    ROW(training, validate_interval, ODY_CFG_INT, .def = "1", AT_LEAST(0),
        .doc = "epochs between validations (0: never)"),
    ROW(training, save_checkpoints, ODY_CFG_BOOL, .def = "true", .doc = "write checkpoints"),
    ROW(training, checkpoint_interval, ODY_CFG_INT, .def = "5", AT_LEAST(1),
        .doc = "epochs between checkpoints"),
    ROW(training, shuffle, ODY_CFG_BOOL, .def = "true",
        .doc = "shuffle the training set every epoch (order keyed by seed and epoch)"),
    ROW(training, drop_last, ODY_CFG_BOOL, .def = "false",
        .doc = "skip the last, smaller batch of an epoch"),
    ROW(training, max_steps, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "stop after this many optimizer steps in all (0: no limit)"),
    ROW(training, val_batch_size, ODY_CFG_INT, .def = "1000", AT_LEAST(1),
        .doc = "global batch for validation"),
    ROW(training, loss, ODY_CFG_ENUM, .def = "cross_entropy", .values = loss_values,
        .doc = "loss function"),
    ROW(training, label_smoothing, ODY_CFG_FLOAT, .def = "0.0", FRACTION_BELOW_1,
        .doc = "cross_entropy: the target is (1 - eps) x onehot + eps / classes, as PyTorch's "
               "CrossEntropyLoss(label_smoothing=eps); train_loss and val_loss are this smoothed "
               "loss (as PyTorch reports with such a criterion), accuracy is still argmax = label "
               "(0: off)"),
    ROW(training, use_scheduler, ODY_CFG_BOOL, .def = "false",
        .doc = "schedule the learning rate: training.scheduler_type and the scheduler section"),
    ROW(training, scheduler_type, ODY_CFG_ENUM, .def = "none", .values_fn = ody_schedule_names,
        .doc = "use_scheduler: the schedule; none: constant (with scheduler.warmup_steps, the "
               "warmup alone)"),
    ROW(training, gradient_clip_norm, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "scale the gradient so that its global L2 norm is at most this (0: off)"),
    ROW(training, gradient_clip_value, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "clamp every gradient to [-value, value] before the step (0: off)"),
    ROW(training, use_mixed_precision, ODY_CFG_BOOL, .def = "false",
        .doc = "bf16: convolutions and linear layers compute in bf16 (oneDNN; the CPU needs "
               "AVX512_BF16 or AMX), "
               "gradients sum in bf16 in the fast mode and exactly in deterministic mode; fp16: "
               "gradients sum in fp16 (fast mode only). Parameters and optimizer stay float32"),
    ROW(training, precision_dtype, ODY_CFG_ENUM, .def = "bf16", .values = precision_values,
        .doc = "use_mixed_precision: bf16 (float's range, no loss scaling) or fp16 (dynamic loss "
               "scaling)"),
    ROW(training, loss_scale, ODY_CFG_FLOAT, .def = "65536.0", AT_LEAST(0),
        .doc = "fp16: initial loss scale; halved on a non-finite (skipped) step, doubled after "
               "2000 clean ones (0: no scaling)"),
    ROW(training, accumulation_steps, ODY_CFG_INT, .def = "1", IN(1, 1e6),
        .doc = "micro-batches of batch_size per optimizer step (gradients averaged over all "
               "their samples)"),
    ROW(training, on_nonfinite, ODY_CFG_ENUM, .def = "stop", .values = nonfinite_values,
        .doc = "a step with a non-finite loss or gradient: stop (exit 5) or skip it (no update)"),

    /* optimizer */
    ROW(optimizer, name, ODY_CFG_ENUM, .def = "sgd", .values_fn = ody_optimizer_names,
        .doc = "optimizer, with PyTorch's update rules"),
    ROW(optimizer, learning_rate, ODY_CFG_FLOAT, .def = "0.01", .range = {0, 10, true, false},
        .doc = "step size"),
    ROW(optimizer, momentum, ODY_CFG_FLOAT, .def = "0.0", .range = {0, 1, false, true},
        .doc = "sgd, rmsprop: momentum (0: none)"),
    ROW(optimizer, weight_decay, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "L2 penalty added to the gradient; adamw: decoupled, p *= 1 - lr x weight_decay"),
    ROW(optimizer, dampening, ODY_CFG_FLOAT, .def = "0.0", .range = {0, 1, false, true},
        .doc = "sgd: dampening of the momentum update"),
    ROW(optimizer, nesterov, ODY_CFG_BOOL, .def = "false",
        .doc = "sgd: Nesterov momentum (needs momentum > 0 and dampening 0)"),
    ROW(optimizer, beta1, ODY_CFG_FLOAT, .def = "0.9", FRACTION_BELOW_1,
        .doc = "adam, adamw: decay of the gradient average"),
    ROW(optimizer, beta2, ODY_CFG_FLOAT, .def = "0.999", FRACTION_BELOW_1,
        .doc = "adam, adamw: decay of the squared-gradient average"),
    ROW(optimizer, eps, ODY_CFG_FLOAT, .def = "1e-8", POSITIVE,
        .doc = "adam, adamw, rmsprop: added to the denominator"),
    ROW(optimizer, alpha, ODY_CFG_FLOAT, .def = "0.99", FRACTION_BELOW_1,
        .doc = "rmsprop: decay of the squared-gradient average"),
    ROW(optimizer, centered, ODY_CFG_BOOL, .def = "false",
        .doc = "rmsprop: divide by the gradient's estimated variance, not its second moment"),

    /* scheduler: read when training.use_scheduler is true */
    ROW(scheduler, step_size, ODY_CFG_INT, .def = "30", IN(1, 1e6),
        .doc = "step: lr x gamma after every step_size epochs"),
    ROW(scheduler, gamma, ODY_CFG_FLOAT, .def = "0.1", .range = {0, 1, true, false},
        .doc = "step, multistep: decay factor; exponential: lr x gamma every epoch"),
    ROW(scheduler, milestones, ODY_CFG_INT_LIST, .count_offset = COUNT_AT(scheduler, n_milestones),
        .def = "[]", IN(1, 1e6),
        .doc = "multistep: lr x gamma after each of these many epochs (increasing)"),
    ROW(scheduler, t_max, ODY_CFG_INT, .def = "0", IN(0, 1e6),
        .doc = "cosine: epochs from lr down to eta_min (0: training.epochs); past it lr rises "
               "again"),
    ROW(scheduler, eta_min, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "cosine: the lowest lr"),
    ROW(scheduler, warmup_steps, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "any schedule: raise lr linearly over this many optimizer steps (0: no warmup)"),
    ROW(scheduler, warmup_start_factor, ODY_CFG_FLOAT, .def = "0.1", .range = {0, 1, true, false},
        .doc = "warmup: the first step's lr as a fraction of the scheduled lr"),
    ROW(scheduler, plateau_mode, ODY_CFG_ENUM, .def = "auto", .values = plateau_mode_values,
        .doc = "plateau: min (a loss) or max (an accuracy) is better; auto: from monitor"),
    ROW(scheduler, factor, ODY_CFG_FLOAT, .def = "0.1", .range = {0, 1, true, true},
        .doc = "plateau: lr x factor on a plateau"),
    ROW(scheduler, patience, ODY_CFG_INT, .def = "10", AT_LEAST(0),
        .doc = "plateau: epochs without improvement tolerated; the next one reduces lr"),
    ROW(scheduler, threshold, ODY_CFG_FLOAT, .def = "1e-4", AT_LEAST(0),
        .doc = "plateau: relative change that counts as an improvement"),
    ROW(scheduler, cooldown, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "plateau: epochs after a reduction before bad epochs count again"),
    ROW(scheduler, min_lr, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "plateau: lr is never reduced below this"),
    ROW(scheduler, monitor, ODY_CFG_ENUM, .def = "val_loss", .values = monitor_values,
        .doc = "plateau: the metric watched, at every epoch end where it is known"),

    /* data */
    ROW(data, name, ODY_CFG_ENUM, .def = "fashion_mnist", .values_fn = ody_data_names,
        .doc = "data set; idx and hdf5 read data.path, synthetic needs no files"),
    ROW(data, path, ODY_CFG_STRING, .def = "\"\"",
        .doc = "directory of IDX files or the HDF5 file (empty: the data set's default)"),
    ROW(data, train_images, ODY_CFG_STRING, .def = "\"\"",
        .doc = "idx: training images file in data.path (.gz tried too)"),
    ROW(data, train_labels, ODY_CFG_STRING, .def = "\"\"", .doc = "idx: training labels file"),
    ROW(data, test_images, ODY_CFG_STRING, .def = "\"\"", .doc = "idx: test images file"),
    ROW(data, test_labels, ODY_CFG_STRING, .def = "\"\"", .doc = "idx: test labels file"),
    ROW(data, scale, ODY_CFG_BOOL, .def = "true", .doc = "scale uint8 pixels to [0, 1]"),
    ROW(data, standardize, ODY_CFG_BOOL, .def = "true",
        .doc = "with std 0: standardise fashion_mnist (mean 0.2860, std 0.3530) and mnist "
               "(0.1307, 0.3081) with their training-set statistics, hdf5 with the file's "
               "pixel_mean and pixel_std attributes"),
    ROW(data, mean, ODY_CFG_FLOAT, .def = "0.0", ANY_NUMBER,
        .doc = "subtracted after scaling when std > 0"),
    ROW(data, std, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "divides after subtracting mean (0: no explicit standardisation)"),
    ROW(data, validation, ODY_CFG_ENUM, .def = "test", .values = validation_values,
        .doc = "validate on the test set, a split of the training set, or not at all"),
    ROW(data, val_fraction, ODY_CFG_FLOAT, .def = "0.1", .range = {0, 1, true, true},
        .doc = "validation: split: fraction of the training set held out"),
    ROW(data, limit_train, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "use only the first N training samples (0: all)"),
    ROW(data, limit_val, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "use only the first N validation samples (0: all)"),
    ROW(data, synthetic_train, ODY_CFG_INT, .def = "60000", AT_LEAST(1),
        .doc = "synthetic: training samples"),
    ROW(data, synthetic_val, ODY_CFG_INT, .def = "10000", AT_LEAST(1),
        .doc = "synthetic: validation samples"),
    ROW(data, prefetch, ODY_CFG_BOOL, .def = "false",
        .doc = "read the next batch on a thread while this one computes"),
    ROW(data, crop_padding, ODY_CFG_INT, .def = "0", IN(0, 1e6),
        .doc = "training images only: pad this many black pixels on each side, then crop the "
               "image size back at a random offset (torchvision's RandomCrop(size, padding) "
               "before Normalize); at most half the image's height and width (0: off)"),
    ROW(data, horizontal_flip, ODY_CFG_BOOL, .def = "false",
        .doc = "training images only: mirror left-right with probability 0.5 (each sample's crop "
               "and flip are keyed by seed, epoch and sample: the same at any rank count)"),
    ROW(data, random_erasing, ODY_CFG_FLOAT, .def = "0", IN(0, 1),
        .doc = "training images only: with this probability set a random rectangle (2-33% of "
               "the image, aspect ratio 0.3-3.3) to 0, the normalised mean, after the crop and "
               "flip (torchvision's RandomErasing(p) after Normalize; keyed like the crop; 0: off)"),

    /* distributed */
    ROW(distributed, check_consistency, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "compare parameter fingerprints across ranks every N steps (0: only at start)"),
    ROW(distributed, blas_threads, ODY_CFG_INT, .def = "0", IN(0, 256),
        .doc = "OpenBLAS threads per rank (0: $OPENBLAS_NUM_THREADS, else cores on the node / ranks on it)"),
    ROW(distributed, deterministic, ODY_CFG_BOOL, .def = "true",
        .doc = "bitwise-identical parameters at any rank count and across resumes (exact "
               "fixed-point gradient sums over fixed chunks of the batch; see README)"),
    ROW(distributed, chunk_size, ODY_CFG_INT, .def = "16", IN(1, 65536),
        .doc = "deterministic: samples per chunk; ranks take whole chunks of each global batch "
               "(16: 4 ranks' work in a batch of 64; larger chunks run faster, LeNet-5 at 32 "
               "1.08x 16's speed, and the shipped LeNet-5, VGG and ResNet configs set 32; part of "
               "the experiment: another size gives other bits)"),
    ROW(distributed, allreduce, ODY_CFG_ENUM, .def = "bucketed", .values = allreduce_values,
        .doc = "gradient reduction: bucketed (overlapped with backward) or blocking (one allreduce after it), in either mode"),
    ROW(distributed, bucket_bytes, ODY_CFG_INT, .def = "65536", IN(1024, 1073741824),
        .doc = "bucketed: gradient bytes per bucket (whole layers, last layers first)"),
    ROW(distributed, shared_memory, ODY_CFG_BOOL, .def = "true",
        .doc = "deterministic: ranks on one node sum gradients in shared memory (same bits as MPI, "
               "no polling); across nodes, one rank per node sums with MPI"),
    ROW(distributed, work_stealing, ODY_CFG_BOOL, .def = "true",
        .doc = "deterministic, shared memory: a rank that runs out of chunks takes chunks of "
               "another rank on its node (same bits; the ranks finish each step together)"),
    ROW(distributed, stall_seconds, ODY_CFG_FLOAT, .def = "300", AT_LEAST(0),
        .doc = "a rank that waits this long in a collective for ranks that show no progress "
               "reports the step, the wait and the ranks that have not arrived, and the job ends "
               "with exit 1 (a warning at half of it; 0: wait forever)"),

    /* checkpoint */
    ROW(checkpoint, every_steps, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "also save every N optimizer steps (0: off)"),
    ROW(checkpoint, every_seconds, ODY_CFG_INT, .def = "0", AT_LEAST(0),
        .doc = "also save every T seconds of training, as rank 0's clock says (0: off)"),
    ROW(checkpoint, keep_last, ODY_CFG_INT, .def = "3", AT_LEAST(0),
        .doc = "keep the newest K periodic checkpoints, delete older ones (0: keep all)"),
    ROW(checkpoint, monitor, ODY_CFG_ENUM, .def = "val_accuracy", .values = monitor_values,
        .doc = "metric that decides best.h5"),
    ROW(checkpoint, mode, ODY_CFG_ENUM, .def = "auto", .values = mode_values,
        .doc = "best is the max or min of the monitor (auto: max for accuracies, min for losses)"),
    ROW(checkpoint, save_best, ODY_CFG_BOOL, .def = "true",
        .doc = "keep best.h5, the checkpoint with the best monitored value"),
    ROW(checkpoint, save_last, ODY_CFG_BOOL, .def = "true",
        .doc = "save a checkpoint when training ends"),

    /* early_stopping */
    ROW(early_stopping, enabled, ODY_CFG_BOOL, .def = "false",
        .doc = "stop training when the monitored metric stops improving"),
    ROW(early_stopping, monitor, ODY_CFG_ENUM, .def = "val_loss", .values = monitor_values,
        .doc = "metric watched at every epoch's end"),
    ROW(early_stopping, mode, ODY_CFG_ENUM, .def = "auto", .values = mode_values,
        .doc = "improvement is up (max) or down (min); auto: max for accuracies"),
    ROW(early_stopping, patience, ODY_CFG_INT, .def = "5", AT_LEAST(1),
        .doc = "epochs without improvement before stopping"),
    ROW(early_stopping, min_delta, ODY_CFG_FLOAT, .def = "0.0", AT_LEAST(0),
        .doc = "a change smaller than this is no improvement"),

    /* logging */
    ROW(logging, level, ODY_CFG_ENUM, .def = "info", .values = level_values,
        .doc = "least severe messages shown"),
    ROW(logging, progress, ODY_CFG_ENUM, .def = "auto", .values = progress_values,
        .doc = "live progress line: auto (on a terminal; ODY_PROGRESS may say always or "
               "never), always or never (log lines)"),
    ROW(logging, csv, ODY_CFG_BOOL, .def = "true",
        .doc = "write metrics.csv beside metrics.jsonl"),
    ROW(logging, plot, ODY_CFG_BOOL, .def = "true",
        .doc = "plot loss and accuracy per epoch to metrics.png (gnuplot) when training ends"),
    ROW(logging, trace, ODY_CFG_BOOL, .def = "false",
        .doc = "write a Chrome trace of every rank's phases to <run dir>/trace/rank-N.json"),
};

#define SCHEMA_ROWS ((int)(sizeof schema / sizeof schema[0]))

const ody_cfg_row *ody_cfg_schema(int *count)
{
    *count = SCHEMA_ROWS;
    return schema;
}

const ody_cfg_row *ody_cfg_find(const char *section, const char *key)
{
    for (int i = 0; i < SCHEMA_ROWS; i++)
        if (strcmp(schema[i].section, section) == 0 && strcmp(schema[i].key, key) == 0)
            return &schema[i];
    return NULL;
}

bool ody_cfg_section_exists(const char *section)
{
    for (int i = 0; i < SCHEMA_ROWS; i++)
        if (strcmp(schema[i].section, section) == 0)
            return true;
    return false;
}

const char *const *ody_cfg_values(const ody_cfg_row *row)
{
    if (row->values_fn)
        return row->values_fn();
    return row->values;
}

const char *ody_cfg_init_name(ody_init init)
{
    int n = (int)(sizeof ody_cfg_init_names / sizeof ody_cfg_init_names[0]) - 1;
    return ((int)init >= 0 && (int)init < n) ? ody_cfg_init_names[init] : "invalid";
}

const char *ody_cfg_type_name(ody_cfg_type type)
{
    switch (type) {
    case ODY_CFG_INT: return "int";
    case ODY_CFG_FLOAT: return "float";
    case ODY_CFG_BOOL: return "bool";
    case ODY_CFG_STRING: return "string";
    case ODY_CFG_ENUM: return "enum";
    case ODY_CFG_INT_LIST: return "list of int";
    case ODY_CFG_SHAPE: return "shape";
    case ODY_CFG_INIT: return "init";
    case ODY_CFG_LAYERS: return "list of layers";
    }
    return "?";
}

/* ------------------------------------------------------------ did you mean */

/* Optimal-string-alignment distance, case-insensitive; INT_MAX for long words. */
static int edit_distance(const char *a, const char *b)
{
    enum { LONGEST = 63 };
    size_t n = strlen(a), m = strlen(b);
    if (n > LONGEST || m > LONGEST)
        return INT_MAX;
    int d[LONGEST + 1][LONGEST + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ai != bj);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == bj && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

void ody_cfg_suggest_init(ody_cfg_suggestion *s, const char *word)
{
    s->word = word;
    s->best[0] = '\0';
    s->distance = INT_MAX;
}

void ody_cfg_suggest_offer(ody_cfg_suggestion *s, const char *prefix, const char *candidate)
{
    /* Close enough to be a typo: a third of the word's letters, at least one. */
    int limit = (int)strlen(s->word) / 3;
    if (limit < 1)
        limit = 1;
    int d = edit_distance(s->word, candidate);
    if (d > limit || d >= s->distance)
        return;
    s->distance = d;
    snprintf(s->best, sizeof s->best, "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
             candidate);
}

const char *ody_cfg_suggest_text(const ody_cfg_suggestion *s, char *out, size_t len)
{
    if (s->distance == INT_MAX)
        snprintf(out, len, "%s", "");
    else
        snprintf(out, len, " (did you mean '%s'?)", s->best);
    return out;
}

const char *ody_cfg_suggest_key(const char *section, const char *key, char *out, size_t len)
{
    ody_cfg_suggestion here, elsewhere;
    ody_cfg_suggest_init(&here, key);
    ody_cfg_suggest_init(&elsewhere, key);
    for (int i = 0; i < SCHEMA_ROWS; i++) {
        if (strcmp(schema[i].section, section) == 0)
            ody_cfg_suggest_offer(&here, NULL, schema[i].key);
        else
            ody_cfg_suggest_offer(&elsewhere, schema[i].section, schema[i].key);
    }
    /* A key of this section wins ties: it is the likelier slip. */
    return ody_cfg_suggest_text(elsewhere.distance < here.distance ? &elsewhere : &here, out, len);
}

const char *ody_cfg_suggest_section(const char *section, char *out, size_t len)
{
    ody_cfg_suggestion s;
    ody_cfg_suggest_init(&s, section);
    for (int i = 0; i < SCHEMA_ROWS; i++)
        ody_cfg_suggest_offer(&s, NULL, schema[i].section);
    /* A key written at the top level ("batch_size: 64") names its section. */
    for (int i = 0; i < SCHEMA_ROWS; i++)
        ody_cfg_suggest_offer(&s, schema[i].section, schema[i].key);
    return ody_cfg_suggest_text(&s, out, len);
}

/* ------------------------------------------------------- ranges and lists */

bool ody_cfg_in_range(const ody_cfg_range *range, double v)
{
    if (!(v >= range->min && v <= range->max)) /* also false for NaN */
        return false;
    return !(range->min_open && v == range->min) && !(range->max_open && v == range->max);
}

const char *ody_cfg_range_text(const ody_cfg_range *range, char *out, size_t len)
{
    int n = 0;
    out[0] = '\0';
    if (isfinite(range->min))
        n = snprintf(out, len, "%s %.15g", range->min_open ? ">" : ">=", range->min);
    if (isfinite(range->max) && n >= 0 && (size_t)n < len)
        snprintf(out + n, len - (size_t)n, "%s%s %.15g", n > 0 ? " and " : "",
                 range->max_open ? "<" : "<=", range->max);
    return out;
}

const char *ody_cfg_join(const char *const *values, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; values && values[i] && n < len; i++) {
        int w = snprintf(out + n, len - n, "%s%s", i > 0 ? ", " : "", values[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    return out;
}

/* -------------------------------------------------------------- reference */

/* The "allowed" cell of a row. */
static const char *allowed_text(const ody_cfg_row *row, char *out, size_t len)
{
    char range[96];
    ody_cfg_range_text(&row->range, range, sizeof range);
    switch (row->type) {
    case ODY_CFG_INT:
    case ODY_CFG_FLOAT:
        snprintf(out, len, "%s", range[0] ? range : "any");
        break;
    case ODY_CFG_BOOL:
        snprintf(out, len, "true, false");
        break;
    case ODY_CFG_STRING:
        snprintf(out, len, "at most %zu characters", row->size - 1);
        break;
    case ODY_CFG_ENUM:
    case ODY_CFG_INIT:
        ody_cfg_join(ody_cfg_values(row), out, len);
        break;
    case ODY_CFG_INT_LIST:
        snprintf(out, len, "0 to %zu values, each %s", row->size / sizeof(int), range);
        break;
    case ODY_CFG_SHAPE:
        snprintf(out, len, "1 to 3 values, each %s", range);
        break;
    case ODY_CFG_LAYERS:
        snprintf(out, len, "list of {type: KIND, ARG: value, init: INIT}; see the layer table");
        break;
    }
    return out;
}

/* A table cell from text written elsewhere: '|' would end the cell. */
static void put_cell(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '|')
            fputc('\\', out);
        fputc(*c, out);
    }
}

/* The layer types of model.layers and their arguments, from nn's table. */
static void write_layer_reference(FILE *out)
{
    int n = 0;
    const ody_layer_kind *kinds = ody_layer_kinds(&n);
    fprintf(out, "\nLayer types of `model.layers` (each layer also takes `init`, default "
                 "`auto`):\n\n| type | argument | default | allowed | description |\n"
                 "| --- | --- | --- | --- | --- |\n");
    for (int k = 0; k < n; k++) {
        fprintf(out, "| `%s` | | | | ", kinds[k].kind);
        put_cell(out, kinds[k].doc);
        fprintf(out, " |\n");
        for (int a = 0; a < kinds[k].nargs; a++) {
            const ody_layer_arg *arg = &kinds[k].args[a];
            ody_cfg_range range = {arg->min, arg->max, false, false};
            char def[32], allowed[96];
            snprintf(def, sizeof def, arg->required ? "required" : "`%.15g`", arg->def);
            fprintf(out, "| | `%s` | %s | %s%s | ", arg->key, def, arg->integer ? "whole, " : "",
                    ody_cfg_range_text(&range, allowed, sizeof allowed));
            put_cell(out, arg->doc);
            fprintf(out, " |\n");
        }
    }
}

void ody_config_write_reference(FILE *out)
{
    fprintf(out, "| key | type | default | allowed | description |\n");
    fprintf(out, "| --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < SCHEMA_ROWS; i++) {
        const ody_cfg_row *row = &schema[i];
        char allowed[512];
        fprintf(out, "| `%s.%s` | %s | `%s` | %s | %s |\n", row->section, row->key,
                ody_cfg_type_name(row->type), row->def, allowed_text(row, allowed, sizeof allowed),
                row->doc);
    }
    write_layer_reference(out);
}
