/*
 * nn registry: the layer-kind table that configs are parsed through, and
 * the model registry (lenet5, mlp, sequential) that turns
 * ody_model_options into layer specs.
 *
 * Argument tables: the order of the rows is the order of
 * ody_layer_spec.args (nn_internal.h names the positions); keep it stable.
 * A required argument has no default: ody_layer_spec_default leaves it NaN
 * ("not given"), and the model rejects a spec that still has one.
 */
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ layer kinds */

static const ody_layer_arg conv2d_args[] = {
    [NN_CONV_OUT_CHANNELS] = {"out_channels", 0, 1, 1 << 20, true, true, "number of output channels"},
    [NN_CONV_KERNEL] = {"kernel_size", 0, 1, 1024, true, true, "side of the square kernel"},
    [NN_CONV_STRIDE] = {"stride", 1, 1, 1024, false, true, "step between windows"},
    [NN_CONV_PADDING] = {"padding", 0, 0, 1024, false, true, "zeros added on each side"},
    [NN_CONV_ALGORITHM] = {"algorithm", ODY_CONV_AUTO, ODY_CONV_AUTO, ODY_CONV_ONEDNN, false, true,
                           "0 auto (as model.conv_algorithm says; its auto: by shape and backend), 1 direct, "
                           "2 gemm (im2col + sgemm), 3 onednn"},
};

static const ody_layer_arg pool_args[] = {
    [NN_POOL_KERNEL] = {"kernel_size", 0, 1, 1024, true, true, "side of the square window"},
    [NN_POOL_STRIDE] = {"stride", 0, 0, 1024, false, true, "step between windows (0: kernel_size)"},
    [NN_POOL_PADDING] = {"padding", 0, 0, 512, false, true, "padding on each side, at most kernel_size/2"},
};

static const ody_layer_arg linear_args[] = {
    [NN_LINEAR_OUT_FEATURES] = {"out_features", 0, 1, 1 << 24, true, true, "number of outputs"},
};

static const ody_layer_arg dropout_args[] = {
    [NN_DROPOUT_P] = {"p", 0.5, 0.0, 0.999, false, false, "probability of zeroing an element"},
};

static const ody_layer_arg batchnorm_args[] = {
    [NN_BN_MOMENTUM] = {"momentum", 0.1, 0.0, 1.0, false, false,
                        "weight of a step's statistics in the running ones (PyTorch's momentum)"},
    [NN_BN_EPS] = {"eps", 1e-5, 1e-12, 1.0, false, false, "added to the variance before the square root"},
    [NN_BN_STATISTICS] = {"statistics", 0, 0, 2, false, true,
                          "0: as model.batchnorm says, 1: over the global batch, 2: over each chunk"},
};

#define ARGS(a) a, (int)(sizeof a / sizeof a[0])

static const ody_layer_kind layer_kinds[] = {
    {"conv2d", "2-D convolution: direct (fused with a following relu and 2x2 max pool) or im2col + sgemm",
     ARGS(conv2d_args), nn_conv2d_create},
    {"maxpool2d", "max pooling; padding counts as -inf", ARGS(pool_args), nn_maxpool2d_create},
    {"avgpool2d", "average pooling; padding counts as zeros (divisor k*k)", ARGS(pool_args),
     nn_avgpool2d_create},
    {"linear", "fully connected; flattens its input", ARGS(linear_args), nn_linear_create},
    {"relu", "max(0, x)", NULL, 0, nn_relu_create},
    {"tanh", "hyperbolic tangent", NULL, 0, nn_tanh_create},
    {"sigmoid", "1 / (1 + exp(-x))", NULL, 0, nn_sigmoid_create},
    {"dropout", "inverted dropout (identity in evaluation)", ARGS(dropout_args), nn_dropout_create},
    {"flatten", "(C, H, W) -> (C*H*W)", NULL, 0, nn_flatten_create},
    {"batchnorm", "batch normalisation per channel of (C, H, W) or per feature of (F); statistics over "
                  "the chunk (distributed.chunk_size) in deterministic mode, running ones in evaluation",
     ARGS(batchnorm_args), nn_batchnorm_create},
    {"global_avgpool", "(C, H, W) -> (C): the mean of each channel", NULL, 0, nn_global_avgpool_create},
};

enum { NKINDS = (int)(sizeof layer_kinds / sizeof layer_kinds[0]) };

const ody_layer_kind *ody_layer_kind_find(const char *kind)
{
    for (int i = 0; i < NKINDS; i++)
        if (strcmp(layer_kinds[i].kind, kind) == 0)
            return &layer_kinds[i];
    return NULL;
}

const ody_layer_kind *ody_layer_kinds(int *count)
{
    *count = NKINDS;
    return layer_kinds;
}

static const char *const conv_algorithm_names[] = {
    [ODY_CONV_AUTO] = "auto", [ODY_CONV_DIRECT] = "direct", [ODY_CONV_GEMM] = "gemm",
    [ODY_CONV_ONEDNN] = "onednn", NULL};

const char *const *ody_conv_algorithm_names(void) { return conv_algorithm_names; }

static void set_defaults(const ody_layer_kind *k, ody_layer_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    snprintf(spec->kind, sizeof spec->kind, "%s", k->kind);
    for (int i = 0; i < k->nargs; i++)
        spec->args[i] = k->args[i].required ? NAN : k->args[i].def;
    spec->init = ODY_INIT_AUTO;
}

/* "conv2d, maxpool2d, ..." for error messages. */
static void kind_list(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < NKINDS && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", layer_kinds[i].kind);
}

ody_status ody_layer_spec_default(ody_ctx *ctx, const char *kind, ody_layer_spec *spec)
{
    const ody_layer_kind *k = ody_layer_kind_find(kind);
    if (!k) {
        char known[256];
        kind_list(known, sizeof known);
        return ody_fail(ctx, ODY_ERR_CONFIG, "unknown layer type '%s' (known: %s)", kind, known);
    }
    set_defaults(k, spec);
    return ODY_OK;
}

ody_status nn_spec_check(ody_ctx *ctx, const ody_layer_kind *kind, const ody_layer_spec *spec)
{
    for (int i = 0; i < kind->nargs; i++) {
        const ody_layer_arg *a = &kind->args[i];
        double v = spec->args[i];
        if (isnan(v))
            return ody_fail(ctx, ODY_ERR_CONFIG, "%s is required", a->key);
        if (v < a->min || v > a->max)
            return ody_fail(ctx, ODY_ERR_CONFIG, "%s = %g is outside [%g, %g]", a->key, v, a->min,
                            a->max);
        if (a->integer && v != floor(v))
            return ody_fail(ctx, ODY_ERR_CONFIG, "%s = %g is not a whole number", a->key, v);
    }
    return ODY_OK;
}

/* --------------------------------------------------------- model registry */

typedef struct {
    ody_layer_spec specs[ODY_MODEL_MAX_LAYERS];
    int n;
} spec_list;

/* Append a spec of `kind` with its defaults, then args a[0..na). The lists here never overflow. */
static void push(spec_list *list, const char *kind, int na, const double *a)
{
    ody_layer_spec *spec = &list->specs[list->n++];
    set_defaults(ody_layer_kind_find(kind), spec);
    for (int i = 0; i < na; i++)
        spec->args[i] = a[i];
}

/* A linear layer, with a dropout layer before it when the options ask for one. */
static void push_linear(spec_list *list, const ody_model_options *o, int out_features)
{
    if (o->dropout > 0.0)
        push(list, "dropout", 1, (const double[]){o->dropout});
    push(list, "linear", 1, (const double[]){out_features});
}

static ody_status build_lenet5(ody_ctx *ctx, const ody_model_options *o, spec_list *list)
{
    bool classic = strcmp(o->variant, "classic") == 0;
    if (!classic && o->variant[0] && strcmp(o->variant, "modern") != 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "model.variant '%s' is not a lenet5 variant (modern or classic)", o->variant);
    const char *act = classic ? "tanh" : "relu", *pool = classic ? "avgpool2d" : "maxpool2d";
    push(list, "conv2d", 4, (const double[]){6, 5, 1, 2});
    push(list, act, 0, NULL);
    push(list, pool, 1, (const double[]){2});
    push(list, "conv2d", 2, (const double[]){16, 5});
    push(list, act, 0, NULL);
    push(list, pool, 1, (const double[]){2});
    push(list, "flatten", 0, NULL);
    push_linear(list, o, 120);
    push(list, act, 0, NULL);
    push_linear(list, o, 84);
    push(list, act, 0, NULL);
    push_linear(list, o, o->num_classes);
    return ODY_OK;
}

static ody_status build_mlp(ody_ctx *ctx, const ody_model_options *o, spec_list *list)
{
    const char *act = o->activation[0] ? o->activation : "relu";
    if (strcmp(act, "relu") != 0 && strcmp(act, "tanh") != 0 && strcmp(act, "sigmoid") != 0)
        return ody_fail(ctx, ODY_ERR_CONFIG,
                        "model.activation '%s' is not known (relu, tanh or sigmoid)", act);
    if (o->n_hidden < 0 || o->n_hidden > ODY_MODEL_MAX_HIDDEN)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.hidden_sizes has %d entries (at most %d)",
                        o->n_hidden, ODY_MODEL_MAX_HIDDEN);
    push(list, "flatten", 0, NULL);
    for (int i = 0; i < o->n_hidden; i++) {
        if (o->hidden_sizes[i] < 1)
            return ody_fail(ctx, ODY_ERR_CONFIG, "model.hidden_sizes[%d] = %d must be at least 1", i,
                            o->hidden_sizes[i]);
        push(list, "linear", 1, (const double[]){o->hidden_sizes[i]});
        push(list, act, 0, NULL);
        if (o->dropout > 0.0)
            push(list, "dropout", 1, (const double[]){o->dropout});
    }
    push(list, "linear", 1, (const double[]){o->num_classes});
    return ODY_OK;
}

static ody_status build_sequential(ody_ctx *ctx, const ody_model_options *o, spec_list *list)
{
    if (o->n_layers < 1 || o->n_layers > ODY_MODEL_MAX_LAYERS)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.layers has %d entries (1 to %d)", o->n_layers,
                        ODY_MODEL_MAX_LAYERS);
    memcpy(list->specs, o->layers, (size_t)o->n_layers * sizeof o->layers[0]);
    list->n = o->n_layers;
    return ODY_OK;
}

typedef ody_status (*model_builder)(ody_ctx *ctx, const ody_model_options *o, spec_list *list);

/* The registry: names (NULL-terminated) and their builders, in the same order. */
static const char *const model_names[] = {"lenet5", "mlp", "sequential", NULL};
static const model_builder model_builders[] = {build_lenet5, build_mlp, build_sequential};

enum { NMODELS = (int)(sizeof model_builders / sizeof model_builders[0]) };
_Static_assert(sizeof model_names / sizeof model_names[0] == NMODELS + 1, "one builder per name");

const char *const *ody_model_names(void) { return model_names; }

/* The options every model shares. */
static ody_status check_options(ody_ctx *ctx, const ody_model_options *o)
{
    char buf[64];
    if (o->num_classes < 1)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.num_classes = %d must be at least 1", o->num_classes);
    if (o->input_shape.ndim < 1 || o->input_shape.ndim > 3)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.input_shape must have 1 to 3 dimensions, got %d",
                        o->input_shape.ndim);
    for (int i = 0; i < o->input_shape.ndim; i++)
        if (o->input_shape.dims[i] < 1)
            return ody_fail(ctx, ODY_ERR_CONFIG, "model.input_shape %s has an empty dimension",
                            ody_shape_format(&o->input_shape, buf, sizeof buf));
    if (!(o->dropout >= 0.0 && o->dropout <= 0.999))
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.dropout = %g is outside [0, 0.999]", o->dropout);
    if ((int)o->init < ODY_INIT_AUTO || o->init > ODY_INIT_TORCH_DEFAULT)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.init %d is not a known scheme", (int)o->init);
    return ODY_OK;
}

/* model.conv_algorithm as an ody_conv_algorithm ("" is auto), or -1 with an error. */
static int conv_algorithm(ody_ctx *ctx, const ody_model_options *o)
{
    for (int i = ODY_CONV_AUTO; i <= ODY_CONV_ONEDNN; i++)
        if (strcmp(o->conv_algorithm, conv_algorithm_names[i]) == 0)
            return i;
    if (!o->conv_algorithm[0])
        return ODY_CONV_AUTO;
    ody_fail(ctx, ODY_ERR_CONFIG, "model.conv_algorithm '%.8s' is not known (auto, direct, gemm or onednn)",
             o->conv_algorithm);
    return -1;
}

/* model.backend as an ody_backend ("" is the default, onednn), or -1 with an error. */
static int backend(ody_ctx *ctx, const ody_model_options *o)
{
    if (!o->backend[0] || strcmp(o->backend, "default") == 0 || strcmp(o->backend, "onednn") == 0)
        return ODY_BACKEND_ONEDNN;
    if (strcmp(o->backend, "openblas") != 0) {
        ody_fail(ctx, ODY_ERR_CONFIG, "model.backend '%.12s' is not known (onednn or openblas)", o->backend);
        return -1;
    }
    if (o->compute_bf16) {
        ody_fail(ctx, ODY_ERR_CONFIG, "bf16 compute (training.use_mixed_precision with precision_dtype "
                                      "bf16) needs model.backend: onednn");
        return -1;
    }
    return ODY_BACKEND_OPENBLAS;
}

/* The options that apply to every layer they concern: init, the conv algorithm, backend and bf16. */
static void apply_model_wide(const ody_model_options *o, int conv, ody_backend be, bool global_bn, spec_list *list)
{
    for (int i = 0; i < list->n; i++) {
        ody_layer_spec *spec = &list->specs[i];
        spec->backend = be;
        spec->bf16 = o->compute_bf16;
        if (spec->init == ODY_INIT_AUTO)
            spec->init = o->init;
        if (strcmp(spec->kind, "conv2d") == 0 && spec->args[NN_CONV_ALGORITHM] == ODY_CONV_AUTO)
            spec->args[NN_CONV_ALGORITHM] = conv;
        if (strcmp(spec->kind, "residual") == 0 && spec->args[ODY_RESIDUAL_CONV_ALGORITHM] == ODY_CONV_AUTO)
            spec->args[ODY_RESIDUAL_CONV_ALGORITHM] = conv; /* its projection's */
        /* batchnorm statistics left to the model (0): model.batchnorm's; a residual block passes them to its projection */
        int at = strcmp(spec->kind, "batchnorm") == 0  ? NN_BN_STATISTICS
                 : strcmp(spec->kind, "residual") == 0 ? ODY_RESIDUAL_BN_STATISTICS
                                                       : -1;
        if (at >= 0 && spec->args[at] == 0)
            spec->args[at] = global_bn ? 1 : 2;
    }
}

/* Index of a registry name, or -1 with an error listing the names. */
static int find_model(ody_ctx *ctx, const char *name)
{
    char known[128];
    size_t used = 0;
    for (int i = 0; i < NMODELS; i++) {
        if (strcmp(model_names[i], name) == 0)
            return i;
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", model_names[i]);
    }
    ody_fail(ctx, ODY_ERR_CONFIG, "model.name '%s' is not known (known: %s)", name, known);
    return -1;
}

ody_status ody_model_create(ody_ctx *ctx, const ody_model_options *options, ody_model **out)
{
    *out = NULL;
    int which = find_model(ctx, options->name);
    if (which < 0)
        return ODY_ERR_CONFIG;
    spec_list list = {.n = 0};
    ody_status st = check_options(ctx, options);
    if (st != ODY_OK)
        return st;
    int conv = conv_algorithm(ctx, options);
    if (conv < 0)
        return ODY_ERR_CONFIG;
    int be = backend(ctx, options);
    if (be < 0)
        return ODY_ERR_CONFIG;
    if (options->compute_bf16 && (st = ody_bf16_supported(ctx)) != ODY_OK)
        return st;
    st = model_builders[which](ctx, options, &list);
    if (st != ODY_OK)
        return st;
    if (options->batchnorm[0] && strcmp(options->batchnorm, "chunk") != 0 && strcmp(options->batchnorm, "global") != 0)
        return ody_fail(ctx, ODY_ERR_CONFIG, "model.batchnorm '%.8s' is not known (chunk or global)", options->batchnorm);
    apply_model_wide(options, conv, (ody_backend)be, strcmp(options->batchnorm, "global") == 0, &list);
    st = ody_model_create_from_specs(ctx, options->name, list.specs, list.n, options->input_shape, out);
    if (st != ODY_OK) {
        ody_error_prefix(ctx, "model %s", options->name);
        return st;
    }
    if ((*out)->num_classes != options->num_classes) {
        st = ody_fail(ctx, ODY_ERR_CONFIG, "model.num_classes is %d but the last layer gives %d features",
                      options->num_classes, (*out)->num_classes);
        ody_model_destroy(ctx, *out);
        *out = NULL;
    }
    return st;
}
