/*
 * The model: an ordered list of layers over two flat arenas (parameters and
 * gradients, same layout), plus the buffers ody_model_prepare sizes for a
 * batch: one activation buffer per step output, two ping-pong buffers for
 * activation gradients, one scratch buffer shared by all layers and each
 * layer's saved buffer, carved from a single allocation.
 *
 * Steps: a layer kind may absorb the layers after it (ody_layer_ops.fuse,
 * conv2d -> relu -> maxpool2d), and a step absorbs the views (flatten)
 * after it; forward and backward then run per step, and the outputs inside
 * a step are never stored.
 *
 * Layout: parameter tensors in forward order, each at an offset aligned by
 * ody_arena_round; layer_range[i] spans layer i's tensors (empty, at the
 * running offset, for a layer without parameters).
 */
#include "core/cpu_internal.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

/* Name prefix of a kind's layers: conv1, fc2, pool1, relu3, dropout1, flatten1. */
static const char *name_prefix(const char *kind)
{
    if (strcmp(kind, "conv2d") == 0)
        return "conv";
    if (strcmp(kind, "linear") == 0)
        return "fc";
    if (strcmp(kind, "maxpool2d") == 0 || strcmp(kind, "avgpool2d") == 0)
        return "pool";
    return kind;
}

/* Name layer i by its family and its number within the family. */
static void name_layer(ody_model *m, int i)
{
    const char *prefix = name_prefix(m->layers[i]->ops->kind);
    int number = 1;
    for (int j = 0; j < i; j++)
        number += strcmp(name_prefix(m->layers[j]->ops->kind), prefix) == 0;
    snprintf(m->layers[i]->name, sizeof m->layers[i]->name, "%s%d", prefix, number);
}

/* Build layer i from its spec on input `in`; errors are prefixed "layer i+1 (kind)". */
static ody_status build_layer(ody_ctx *ctx, ody_model *m, int i, const ody_layer_spec *spec, ody_shape in)
{
    const ody_layer_kind *kind = ody_layer_kind_find(spec->kind);
    ody_status st;
    if (!kind) {
        ody_layer_spec unused;
        st = ody_layer_spec_default(ctx, spec->kind, &unused);
        ody_error_prefix(ctx, "layer %d", i + 1);
        return st;
    }
    st = nn_spec_check(ctx, kind, spec);
    if (st == ODY_OK)
        st = kind->create(ctx, spec, in, &m->layers[i]);
    if (st != ODY_OK) {
        ody_error_prefix(ctx, "layer %d (%s)", i + 1, kind->kind);
        return st;
    }
    m->nlayers = i + 1;
    name_layer(m, i);
    return ODY_OK;
}

static bool is_kind(const ody_layer_spec *spec, const char *kind) { return strcmp(spec->kind, kind) == 0; }

/*
 * ODY_INIT_AUTO for layer i: look past pooling, dropout and flatten to the
 * next activation. ReLU -> Kaiming uniform; tanh, sigmoid, another layer
 * with parameters or the end (the output layer) -> Xavier uniform.
 */
static ody_init auto_init(const ody_model *m, const ody_layer_spec *specs, int i)
{
    for (int j = i + 1; j < m->nlayers; j++) {
        if (is_kind(&specs[j], "relu"))
            return ODY_INIT_KAIMING_UNIFORM;
        if (is_kind(&specs[j], "tanh") || is_kind(&specs[j], "sigmoid") || m->layers[j]->nparams > 0)
            break;
    }
    return ODY_INIT_XAVIER_UNIFORM;
}

static void choose_inits(ody_model *m, const ody_layer_spec *specs)
{
    for (int i = 0; i < m->nlayers; i++) {
        ody_layer *l = m->layers[i];
        if (l->nparams == 0)
            continue;
        ody_init scheme = specs[i].init != ODY_INIT_AUTO ? specs[i].init : auto_init(m, specs, i);
        l->params[0].init = scheme;
        /* Biases start at zero, except under PyTorch's default scheme. */
        for (int p = 1; p < l->nparams; p++)
            l->params[p].init = scheme == ODY_INIT_TORCH_DEFAULT ? scheme : ODY_INIT_ZERO;
    }
}

/* Give every parameter tensor its offset and views, and its full name. */
static ody_status layout_params(ody_ctx *ctx, ody_model *m)
{
    size_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int p = 0; p < m->layers[i]->nparams; p++)
            total += ody_arena_round(nn_numel(m->layers[i]->params[p].shape));
    ody_status st = ody_arena_create(ctx, &m->params, total, "model parameters");
    if (st == ODY_OK)
        st = ody_arena_create(ctx, &m->grads, total, "model gradients");
    if (st != ODY_OK)
        return st;
    for (int i = 0; i < m->nlayers; i++) {
        ody_layer *l = m->layers[i];
        m->layer_range[i].begin = m->layer_range[i].end = m->params.size;
        for (int p = 0; p < l->nparams; p++) {
            ody_param *t = &l->params[p];
            size_t n = nn_numel(t->shape);
            char base[ODY_PARAM_NAME_MAX];
            memcpy(base, t->name, sizeof base);
            if (snprintf(t->name, sizeof t->name, "%s.%s", l->name, base) >= (int)sizeof t->name)
                return ody_fail(ctx, ODY_ERR_INTERNAL, "parameter name %s.%s is too long", l->name, base);
            t->offset = ody_arena_take(&m->params, n);
            ody_arena_take(&m->grads, n);
            t->value = m->params.data + t->offset;
            t->grad = m->grads.data + t->offset;
            m->layer_range[i].end = t->offset + n;
            m->tensors[m->ntensors++] = t;
            m->nparams += n;
        }
    }
    return ODY_OK;
}

/*
 * Group the layers into steps: with fusion on, a layer kind may absorb the
 * layers after it, and a step absorbs the views (flatten) that follow it.
 */
static void plan_steps(ody_model *m, bool fusion)
{
    m->fusion = fusion;
    for (int i = 0; i < m->nlayers;) {
        ody_layer *l = m->layers[i];
        int rest = fusion ? m->nlayers - i - 1 : 0, absorbed = 0;
        if (l->ops->fuse)
            absorbed = l->ops->fuse(l, &m->layers[i + 1], rest);
        while (fusion && i + absorbed + 1 < m->nlayers && m->layers[i + absorbed + 1]->ops->view)
            absorbed++;
        m->span[i] = 1 + absorbed;
        for (int j = 1; j <= absorbed; j++)
            m->span[i + j] = 0;
        i += 1 + absorbed;
    }
}

ody_status ody_model_set_fusion(ody_ctx *ctx, ody_model *model, bool on)
{
    if (model->max_batch > 0)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "model %s: fusion is set before ody_model_prepare",
                        model->name);
    plan_steps(model, on);
    return ODY_OK;
}

ody_status ody_model_create_from_specs(ody_ctx *ctx, const char *name, const ody_layer_spec *specs,
                                       int nspecs, ody_shape input_shape, ody_model **out)
{
    *out = NULL;
    if (nspecs < 1 || nspecs > ODY_MODEL_MAX_LAYERS)
        return ody_fail(ctx, ODY_ERR_CONFIG, "a model needs 1 to %d layers, got %d", ODY_MODEL_MAX_LAYERS,
                        nspecs);
    ody_cpu_isa isa; /* the layers' own kernels run at ody_cpu_isa_active(); a bad ODY_CPU_ISA stops here */
    if (ody_cpu_isa_select(ctx, &isa) != ODY_OK)
        return ODY_ERR_USAGE;
    char buf[64];
    bool empty = input_shape.ndim < 1 || input_shape.ndim > 3;
    for (int i = 0; i < input_shape.ndim && !empty; i++)
        empty = input_shape.dims[i] < 1 || input_shape.dims[i] > (1 << 24);
    if (empty)
        return ody_fail(ctx, ODY_ERR_CONFIG, "input shape '%s' is not (C, H, W), (H, W) or (F)",
                        ody_shape_format(&input_shape, buf, sizeof buf));
    ody_model *m;
    ody_status st = ody_alloc(ctx, sizeof *m, "model", (void **)&m);
    if (st != ODY_OK)
        return st;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->input_shape = input_shape;
    ody_shape in = input_shape;
    for (int i = 0; i < nspecs && st == ODY_OK; i++) {
        st = build_layer(ctx, m, i, &specs[i], in);
        if (st == ODY_OK)
            in = m->layers[i]->out_shape;
    }
    if (st == ODY_OK) {
        choose_inits(m, specs);
        st = layout_params(ctx, m);
    }
    if (st == ODY_OK)
        plan_steps(m, true);
    if (st != ODY_OK) {
        ody_model_destroy(ctx, m);
        return st;
    }
    m->num_classes = (int)ody_shape_numel(&in);
    *out = m;
    return ODY_OK;
}

void ody_model_destroy(ody_ctx *ctx, ody_model *model)
{
    if (!model)
        return;
    ody_free(ctx, model->prepared, model->prepared_bytes);
    for (int i = 0; i < model->nlayers; i++)
        nn_layer_free(ctx, model->layers[i]);
    ody_arena_destroy(ctx, &model->params);
    ody_arena_destroy(ctx, &model->grads);
    ody_free(ctx, model, sizeof *model);
}

/* ---------------------------------------------------------------- buffers */

static size_t floats_of(size_t (*fn)(const ody_layer *, int), const ody_layer *l, int max_batch)
{
    return fn ? ody_arena_round(fn(l, max_batch)) : 0;
}

/*
 * Lay the prepared buffers out from base (aligned pieces) and return the
 * floats they take. With base NULL only the size is computed and the model
 * is left untouched.
 */
static size_t carve(ody_model *m, int max_batch, float *base)
{
    size_t used = 0, biggest = 0, scratch = 0;
    for (int i = 0, step_end = 0; i < m->nlayers; i++) {
        const ody_layer *l = m->layers[i];
        step_end = m->span[i] ? i + m->span[i] - 1 : step_end;
        /* Only a step's output is stored (and only those flow back as gradients). */
        size_t act = i == step_end ? ody_arena_round((size_t)max_batch * nn_numel(l->out_shape)) : 0;
        if (base)
            m->acts[i] = act ? base + used : NULL;
        used += act;
        biggest = act > biggest ? act : biggest;
        size_t s = floats_of(l->ops->scratch_floats, l, max_batch);
        scratch = s > scratch ? s : scratch;
    }
    for (int k = 0; k < 2; k++, used += biggest)
        if (base)
            m->dbuf[k] = base + used;
    if (base)
        m->scratch = scratch ? base + used : NULL;
    used += scratch;
    for (int i = 0; i < m->nlayers; i++) {
        ody_layer *l = m->layers[i];
        size_t saved = floats_of(l->ops->saved_floats, l, max_batch);
        if (base) {
            l->saved = saved ? base + used : NULL;
            l->scratch = m->scratch;
        }
        used += saved;
    }
    return used;
}

ody_status ody_model_prepare(ody_ctx *ctx, ody_model *model, int max_batch)
{
    if (max_batch < 1)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "model %s: cannot prepare for %d rows", model->name,
                        max_batch);
    if (max_batch <= model->max_batch)
        return ODY_OK;
    for (int i = 0; i < model->nlayers; i++) {
        ody_layer *l = model->layers[i];
        ody_status st = l->ops->prepare ? l->ops->prepare(ctx, l, max_batch) : ODY_OK;
        if (st != ODY_OK) {
            ody_error_prefix(ctx, "model %s, %s", model->name, l->name);
            return st;
        }
    }
    size_t bytes = carve(model, max_batch, NULL) * sizeof(float);
    float *base;
    ody_status st = ody_alloc(ctx, bytes, "model activations", (void **)&base);
    if (st != ODY_OK)
        return st;
    ody_free(ctx, model->prepared, model->prepared_bytes);
    carve(model, max_batch, base);
    model->prepared = base;
    model->prepared_bytes = bytes;
    model->max_batch = max_batch;
    return ODY_OK;
}

ody_status ody_model_plan_batch(ody_ctx *ctx, ody_model *model, int n)
{
    if (n < 1 || n > model->max_batch)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "model %s: cannot plan %d rows (prepared for %d)", model->name, n,
                        model->max_batch);
    for (int i = 0; i < model->nlayers; i++) {
        ody_layer *l = model->layers[i];
        ody_status st = l->ops->plan ? l->ops->plan(ctx, l, n) : ODY_OK;
        if (st != ODY_OK) {
            ody_error_prefix(ctx, "model %s, %s", model->name, l->name);
            return st;
        }
    }
    return ODY_OK;
}

/* ------------------------------------------------------- forward, backward */

const float *ody_model_forward(ody_model *model, const ody_forward_info *info, int n, const float *x)
{
    if (n < 0 || n > model->max_batch || model->status != ODY_OK)
        return NULL;
    const float *in = x;
    for (int i = 0; i < model->nlayers; i += model->span[i]) {
        ody_layer *l = model->layers[i];
        float *out = model->acts[i + model->span[i] - 1];
        double t0 = model->profile ? ody_now() : 0.0;
        if (n > 0)
            l->ops->forward(l, info, n, in, out);
        if (model->profile)
            model->step_seconds[i][0] += ody_now() - t0;
        if ((model->status = l->status) != ODY_OK)
            return NULL;
        in = out;
    }
    return in;
}

void ody_model_backward(ody_model *model, const ody_forward_info *info, int n, const float *x,
                        const float *dlogits, ody_grad_ready_fn ready, void *user)
{
    /* Layers before the first with parameters need no input gradient at all. */
    int first = 0;
    while (first < model->nlayers && model->layers[first]->nparams == 0)
        first++;
    bool run = n > 0 && n <= model->max_batch && model->status == ODY_OK;
    const float *dout = dlogits;
    /* Steps last first: [start, last] is one step, start its first layer. */
    for (int last = model->nlayers - 1, k = 0; last >= 0; k ^= 1) {
        int start = last;
        while (model->span[start] == 0)
            start--;
        ody_layer *l = model->layers[start];
        if (run && last >= first) {
            float *din = start > first ? model->dbuf[k] : NULL;
            double t0 = model->profile ? ody_now() : 0.0;
            l->ops->backward(l, info, n, start > 0 ? model->acts[start - 1] : x, model->acts[last], dout, din);
            if (model->profile)
                model->step_seconds[start][1] += ody_now() - t0;
            dout = din;
            model->status = l->status;
            run = model->status == ODY_OK; /* the layers below are skipped; ready still runs */
        }
        for (; last >= start; last--)
            if (ready)
                ready(user, last);
    }
}

void ody_model_zero_grad(ody_model *model)
{
    memset(model->grads.data, 0, model->grads.size * sizeof(float));
}

/* ------------------------------------------------------------ parameters */

static void init_tensor(const ody_param *p, ody_rng_key key, uint64_t index)
{
    size_t n = nn_numel(p->shape);
    double fan_in = (double)p->fan_in, fans = (double)(p->fan_in + p->fan_out);
    float bound;
    switch (p->init) {
    case ODY_INIT_KAIMING_NORMAL:
        ody_rng_normal(key, index, n, (float)sqrt(2.0 / fan_in), p->value);
        return;
    case ODY_INIT_XAVIER_NORMAL:
        ody_rng_normal(key, index, n, (float)sqrt(2.0 / fans), p->value);
        return;
    case ODY_INIT_KAIMING_UNIFORM: bound = (float)sqrt(6.0 / fan_in); break;
    case ODY_INIT_XAVIER_UNIFORM: bound = (float)sqrt(6.0 / fans); break;
    case ODY_INIT_TORCH_DEFAULT: bound = (float)(1.0 / sqrt(fan_in)); break;
    default: memset(p->value, 0, n * sizeof *p->value); return;
    }
    ody_rng_uniform(key, index, n, -bound, bound, p->value);
}

void ody_model_init_params(ody_model *model, uint64_t seed)
{
    ody_rng_key key = {.seed = seed, .stream = ODY_STREAM_INIT};
    for (int t = 0; t < model->ntensors; t++)
        init_tensor(model->tensors[t], key, (uint64_t)t);
}

ody_param *ody_model_find_param(ody_model *model, const char *name)
{
    for (int t = 0; t < model->ntensors; t++)
        if (strcmp(model->tensors[t]->name, name) == 0)
            return model->tensors[t];
    return NULL;
}

void ody_model_summary(const ody_ctx *ctx, const ody_model *model)
{
    char shape[64];
    ody_log(ctx, ODY_LOG_INFO, "model %s: input %s", model->name,
            ody_shape_format(&model->input_shape, shape, sizeof shape));
    ody_log(ctx, ODY_LOG_INFO, "  %-10s %-10s %-12s %10s  %s", "layer", "kind", "output", "params",
            "algorithm");
    for (int i = 0; i < model->nlayers; i++) {
        const ody_layer *l = model->layers[i];
        size_t count = 0;
        for (int p = 0; p < l->nparams; p++)
            count += nn_numel(l->params[p].shape);
        ody_log(ctx, ODY_LOG_INFO, "  %-10s %-10s %-12s %10zu%s%s", l->name, l->ops->kind,
                ody_shape_format(&l->out_shape, shape, sizeof shape), count, l->ops->describe ? "  " : "",
                l->ops->describe ? l->ops->describe(l) : "");
    }
    ody_log(ctx, ODY_LOG_INFO, "  total parameters: %zu", model->nparams);
    ody_log(ctx, ODY_LOG_INFO, "  own kernels (direct conv2d, exact sums): %s (best here: %s; ODY_CPU_ISA lowers it)",
            ody_cpu_isa_name(ody_cpu_isa_active()), ody_cpu_isa_name(ody_cpu_isa_best()));
    for (int i = 0; i < model->nlayers; i += model->span[i])
        if (model->span[i] > 1)
            ody_log(ctx, ODY_LOG_INFO, "  fused step: %s .. %s (%d layers, inner outputs not stored)",
                    model->layers[i]->name, model->layers[i + model->span[i] - 1]->name, model->span[i]);
}
