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

/* Name prefix of a kind's layers: conv1, fc2, pool1, bn1, relu3, add1, dropout1, flatten1. */
static const char *name_prefix(const char *kind)
{
    if (strcmp(kind, "conv2d") == 0)
        return "conv";
    if (strcmp(kind, "linear") == 0)
        return "fc";
    if (strcmp(kind, "maxpool2d") == 0 || strcmp(kind, "avgpool2d") == 0)
        return "pool";
    if (strcmp(kind, "batchnorm") == 0)
        return "bn";
    if (strcmp(kind, "global_avgpool") == 0)
        return "gap";
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

/* Error prefix for a layer built from spec number `number` (from 1): its kind (when known) and config line. */
static void prefix_spec(ody_ctx *ctx, int number, const ody_layer_spec *spec)
{
    bool known = ody_layer_kind_find(spec->kind) || strcmp(spec->kind, "residual") == 0;
    char line[32] = "";
    if (spec->line > 0)
        snprintf(line, sizeof line, "%sline %d", known ? ", " : "", spec->line);
    if (known)
        ody_error_prefix(ctx, "layer %d (%s%s)", number, spec->kind, line);
    else if (spec->line > 0)
        ody_error_prefix(ctx, "layer %d (%s)", number, line);
    else
        ody_error_prefix(ctx, "layer %d", number);
}

/*
 * Append a layer built from spec on input `in`, reading the output of layer
 * src (-1: the model's input); its spec is kept in kept[] for choose_inits.
 * Errors are prefixed with the spec's number (from 1) and line.
 */
static ody_status build_layer(ody_ctx *ctx, ody_model *m, const ody_layer_spec *spec, int number, ody_shape in,
                              int src, ody_layer_spec *kept)
{
    const ody_layer_kind *kind = ody_layer_kind_find(spec->kind);
    ody_status st;
    if (m->nlayers == ODY_MODEL_MAX_LAYERS)
        st = ody_fail(ctx, ODY_ERR_CONFIG, "the model has more than %d layers (residual blocks count "
                      "their shortcut, add and activation)", ODY_MODEL_MAX_LAYERS);
    else if (!kind) {
        ody_layer_spec unused;
        st = ody_layer_spec_default(ctx, spec->kind, &unused);
    } else {
        st = nn_spec_check(ctx, kind, spec);
        if (st == ODY_OK)
            st = kind->create(ctx, spec, in, &m->layers[m->nlayers]);
    }
    if (st != ODY_OK) {
        prefix_spec(ctx, number, spec);
        return st;
    }
    int i = m->nlayers++;
    m->layers[i]->src = src;
    m->layers[i]->src2 = -1;
    kept[i] = *spec;
    name_layer(m, i);
    return ODY_OK;
}

static bool same_shape(ody_shape a, ody_shape b)
{
    if (a.ndim != b.ndim)
        return false;
    for (int d = 0; d < a.ndim; d++)
        if (a.dims[d] != b.dims[d])
            return false;
    return true;
}

/*
 * The stride of a 1x1 projection from (C, H, W) to (C', H', W'): the s
 * with floor((H - 1) / s) + 1 = H' (and the same for W), or 0 if none.
 */
static int projection_stride(ody_shape from, ody_shape to)
{
    if (from.ndim != 3 || to.ndim != 3)
        return 0;
    for (int s = 1; s <= from.dims[1]; s++)
        if ((from.dims[1] - 1) / s + 1 == to.dims[1] && (from.dims[2] - 1) / s + 1 == to.dims[2])
            return s;
    return 0;
}

/*
 * A residual block: specs[*at] is its header (ody_layer_spec of kind
 * "residual": args = inner layer count, shortcut, activation), the inner
 * layers follow. Builds the inner layers on the block's input, the
 * shortcut (nothing for identity; a strided 1x1 conv2d and a batchnorm
 * for a projection), the add and the activation; moves *at past the block
 * and *prev, *in to its output.
 */
static ody_status build_block(ody_ctx *ctx, ody_model *m, const ody_layer_spec *specs, int nspecs, int *at,
                              int *prev, ody_shape *in, ody_layer_spec *kept)
{
    const ody_layer_spec *head = &specs[*at];
    int count = nn_arg(head, ODY_RESIDUAL_LAYERS), shortcut = nn_arg(head, ODY_RESIDUAL_SHORTCUT);
    int number = *at + 1;
    if (count < 1 || *at + count >= nspecs) {
        ody_fail(ctx, ODY_ERR_CONFIG, "a residual block needs at least one layer");
        prefix_spec(ctx, number, head);
        return ODY_ERR_CONFIG;
    }
    const int block_in = *prev;
    ody_shape shape = *in;
    int cur = block_in;
    for (int j = 1; j <= count; j++) {
        const ody_layer_spec *spec = &specs[*at + j];
        if (strcmp(spec->kind, "residual") == 0) {
            ody_fail(ctx, ODY_ERR_CONFIG, "a residual block cannot hold another residual block");
            prefix_spec(ctx, *at + j + 1, spec);
            return ODY_ERR_CONFIG;
        }
        ody_status st = build_layer(ctx, m, spec, *at + j + 1, shape, cur, kept);
        if (st != ODY_OK)
            return st;
        cur = m->nlayers - 1;
        shape = m->layers[cur]->out_shape;
    }
    char a[64], b[64];
    bool same = same_shape(*in, shape);
    int sc = block_in;
    if (shortcut == ODY_SHORTCUT_IDENTITY && !same) {
        ody_fail(ctx, ODY_ERR_CONFIG, "residual block: its layers give %s but an identity shortcut passes %s "
                 "(shortcut: projection adds a strided 1x1 conv2d and a batchnorm)",
                 ody_shape_format(&shape, a, sizeof a), ody_shape_format(in, b, sizeof b));
        prefix_spec(ctx, number, head);
        return ODY_ERR_CONFIG;
    }
    if (shortcut == ODY_SHORTCUT_PROJECTION || (shortcut == ODY_SHORTCUT_AUTO && !same)) {
        int stride = projection_stride(*in, shape);
        if (stride == 0) {
            ody_fail(ctx, ODY_ERR_CONFIG, "residual block: no strided 1x1 convolution takes its input %s to "
                     "its output %s (a projection shortcut needs (C, H, W) on both sides and a whole stride)",
                     ody_shape_format(in, b, sizeof b), ody_shape_format(&shape, a, sizeof a));
            prefix_spec(ctx, number, head);
            return ODY_ERR_CONFIG;
        }
        ody_layer_spec conv, bn;
        ody_layer_spec_default(ctx, "conv2d", &conv);
        ody_layer_spec_default(ctx, "batchnorm", &bn);
        conv.args[NN_CONV_OUT_CHANNELS] = shape.dims[0];
        conv.args[NN_CONV_KERNEL] = 1;
        conv.args[NN_CONV_STRIDE] = stride;
        conv.args[NN_CONV_ALGORITHM] = head->args[ODY_RESIDUAL_CONV_ALGORITHM];
        bn.args[NN_BN_STATISTICS] = head->args[ODY_RESIDUAL_BN_STATISTICS];
        conv.backend = bn.backend = head->backend;
        conv.bf16 = bn.bf16 = head->bf16;
        conv.init = head->init;
        conv.line = bn.line = head->line;
        ody_status st = build_layer(ctx, m, &conv, number, *in, block_in, kept);
        if (st == ODY_OK)
            st = build_layer(ctx, m, &bn, number, shape, m->nlayers - 1, kept);
        if (st != ODY_OK)
            return st;
        sc = m->nlayers - 1;
    }
    ody_layer_spec add = {.kind = "add", .line = head->line};
    ody_status st = m->nlayers < ODY_MODEL_MAX_LAYERS ? nn_add_create(ctx, &add, shape, &m->layers[m->nlayers])
                                                     : ody_fail(ctx, ODY_ERR_CONFIG, "the model has more than %d layers",
                                                                ODY_MODEL_MAX_LAYERS);
    if (st != ODY_OK) {
        prefix_spec(ctx, number, head);
        return st;
    }
    int i = m->nlayers++;
    m->layers[i]->src = cur;
    m->layers[i]->src2 = sc;
    kept[i] = add;
    name_layer(m, i);
    cur = i;
    if (nn_arg(head, ODY_RESIDUAL_ACTIVATION) == ODY_RESIDUAL_RELU) {
        ody_layer_spec relu;
        ody_layer_spec_default(ctx, "relu", &relu);
        relu.line = head->line;
        if ((st = build_layer(ctx, m, &relu, number, shape, cur, kept)) != ODY_OK)
            return st;
        cur = m->nlayers - 1;
    }
    *prev = cur;
    *in = shape;
    *at += count;
    return ODY_OK;
}

static bool is_kind(const ody_layer_spec *spec, const char *kind) { return strcmp(spec->kind, kind) == 0; }

/*
 * ODY_INIT_AUTO for layer i: follow its output past pooling, dropout,
 * flatten, batchnorm and adds to the next activation. ReLU -> Kaiming
 * uniform; tanh, sigmoid, another layer with parameters or the end (the
 * output layer) -> Xavier uniform.
 */
static ody_init auto_init(const ody_model *m, const ody_layer_spec *specs, int i)
{
    for (int j = i + 1; j < m->nlayers; j++) {
        if (m->layers[j]->src != j - 1 && m->layers[j]->src2 != j - 1)
            continue; /* not on the path from layer i (a shortcut's) */
        if (is_kind(&specs[j], "relu"))
            return ODY_INIT_KAIMING_UNIFORM;
        if (is_kind(&specs[j], "tanh") || is_kind(&specs[j], "sigmoid") ||
            (m->layers[j]->nparams > 0 && !is_kind(&specs[j], "batchnorm")))
            break;
    }
    return ODY_INIT_XAVIER_UNIFORM;
}

/* Schemes for the layers whose kind left them open (batchnorm sets its own). */
static void choose_inits(ody_model *m, const ody_layer_spec *specs)
{
    for (int i = 0; i < m->nlayers; i++) {
        ody_layer *l = m->layers[i];
        if (l->nparams == 0 || l->params[0].init != ODY_INIT_AUTO)
            continue;
        ody_init scheme = specs[i].init != ODY_INIT_AUTO ? specs[i].init : auto_init(m, specs, i);
        l->params[0].init = scheme;
        /* Biases start at zero, except under PyTorch's default scheme. */
        for (int p = 1; p < l->nparams; p++)
            l->params[p].init = scheme == ODY_INIT_TORCH_DEFAULT ? scheme : ODY_INIT_ZERO;
    }
}

/* Place tensor t of layer l at the arenas' next offset under its full name. */
static ody_status place_tensor(ody_ctx *ctx, ody_model *m, ody_layer *l, ody_param *t)
{
    size_t n = nn_numel(t->shape);
    char base[ODY_PARAM_NAME_MAX];
    memcpy(base, t->name, sizeof base);
    if (snprintf(t->name, sizeof t->name, "%s.%s", l->name, base) >= (int)sizeof t->name)
        return ody_fail(ctx, ODY_ERR_INTERNAL, "parameter name %s.%s is too long", l->name, base);
    t->offset = ody_arena_take(&m->params, n);
    ody_arena_take(&m->grads, n);
    t->value = m->params.data + t->offset;
    t->grad = m->grads.data + t->offset;
    m->tensors[m->ntensors++] = t;
    return ODY_OK;
}

/*
 * Give every tensor its offset, views and full name: the trainable ones in
 * layer order (layer_range[i] spans layer i's), then the buffers, so that
 * [0, ntrain) is what the optimizer sees.
 */
static ody_status layout_params(ody_ctx *ctx, ody_model *m)
{
    size_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int p = 0; p < m->layers[i]->nparams; p++)
            total += ody_arena_round(nn_numel(m->layers[i]->params[p].shape));
    ody_status st = ody_arena_create(ctx, &m->params, total, "model parameters");
    if (st == ODY_OK)
        st = ody_arena_create(ctx, &m->grads, total, "model gradients");
    for (int pass = 0; pass < 2 && st == ODY_OK; pass++) {
        for (int i = 0; i < m->nlayers && st == ODY_OK; i++) {
            ody_layer *l = m->layers[i];
            if (pass == 0)
                m->layer_range[i].begin = m->layer_range[i].end = m->params.size;
            for (int p = 0; p < l->nparams && st == ODY_OK; p++) {
                ody_param *t = &l->params[p];
                if (t->buffer != (pass == 1))
                    continue;
                st = place_tensor(ctx, m, l, t);
                if (pass == 0) {
                    m->layer_range[i].end = t->offset + nn_numel(t->shape);
                    m->nparams += nn_numel(t->shape);
                }
            }
        }
        if (pass == 0)
            m->ntrain = m->params.size;
    }
    return st;
}

/* Consumers of each layer's output (a join counts for both its inputs). */
static void count_fanout(ody_model *m)
{
    memset(m->fanout, 0, sizeof m->fanout);
    for (int i = 0; i < m->nlayers; i++) {
        if (m->layers[i]->src >= 0)
            m->fanout[m->layers[i]->src]++;
        if (m->layers[i]->src2 >= 0)
            m->fanout[m->layers[i]->src2]++;
    }
}

/* How many layers after layer i form a chain a step may absorb: each reads only the one before, which nothing else reads. */
static int chain_after(const ody_model *m, int i)
{
    int j = i + 1;
    while (j < m->nlayers && m->layers[j]->src == j - 1 && m->layers[j]->src2 < 0 && !m->layers[j]->ops->join &&
           m->fanout[j - 1] == 1)
        j++;
    return j - i - 1;
}

/*
 * Group the layers into steps: with fusion on, a layer kind may absorb the
 * chain of layers after it, and a step absorbs the views (flatten) that
 * follow it.
 */
static void plan_steps(ody_model *m, bool fusion)
{
    m->fusion = fusion;
    for (int i = 0; i < m->nlayers;) {
        ody_layer *l = m->layers[i];
        int chain = fusion ? chain_after(m, i) : 0, absorbed = 0;
        if (l->ops->fuse && !l->ops->join)
            absorbed = l->ops->fuse(l, &m->layers[i + 1], chain);
        else if (l->ops->join && chain > 0 && strcmp(m->layers[i + 1]->ops->kind, "relu") == 0)
            absorbed = 1; /* a residual block's relu after its add: max(0, a + b) in one pass */
        while (absorbed < chain && m->layers[i + absorbed + 1]->ops->view)
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

/*
 * Lockstep runs when some layer takes statistics over all chunks; then
 * every batchnorm must (one over the chunk would see them all at once).
 */
static ody_status settle_lockstep(ody_ctx *ctx, ody_model *m, const ody_layer_spec *kept)
{
    int global = -1, chunk = -1;
    for (int i = 0; i < m->nlayers; i++) {
        const ody_layer_ops *ops = m->layers[i]->ops;
        bool sync = ops->sync_len && ops->sync_len(m->layers[i], ODY_SYNC_MEAN) > 0;
        if (sync && global < 0)
            global = i;
        if (!sync && strcmp(ops->kind, "batchnorm") == 0 && chunk < 0)
            chunk = i;
    }
    m->lockstep = global >= 0;
    for (int i = 0; i < m->nlayers; i++)
        m->layers[i]->lockstep = m->lockstep;
    if (global >= 0 && chunk >= 0)
        return ody_fail(ctx, ODY_ERR_CONFIG, "%s (config line %d) takes its statistics over the global batch but %s "
                        "(config line %d) over the chunk: use one kind for every batchnorm (model.batchnorm)",
                        m->layers[global]->name, kept[global].line, m->layers[chunk]->name, kept[chunk].line);
    return ODY_OK;
}

/* Build the layers of specs in order, residual blocks expanded; kept[] receives each layer's spec. */
static ody_status build_layers(ody_ctx *ctx, ody_model *m, const ody_layer_spec *specs, int nspecs,
                               ody_shape input_shape, ody_layer_spec *kept)
{
    ody_shape in = input_shape;
    int prev = -1;
    for (int i = 0; i < nspecs; i++) {
        ody_status st;
        if (is_kind(&specs[i], "residual")) {
            st = build_block(ctx, m, specs, nspecs, &i, &prev, &in, kept);
        } else {
            st = build_layer(ctx, m, &specs[i], i + 1, in, prev, kept);
            prev = m->nlayers - 1;
        }
        if (st != ODY_OK)
            return st;
        in = m->layers[prev]->out_shape;
    }
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
    ody_layer_spec *kept;
    ody_status st = ody_alloc(ctx, sizeof *m, "model", (void **)&m);
    if (st != ODY_OK)
        return st;
    if ((st = ody_alloc(ctx, ODY_MODEL_MAX_LAYERS * sizeof *kept, "model specs", (void **)&kept)) != ODY_OK) {
        ody_free(ctx, m, sizeof *m);
        return st;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->input_shape = input_shape;
    st = build_layers(ctx, m, specs, nspecs, input_shape, kept);
    if (st == ODY_OK) {
        choose_inits(m, kept);
        st = layout_params(ctx, m);
    }
    if (st == ODY_OK) {
        count_fanout(m);
        st = settle_lockstep(ctx, m, kept);
    }
    if (st == ODY_OK)
        plan_steps(m, true);
    ody_free(ctx, kept, ODY_MODEL_MAX_LAYERS * sizeof *kept);
    if (st != ODY_OK) {
        ody_model_destroy(ctx, m);
        return st;
    }
    m->num_classes = (int)nn_numel(m->layers[m->nlayers - 1]->out_shape);
    *out = m;
    return ODY_OK;
}

void ody_model_destroy(ody_ctx *ctx, ody_model *model)
{
    if (!model)
        return;
    ody_free(ctx, model->prepared, model->prepared_bytes);
    ody_free(ctx, model->sync_part, model->sync_bytes);
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

/* need_grad[i]: layer i's output needs a gradient (it, or a layer it reads from, has parameters). */
static void mark_needs(ody_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        const ody_layer *l = m->layers[i];
        m->need_grad[i] = l->nparams > 0 || (l->src >= 0 && m->need_grad[l->src]) ||
                          (l->src2 >= 0 && m->need_grad[l->src2]);
    }
}

/*
 * Where the gradients of the step outputs live during backward: a few
 * buffers (slots), each held from the first gradient that reaches an
 * output (its last reader's backward, which writes it) until that output's
 * own step has run. A chain of layers uses two slots in turn; an output
 * read twice (a residual block's input) keeps its slot while the other
 * branch runs, and its second gradient is added in (through the tmp
 * buffer when a layer's backward writes it). Walks the steps as backward
 * does; fills gslot, din_slot and din_add.
 */
static ody_status plan_grads(ody_ctx *ctx, ody_model *m)
{
    bool busy[ODY_MODEL_MAX_SLOTS] = {false};
    int slot_of[ODY_MODEL_MAX_LAYERS];
    for (int i = 0; i < m->nlayers; i++)
        slot_of[i] = -1;
    m->nslots = 0;
    m->grad_tmp = false;
    mark_needs(m);
    for (int last = m->nlayers - 1, start; last >= 0; last = start - 1) {
        for (start = last; m->span[start] == 0; start--)
            ;
        const ody_layer *l = m->layers[start];
        int held = slot_of[last], inputs[2] = {l->src, l->src2};
        m->gslot[last] = held;
        for (int k = 0; k < 2; k++) {
            int u = inputs[k], s = 0;
            m->din_slot[start][k] = -1;
            m->din_add[start][k] = false;
            if (u < 0 || !m->need_grad[u])
                continue;
            if (slot_of[u] >= 0) {
                m->din_add[start][k] = true;
                m->grad_tmp |= !l->ops->join;
            } else {
                while (s < ODY_MODEL_MAX_SLOTS && (busy[s] || s == held))
                    s++;
                if (s == ODY_MODEL_MAX_SLOTS)
                    return ody_fail(ctx, ODY_ERR_INTERNAL, "model %s: more than %d gradients live at once",
                                    m->name, ODY_MODEL_MAX_SLOTS);
                busy[s] = true;
                slot_of[u] = s;
                m->nslots = s + 1 > m->nslots ? s + 1 : m->nslots;
            }
            m->din_slot[start][k] = slot_of[u];
        }
        if (held >= 0)
            busy[held] = false;
    }
    return ODY_OK;
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
    for (int k = 0; k < m->nslots + m->grad_tmp; k++, used += biggest)
        if (base)
            m->gbuf[k] = base + used;
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

/* Doubles a phase of statistics over chunks takes per chunk at most, times the most chunks (one row each). */
static size_t sync_doubles(const ody_model *m, int max_batch)
{
    size_t most = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int phase = 0; m->layers[i]->ops->sync_len && phase < ODY_SYNC_PHASES; phase++) {
            size_t len = (size_t)m->layers[i]->ops->sync_len(m->layers[i], phase);
            most = len > most ? len : most;
        }
    return most * (size_t)max_batch;
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
    ody_status st = plan_grads(ctx, model);
    if (st != ODY_OK)
        return st;
    size_t bytes = carve(model, max_batch, NULL) * sizeof(float);
    float *base;
    st = ody_alloc(ctx, bytes, "model activations", (void **)&base);
    if (st != ODY_OK)
        return st;
    size_t sync = sync_doubles(model, max_batch);
    double *part = NULL;
    if (sync > 0 && (st = ody_alloc(ctx, 2 * sync * sizeof(double), "statistics over chunks", (void **)&part)) != ODY_OK) {
        ody_free(ctx, base, bytes);
        return st;
    }
    ody_free(ctx, model->sync_part, model->sync_bytes);
    model->sync_part = part;
    model->sync_total = part ? part + sync : NULL;
    model->sync_bytes = 2 * sync * sizeof(double);
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

/*
 * Rows [off, off + n) of the step outputs go through one call: a chunk of
 * a lockstep run (ody_model_forward_chunks) or the whole batch (off 0).
 * x is the model's input of those rows.
 */
static float *rows_at(float *base, int off, ody_shape shape) { return base + (size_t)off * nn_numel(shape); }

/* The output of layer u at row off (-1: the model's input x, already at its rows). */
static const float *act_of(const ody_model *m, int u, const float *x, int off)
{
    return u < 0 ? x : rows_at(m->acts[u], off, m->layers[u]->out_shape);
}

static void add_into(float *restrict y, const float *restrict a, size_t count)
{
    for (size_t e = 0; e < count; e++)
        y[e] += a[e];
}

/* A join: out = a + b, or max(0, a + b) with the relu after it fused. */
static void join_forward(float *restrict out, const float *restrict a, const float *restrict b, size_t count, bool relu)
{
    if (relu) {
        for (size_t e = 0; e < count; e++) {
            float v = a[e] + b[e];
            out[e] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t e = 0; e < count; e++)
            out[e] = a[e] + b[e];
    }
}

/* The forward of the step starting at layer i on n rows at off. */
static void step_forward(ody_model *m, int i, const ody_forward_info *info, int n, const float *x, int off)
{
    ody_layer *l = m->layers[i];
    const int last = i + m->span[i] - 1;
    const float *in = act_of(m, l->src, x, off);
    float *out = rows_at(m->acts[last], off, m->layers[last]->out_shape);
    double t0 = m->profile ? ody_now() : 0.0;
    if (l->ops->join)
        join_forward(out, in, act_of(m, l->src2, x, off), (size_t)n * nn_numel(l->out_shape), last > i);
    else
        l->ops->forward(l, info, n, in, out);
    if (m->profile)
        m->step_seconds[i][0] += ody_now() - t0;
}

const float *ody_model_forward(ody_model *model, const ody_forward_info *info, int n, const float *x)
{
    if (n < 0 || n > model->max_batch || model->status != ODY_OK)
        return NULL;
    for (int i = 0; i < model->nlayers; i += model->span[i]) {
        if (n > 0)
            step_forward(model, i, info, n, x, 0);
        if ((model->status = model->layers[i]->status) != ODY_OK)
            return NULL;
    }
    return model->acts[model->nlayers - 1];
}

/*
 * A join's backward: the output gradient goes to both inputs as it is
 * (with a fused relu: where the output is positive, else 0).
 */
static void join_backward(ody_model *m, int start, int last, int n, const float *dout, int off)
{
    ody_shape shape = m->layers[start]->out_shape;
    size_t count = (size_t)n * nn_numel(shape);
    const float *restrict y = rows_at(m->acts[last], off, shape);
    for (int k = 0; k < 2; k++) {
        int s = m->din_slot[start][k];
        if (s < 0)
            continue;
        float *restrict g = rows_at(m->gbuf[s], off, shape);
        bool add = m->din_add[start][k];
        if (last > start) {
            /* dout read always: a conditional read does not vectorise (a branch per element) */
            if (add)
                for (size_t e = 0; e < count; e++) {
                    float d = dout[e];
                    g[e] += y[e] > 0.0f ? d : 0.0f;
                }
            else
                nn_relu_mask(count, y, dout, g);
        } else if (add) {
            add_into(g, dout, count);
        } else {
            memcpy(g, dout, count * sizeof *dout);
        }
    }
}

/* The gradient of step output `last` at row off (dlogits at its rows for the model's output). */
static const float *dout_of(const ody_model *m, int last, const float *dlogits, int off)
{
    ody_shape shape = m->layers[last]->out_shape;
    return rows_at(m->gslot[last] < 0 ? (float *)dlogits : m->gbuf[m->gslot[last]], off, shape);
}

/* The backward of the step [start, last] on n rows at off; its input's gradient goes to (or is added into) its slot. */
static void step_backward(ody_model *m, const ody_forward_info *info, int start, int last, int n, const float *x,
                          const float *dout, int off)
{
    ody_layer *l = m->layers[start];
    double t0 = m->profile ? ody_now() : 0.0;
    if (l->ops->join) {
        join_backward(m, start, last, n, dout, off);
    } else {
        int s = m->din_slot[start][0];
        bool add = s >= 0 && m->din_add[start][0];
        float *din = s < 0 ? NULL : rows_at(add ? m->gbuf[m->nslots] : m->gbuf[s], off, l->in_shape);
        l->ops->backward(l, info, n, act_of(m, l->src, x, off), rows_at(m->acts[last], off, m->layers[last]->out_shape),
                         dout, din);
        if (add)
            add_into(rows_at(m->gbuf[s], off, l->in_shape), din, (size_t)n * nn_numel(l->in_shape));
    }
    if (m->profile)
        m->step_seconds[start][1] += ody_now() - t0;
}

void ody_model_backward(ody_model *model, const ody_forward_info *info, int n, const float *x,
                        const float *dlogits, ody_grad_ready_fn ready, void *user)
{
    bool run = n > 0 && n <= model->max_batch && model->status == ODY_OK;
    /* Steps last first: [start, last] is one step, start its first layer. */
    for (int last = model->nlayers - 1, start; last >= 0; last = start - 1) {
        for (start = last; model->span[start] == 0; start--)
            ;
        if (run && model->need_grad[last]) {
            step_backward(model, info, start, last, n, x, dout_of(model, last, dlogits, 0), 0);
            model->status = model->layers[start]->status;
            run = model->status == ODY_OK; /* the layers below are skipped; ready still runs */
        }
        for (int i = last; i >= start; i--)
            if (ready)
                ready(user, i);
    }
}

/* ------------------------------------------------------------ lockstep */

/* Rows of the chunk set, or -1 when they exceed the prepared batch. */
static int set_rows(const ody_model *m, const ody_chunk_set *set)
{
    int rows = 0;
    for (int c = 0; c < set->nchunks; c++)
        rows += set->rows[c];
    return rows <= m->max_batch ? rows : -1;
}

/*
 * Phase `phase` of layer l's statistics over the step: every chunk's part
 * (zeros when the model has stopped: a stopped rank still takes part, so
 * that no other rank waits), the sum over all chunks of all ranks, the
 * totals into the layer. dlogits: the gradient of the step output at
 * `last` (backward), else NULL.
 */
static void sync_layer(ody_model *m, int start, int last, int phase, const ody_chunk_set *set, const float *dlogits)
{
    ody_layer *l = m->layers[start];
    int len = l->ops->sync_len ? l->ops->sync_len(l, phase) : 0;
    if (len == 0)
        return;
    bool run = m->status == ODY_OK;
    memset(m->sync_part, 0, (size_t)set->nchunks * len * sizeof(double));
    for (int c = 0, off = 0; c < set->nchunks; off += set->rows[c++]) {
        if (!run || set->rows[c] == 0)
            continue;
        const float *out = phase == ODY_SYNC_GRAD ? rows_at(m->acts[last], off, m->layers[last]->out_shape) : NULL;
        const float *dout = phase == ODY_SYNC_GRAD ? dout_of(m, last, dlogits, off) : NULL;
        l->ops->sync_part(l, phase, set->rows[c], act_of(m, l->src, set->x[c], off), out, dout,
                          m->sync_part + (size_t)c * len);
    }
    if (!set->sync(set->user, m->sync_part, len, m->sync_total)) {
        if (m->status == ODY_OK)
            m->status = ODY_ERR_MPI;
        return;
    }
    if (run)
        l->ops->sync_take(l, phase, m->sync_total, set->step_rows, set->owner);
}

const float *ody_model_forward_chunks(ody_model *model, const ody_chunk_set *set)
{
    if (set_rows(model, set) < 0 && model->status == ODY_OK)
        model->status = ODY_ERR_INTERNAL;
    for (int i = 0; i < model->nlayers; i += model->span[i]) {
        sync_layer(model, i, i + model->span[i] - 1, ODY_SYNC_MEAN, set, NULL);
        sync_layer(model, i, i + model->span[i] - 1, ODY_SYNC_VAR, set, NULL);
        for (int c = 0, off = 0; c < set->nchunks && model->status == ODY_OK; off += set->rows[c++]) {
            ody_forward_info info = set->info[c];
            info.row_offset = off;
            if (set->rows[c] > 0)
                step_forward(model, i, &info, set->rows[c], set->x[c], off);
        }
        if (model->status == ODY_OK)
            model->status = model->layers[i]->status;
    }
    return model->status == ODY_OK ? model->acts[model->nlayers - 1] : NULL;
}

void ody_model_backward_chunks(ody_model *model, const ody_chunk_set *set, const float *dlogits,
                               void (*done)(void *user, int layer, int chunk), ody_grad_ready_fn ready,
                               void *user)
{
    for (int last = model->nlayers - 1, start; last >= 0; last = start - 1) {
        for (start = last; model->span[start] == 0; start--)
            ;
        bool need = model->need_grad[last];
        if (need)
            sync_layer(model, start, last, ODY_SYNC_GRAD, set, dlogits);
        for (int c = 0, off = 0; c < set->nchunks; off += set->rows[c++]) {
            ody_forward_info info = set->info[c];
            info.row_offset = off;
            if (need && model->status == ODY_OK && set->rows[c] > 0) {
                step_backward(model, &info, start, last, set->rows[c], set->x[c], dout_of(model, last, dlogits, off),
                              off);
                model->status = model->layers[start]->status;
            }
            for (int i = last; done && c < set->nchunks - 1 && i >= start; i--)
                done(user, i, c);
        }
        for (int i = last; ready && i >= start; i--)
            ready(user, i);
    }
}

/*
 * After the optimizer step: every layer with buffers folds in the step's
 * statistics, which the gradient sum left in the buffers' gradient slots.
 */
void ody_model_update_buffers(ody_model *model)
{
    for (int i = 0; i < model->nlayers; i++)
        if (model->layers[i]->ops->update_buffers)
            model->layers[i]->ops->update_buffers(model->layers[i]);
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
    case ODY_INIT_ONES:
        for (size_t e = 0; e < n; e++)
            p->value[e] = 1.0f;
        return;
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
        for (int p = 0; p < l->nparams; p++)
            count -= l->params[p].buffer ? nn_numel(l->params[p].shape) : 0;
        ody_log(ctx, ODY_LOG_INFO, "  %-10s %-10s %-12s %10zu%s%s", l->name, l->ops->kind,
                ody_shape_format(&l->out_shape, shape, sizeof shape), count, l->ops->describe ? "  " : "",
                l->ops->describe ? l->ops->describe(l) : "");
    }
    ody_log(ctx, ODY_LOG_INFO, "  total parameters: %zu%s", model->nparams,
            model->ntrain < model->params.size ? " (running statistics not counted)" : "");
    ody_log(ctx, ODY_LOG_INFO, "  own kernels (direct conv2d, exact sums): %s (best here: %s; ODY_CPU_ISA lowers it)",
            ody_cpu_isa_name(ody_cpu_isa_active()), ody_cpu_isa_name(ody_cpu_isa_best()));
    for (int i = 0; i < model->nlayers; i += model->span[i])
        if (model->span[i] > 1)
            ody_log(ctx, ODY_LOG_INFO, "  fused step: %s .. %s (%d layers, inner outputs not stored)",
                    model->layers[i]->name, model->layers[i + model->span[i] - 1]->name, model->span[i]);
}
