/*
 * nn: layers (one file per kind under src/nn/), losses, the model (an
 * ordered list of layers over flat parameter and gradient buffers) and the
 * model registry (lenet5, mlp, sequential).
 *
 * Shapes: activations are (N, C, H, W) float32, N = rows of the local
 * batch; a layer's in_shape/out_shape are per sample (C, H, W) or (F).
 * Parameters and gradients live in two flat arenas owned by the model; a
 * layer's ody_param holds views into both at the same offset.
 *
 * No allocation happens in forward or backward: ody_model_prepare sizes
 * every activation and scratch buffer for the largest batch up front.
 */
#ifndef ODYSSEY_NN_H
#define ODYSSEY_NN_H

#include "odyssey/core.h"
#include "odyssey/tensor.h"

/* ------------------------------------------------------------ parameters */

typedef enum {
    ODY_INIT_AUTO = 0,      /* the layer kind's default */
    ODY_INIT_ZERO,
    ODY_INIT_KAIMING_UNIFORM, /* U(-b, b), b = sqrt(6 / fan_in) (ReLU gain) */
    ODY_INIT_KAIMING_NORMAL,  /* N(0, 2 / fan_in) */
    ODY_INIT_XAVIER_UNIFORM,  /* U(-b, b), b = sqrt(6 / (fan_in + fan_out)) */
    ODY_INIT_XAVIER_NORMAL,   /* N(0, 2 / (fan_in + fan_out)) */
    ODY_INIT_TORCH_DEFAULT,   /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default */
    ODY_INIT_ONES             /* 1 (batchnorm's scale and running variance; not a config choice) */
} ody_init;

#define ODY_PARAM_NAME_MAX 48

typedef struct {
    char name[ODY_PARAM_NAME_MAX]; /* "conv1.weight", unique in the model */
    ody_shape shape;               /* conv (OC, C, KH, KW); linear (OUT, IN); bias (OUT) */
    ody_init init;
    int64_t fan_in, fan_out;
    /*
     * A buffer (batchnorm's running statistics): state that the checkpoint
     * keeps and every rank holds alike, but no optimizer touches. Buffers
     * sit after every trainable tensor (ody_model.ntrain). Their gradient
     * slot carries the step's statistics through the gradient sum: forward
     * adds each chunk's share, the sum makes them the step's, and the
     * kind's update_buffers folds them in after the optimizer step.
     */
    bool buffer;
    size_t offset;                 /* floats from the start of the arenas */
    float *value;                  /* view into the parameter arena */
    float *grad;                   /* view into the gradient arena */
} ody_param;

/* ---------------------------------------------------------------- layers */

/* What a forward pass needs to know beyond its input. */
typedef struct {
    bool training;              /* dropout active, saved state kept for backward */
    uint64_t seed;              /* experiment seed */
    uint64_t step;              /* global optimizer step */
    const int64_t *sample_ids;  /* (N) global sample index of each row */
    int64_t batch_rows;         /* rows of the whole optimizer step, all ranks (weights of a chunk's statistics) */
    /*
     * Rows before these in the model's buffers (a lockstep chunk's place;
     * 0 otherwise): a layer that saves per-row state for backward keeps it
     * at this row, so every chunk's stays until its backward.
     */
    int row_offset;
} ody_forward_info;

typedef struct ody_layer ody_layer;

/* The phases of a layer's statistics over the step's chunks (ody_layer_ops.sync_*). */
enum { ODY_SYNC_MEAN = 0, ODY_SYNC_VAR, ODY_SYNC_GRAD, ODY_SYNC_PHASES };

typedef struct {
    const char *kind;
    /*
     * Scratch floats (shared by all layers, valid only during one call) and
     * saved floats (this layer's own, kept from forward to backward) that
     * forward and backward need for a batch of max_batch rows.
     */
    size_t (*scratch_floats)(const ody_layer *l, int max_batch);
    size_t (*saved_floats)(const ody_layer *l, int max_batch);
    /* in (n, in_shape) -> out (n, out_shape). */
    void (*forward)(ody_layer *l, const ody_forward_info *info, int n, const float *in, float *out);
    /*
     * Given dout (n, out_shape): add this batch's parameter gradients into
     * params[i].grad (they accumulate until zeroed) and, when din is not
     * NULL, write din (n, in_shape). in/out are what forward saw and gave.
     */
    void (*backward)(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                     const float *out, const float *dout, float *din);
    /* Release what the constructor allocated beyond the struct (may be NULL). */
    void (*destroy)(ody_layer *l);
    /*
     * Fusion (may be NULL: never fuses). Given the count layers that follow
     * this one, return how many of them (k <= count) this layer absorbs: the
     * model then runs the k + 1 layers as one step, calling only this
     * layer's forward, which writes the output of next[k - 1], and its
     * backward, which takes the gradient of that output (in is still this
     * layer's input, out the step's output). The absorbed layers' forward
     * and backward are not called and the outputs inside the step are not
     * stored. count = 0 (or returning 0) means the layer runs alone.
     */
    int (*fuse)(ody_layer *l, ody_layer *const *next, int count);
    /*
     * A view (flatten): the output is the input's floats as they are. With
     * fusion on, the step before it absorbs it and writes its output there
     * directly, so it costs no copy and no buffer.
     */
    bool view;
    /* A few words the model summary prints after the layer (conv2d: its algorithm); may be NULL. */
    const char *(*describe)(const ody_layer *l);
    /*
     * Get ready for batches of up to max_batch rows before scratch and saved
     * sizes are asked (may be NULL): the oneDNN layers make their primitives
     * here. Called by ody_model_prepare, after fusion is settled.
     */
    ody_status (*prepare)(ody_ctx *ctx, ody_layer *l, int max_batch);
    /* Get ready now for batches of n <= max_batch too (may be NULL); see ody_model_plan_batch. */
    ody_status (*plan)(ody_ctx *ctx, ody_layer *l, int n);
    /*
     * Fold the step's summed statistics (the buffers' gradient slots) into
     * the buffers (may be NULL: no buffers); see ody_model_update_buffers.
     */
    void (*update_buffers)(ody_layer *l);
    /*
     * Statistics over every chunk of the step (batchnorm over the global
     * batch; may be NULL). Lockstep runs (ody_model_forward_chunks) call,
     * for each phase the kind has (sync_len(l, phase) > 0 doubles per
     * chunk), sync_part on every chunk of this rank, sum the parts of all
     * chunks of all ranks in their global order (the same at any rank
     * count), and hand the totals (and the step's row count) to sync_take,
     * before the layer's forward (phases ODY_SYNC_MEAN, ODY_SYNC_VAR) or
     * backward (ODY_SYNC_GRAD) runs on the chunks. owner: this rank adds
     * the step's statistics to the buffers' gradient slots (one rank does).
     */
    int (*sync_len)(const ody_layer *l, int phase);
    void (*sync_part)(ody_layer *l, int phase, int n, const float *in, const float *out, const float *dout,
                      double *part);
    void (*sync_take)(ody_layer *l, int phase, const double *total, int64_t rows, bool owner);
    /*
     * A join (add): the model computes out = input + second input itself
     * and hands the output gradient to both inputs; forward and backward
     * are not called.
     */
    bool join;
} ody_layer_ops;

#define ODY_LAYER_MAX_PARAMS 4
#define ODY_LAYER_NAME_MAX 32

struct ody_layer {
    const ody_layer_ops *ops;
    char name[ODY_LAYER_NAME_MAX]; /* "conv1", "fc2", "relu3" */
    ody_shape in_shape, out_shape; /* per sample */
    int nparams;
    ody_param params[ODY_LAYER_MAX_PARAMS]; /* trainable tensors first, then buffers */
    /*
     * Inputs, set by the model: the layer whose output this one reads (-1:
     * the model's input), and a join's second input (else -1).
     */
    int src, src2;
    /*
     * The model runs in lockstep (ody_model_forward_chunks): every chunk's
     * forward comes before any backward, so state forward keeps for
     * backward lives per row (ody_forward_info.row_offset) or not at all
     * (conv2d then fuses nothing and oneDNN restages its input).
     */
    bool lockstep;
    float *scratch; /* set by ody_model_prepare */
    float *saved;   /* set by ody_model_prepare */
    /*
     * A failure of its kernels in forward or backward (oneDNN could not
     * make or run a primitive; the message is on the context): set by the
     * kind, the model stops at it (ody_model_forward, ody_model_backward).
     */
    ody_status status;
};

/*
 * A layer as written in a config (model.layers) or by the registry: a kind
 * and numeric arguments in the order of that kind's argument table.
 */
#define ODY_LAYER_MAX_ARGS 6

/*
 * Kernel backends (model.backend): oneDNN's primitives and sgemm (JIT for
 * the CPU it runs on, AVX-512 here), or OpenBLAS with the project's own
 * direct kernels. oneDNN is the default (a zeroed spec's).
 */
typedef enum { ODY_BACKEND_ONEDNN = 0, ODY_BACKEND_OPENBLAS } ody_backend;

typedef struct {
    char kind[16];
    double args[ODY_LAYER_MAX_ARGS];
    ody_init init;
    ody_backend backend; /* the model's backend (set by the model from its options) */
    bool bf16;           /* compute in bf16 (convolutions, linear layers; oneDNN only) */
    int line;            /* the config line it came from (0: not from a file), for errors */
} ody_layer_spec;

/*
 * A residual block in a spec list: a header spec of kind "residual" whose
 * args say how many inner specs follow it (the block's layers), the
 * shortcut (auto: identity where the shapes match, else a projection, a
 * strided 1x1 conv2d and a batchnorm), the activation after the add, and
 * the conv algorithm of a projection. The config reader writes them
 * (model.layers: {type: residual, layers: [...], ...}).
 */
enum {
    ODY_RESIDUAL_LAYERS = 0,
    ODY_RESIDUAL_SHORTCUT,
    ODY_RESIDUAL_ACTIVATION,
    ODY_RESIDUAL_CONV_ALGORITHM,
    ODY_RESIDUAL_BN_STATISTICS /* its projection's batchnorm (the batchnorm kind's `statistics`) */
};
enum { ODY_SHORTCUT_AUTO = 0, ODY_SHORTCUT_IDENTITY, ODY_SHORTCUT_PROJECTION };
enum { ODY_RESIDUAL_NONE = 0, ODY_RESIDUAL_RELU };

typedef struct {
    const char *key;    /* "out_channels" */
    double def;         /* default when not given */
    double min, max;    /* allowed range, inclusive */
    bool required;
    bool integer;       /* must be a whole number */
    const char *doc;
} ody_layer_arg;

/*
 * One row of the layer lookup table: the name used in configs, the
 * arguments it takes and the constructor. The constructor receives the
 * per-sample input shape, fills out_shape and the parameter specs (names
 * without the layer prefix, shapes, init, fans) and returns the layer.
 */
typedef struct {
    const char *kind;
    const char *doc;
    const ody_layer_arg *args;
    int nargs;
    ody_status (*create)(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                         ody_layer **out);
} ody_layer_kind;

/* The table row for a kind ("conv2d"), or NULL. */
const ody_layer_kind *ody_layer_kind_find(const char *kind);
/* All rows; *count receives their number. */
const ody_layer_kind *ody_layer_kinds(int *count);
/*
 * A spec for kind with every argument at its default; a required argument
 * is NaN ("not given") until set. Unknown kind: ODY_ERR_CONFIG.
 */
ody_status ody_layer_spec_default(ody_ctx *ctx, const char *kind, ody_layer_spec *spec);

/*
 * conv2d's algorithms: its layer argument `algorithm` (0, 1, 2) and
 * model.conv_algorithm (by name) for the conv2d layers left at auto.
 */
typedef enum {
    ODY_CONV_AUTO = 0, /* chosen per layer from its shape, what follows and the backend (src/nn/conv2d.c) */
    ODY_CONV_DIRECT,   /* direct kernels per sample; fused with a following relu + 2x2 max pool */
    ODY_CONV_GEMM,     /* im2col + OpenBLAS sgemm over groups of samples; never fused */
    ODY_CONV_ONEDNN    /* oneDNN's convolution primitives (backend onednn); never fused */
} ody_conv_algorithm;

/* "auto", "direct", "gemm", "onednn" (indexed by ody_conv_algorithm), NULL-terminated. */
const char *const *ody_conv_algorithm_names(void);
/*
 * The algorithm the conv2d layer l runs: DIRECT or GEMM (auto is settled
 * when the model is built, and again by ody_model_set_fusion).
 * ODY_CONV_AUTO when l is not a conv2d.
 */
ody_conv_algorithm ody_conv2d_algorithm(const ody_layer *l);

/* ---------------------------------------------------------------- losses */

typedef enum { ODY_LOSS_CROSS_ENTROPY = 0, ODY_LOSS_MSE } ody_loss_kind;

/*
 * Per-sample loss of logits (n, classes) against integer labels (n):
 * cross-entropy = -sum_c q_c log softmax(z)_c with the target
 * q = (1 - eps) onehot(y) + eps / classes, eps = label_smoothing in [0, 1)
 * (PyTorch's CrossEntropyLoss(label_smoothing=eps); eps = 0 is
 * logsumexp(z) - z[y], computed stably); MSE = mean over classes of
 * (z - onehot(y))^2 (label_smoothing ignored). Writes loss[i] and adds the
 * rows whose argmax equals the label to *correct (when correct is not NULL).
 */
void ody_loss_forward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                      const float *logits, const int32_t *labels, float *loss, int64_t *correct);
/*
 * dlogits = scale * d loss[i] / d logits for every row (scale = 1 / global
 * count); for cross-entropy that is scale * (softmax(z) - q).
 */
void ody_loss_backward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                       const float *logits, const int32_t *labels, float scale, float *dlogits);
/* Both at once, each row's logsumexp computed once: the same bits as the two calls. */
void ody_loss_forward_backward(ody_loss_kind kind, double label_smoothing, int n, int classes,
                               const float *logits, const int32_t *labels, float *loss, int64_t *correct,
                               float scale, float *dlogits);

/* ----------------------------------------------------------------- model */

#define ODY_MODEL_MAX_HIDDEN 16
#define ODY_MODEL_MAX_LAYERS 128
#define ODY_MODEL_MAX_SLOTS 8

/* What the config says about the model. */
typedef struct {
    char name[32];              /* registry name: lenet5, mlp, sequential */
    int num_classes;
    ody_shape input_shape;      /* per sample (C, H, W) */
    double dropout;             /* > 0 inserts dropout before the fc layers */
    char variant[16];           /* lenet5: "modern" (relu, maxpool) or "classic" (tanh, avgpool) */
    char activation[16];        /* mlp: relu, tanh or sigmoid */
    ody_init init;              /* every parameter's scheme (AUTO: each kind's default) */
    char conv_algorithm[8];     /* conv2d layers left at auto: auto, direct, gemm or onednn ("" = auto) */
    char backend[12];           /* kernels: onednn or openblas ("" = onednn) */
    char batchnorm[8];          /* batchnorm statistics: chunk or global ("" = chunk) */
    bool compute_bf16;          /* convolutions and linear layers in bf16 (set from training.*, not a model key) */
    int hidden_sizes[ODY_MODEL_MAX_HIDDEN];
    int n_hidden;
    ody_layer_spec layers[ODY_MODEL_MAX_LAYERS]; /* sequential */
    int n_layers;
} ody_model_options;

/* Flat range of the parameter arena that one layer's parameters occupy. */
typedef struct {
    size_t begin, end;
} ody_range;

typedef struct ody_model {
    char name[32];
    ody_shape input_shape;
    int num_classes;
    int nlayers;
    ody_layer *layers[ODY_MODEL_MAX_LAYERS];
    ody_range layer_range[ODY_MODEL_MAX_LAYERS]; /* parameter floats of layer i */
    int ntensors;
    ody_param *tensors[ODY_MODEL_MAX_LAYERS * ODY_LAYER_MAX_PARAMS]; /* layout order */
    ody_arena params;  /* every parameter, one flat buffer */
    ody_arena grads;   /* same layout */
    size_t nparams;    /* real count of trainable parameters (without alignment padding) */
    size_t ntrain;     /* floats of the trainable tensors: [0, ntrain) of the arenas; buffers follow */
    /* The graph: layer i reads layers[i]->src (and a join src2); fanout[i] layers read layer i. */
    int fanout[ODY_MODEL_MAX_LAYERS];
    /*
     * Steps: layer i runs with the span[i] - 1 layers after it as one fused
     * step (span 1: alone); the absorbed layers have span 0.
     */
    bool fusion; /* fused steps where a layer kind offers them (the default) */
    /*
     * Some layer takes statistics over every chunk of the step (batchnorm
     * over the global batch): the step runs its chunks in lockstep
     * (ody_model_forward_chunks, ody_model_backward_chunks), not one by one.
     */
    bool lockstep;
    int span[ODY_MODEL_MAX_LAYERS];
    /* Per step (on its first layer), seconds of forward [0] and backward [1], summed while profile is set. */
    bool profile;
    double step_seconds[ODY_MODEL_MAX_LAYERS][2];
    /* set by ody_model_prepare */
    int max_batch;
    /* ODY_OK, or the first layer failure (ody_layer.status): forward then returns NULL, backward computes nothing */
    ody_status status;
    /* output of layer i, (max_batch, out_shape); NULL inside a fused step, whose output is not stored */
    float *acts[ODY_MODEL_MAX_LAYERS];
    /*
     * Gradients of step outputs during backward live in nslots buffers
     * (gbuf; gbuf[nslots] is a tmp for gradients added into a held slot
     * when grad_tmp): step output i's in gslot[i] (-1: the logits'
     * gradient, given), the step starting at i writes its inputs' into
     * din_slot[i][k] (-1: none needed), adding when din_add[i][k].
     */
    bool need_grad[ODY_MODEL_MAX_LAYERS];
    int gslot[ODY_MODEL_MAX_LAYERS];
    int din_slot[ODY_MODEL_MAX_LAYERS][2];
    bool din_add[ODY_MODEL_MAX_LAYERS][2];
    int nslots;
    bool grad_tmp;
    float *gbuf[ODY_MODEL_MAX_SLOTS + 1];
    float *scratch;
    double *sync_part, *sync_total; /* lockstep: statistics parts of this rank's chunks, the totals */
    size_t sync_bytes;
    float *prepared;   /* the one allocation all of the above are carved from */
    size_t prepared_bytes;
} ody_model;

/*
 * Build a model from the registry (options->name) or, for "sequential",
 * from options->layers. Parameters are allocated (zeroed), not initialised.
 * Errors name the layer (counted from 1) and what is wrong (e.g. a kernel
 * larger than its input). Returns ODY_ERR_CONFIG for a bad architecture.
 */
ody_status ody_model_create(ody_ctx *ctx, const ody_model_options *options, ody_model **out);
/* Build a model from explicit layer specs (used by the registry and tests). */
ody_status ody_model_create_from_specs(ody_ctx *ctx, const char *name, const ody_layer_spec *specs,
                                       int nspecs, ody_shape input_shape, ody_model **out);
/*
 * Fusion on (the default after create) or off: off, every layer runs alone
 * (for tests and comparisons; the results agree up to rounding). Call it
 * before ody_model_prepare: afterwards it returns ODY_ERR_INTERNAL.
 */
ody_status ody_model_set_fusion(ody_ctx *ctx, ody_model *model, bool on);
/* Release a model (NULL is fine). */
void ody_model_destroy(ody_ctx *ctx, ody_model *model);
/*
 * Threads each kernel library may use on this rank (OpenBLAS and oneDNN's
 * OpenMP); deterministic mode uses 1, so that a sum's order never depends
 * on the machine.
 */
void ody_kernel_threads(int threads);
/*
 * bf16 compute here: ODY_OK when the CPU has native bf16 arithmetic
 * (AVX512_BF16 or AMX, as oneDNN sees it), else ODY_ERR_CONFIG saying so
 * (no silent emulation).
 */
ody_status ody_bf16_supported(ody_ctx *ctx);
/* Lines for --version: the kernel libraries, what they run on here, and bf16 (results' bits depend on them). */
void ody_kernels_report(FILE *out);
/* Names the registry knows, NULL-terminated. */
const char *const *ody_model_names(void);

/* Initialise every parameter from (seed, tensor index): same seed, same weights. */
void ody_model_init_params(ody_model *model, uint64_t seed);
/*
 * Allocate activations and scratch for batches of up to max_batch rows.
 * Calling it again with a larger max_batch re-sizes (the old buffers are
 * released); a smaller one keeps what is there.
 */
ody_status ody_model_prepare(ody_ctx *ctx, ody_model *model, int max_batch);

/*
 * Make what batches of n rows (n <= the prepared max_batch) need before the
 * first such batch: the oneDNN layers' primitives for that shape (the
 * chunk's in deterministic mode). Shapes not planned are made at first use.
 */
ody_status ody_model_plan_batch(ody_ctx *ctx, ody_model *model, int n);

/* Called after layer `layer` finished backward: its gradients are final. */
typedef void (*ody_grad_ready_fn)(void *user, int layer);

/*
 * Forward x (n, input_shape) -> logits (n, num_classes), owned by the model
 * and valid until the next forward. info NULL means evaluation. Returns NULL
 * when n exceeds the prepared max_batch; n = 0 computes nothing.
 */
const float *ody_model_forward(ody_model *model, const ody_forward_info *info, int n, const float *x);
/*
 * Backward from dlogits (n, num_classes) through every layer, last first,
 * accumulating parameter gradients; calls ready(user, i) after layer i
 * (ready may be NULL), also when n = 0 and after a layer failed (so that
 * the ranks' sums stay in step; model->status then says the gradients are
 * not to be used). The first layer computes no input gradient. Needs the
 * forward of the same batch just before it.
 */
void ody_model_backward(ody_model *model, const ody_forward_info *info, int n, const float *x,
                        const float *dlogits, ody_grad_ready_fn ready, void *user);
/*
 * Lockstep runs: the rank's chunks of a step go through the model layer by
 * layer together, so that a layer can take statistics over all of them
 * (and over the other ranks' chunks, through sync) before it runs on any.
 * Chunk c has rows[c] rows at x[c] and info[c]; the model holds them one
 * after another (the sum of rows at most the prepared max_batch). Each
 * kernel still runs on one chunk at a time, so a chunk's results have the
 * bits they would have alone given the same statistics.
 */
typedef struct {
    int nchunks;
    const int *rows;
    const float *const *x;
    const ody_forward_info *info;
    /*
     * Sum the parts of every chunk of every rank, count doubles each: part
     * holds this rank's chunks' (nchunks x count); total receives the sum
     * over all chunks in their global order. Returns false on failure
     * (the model stops with the message on the context).
     */
    bool (*sync)(void *user, const double *part, int count, double *total);
    void *user;
    int64_t step_rows; /* rows of the whole step, all ranks */
    bool owner;        /* this rank adds the step's statistics to the buffers (one rank does) */
} ody_chunk_set;

/* Forward of a chunk set: the logits of chunk c follow those of the chunks before it; NULL on failure. */
const float *ody_model_forward_chunks(ody_model *model, const ody_chunk_set *set);
/*
 * Backward of the chunk set just forwarded, from dlogits laid out as the
 * logits. Parameter gradients of chunk c < nchunks - 1 are handed to
 * done(user, layer, c) as soon as the layer has run on the chunk (to be
 * taken and cleared); after the last chunk, ready(user, layer) runs as in
 * ody_model_backward. done may be NULL (gradients accumulate).
 */
void ody_model_backward_chunks(ody_model *model, const ody_chunk_set *set, const float *dlogits,
                               void (*done)(void *user, int layer, int chunk), ody_grad_ready_fn ready,
                               void *user);

/* Set every gradient to zero. */
void ody_model_zero_grad(ody_model *model);
/*
 * After an optimizer step: fold the step's statistics (summed into the
 * buffers' gradient slots by the gradient sum) into the buffers
 * (batchnorm's running mean and variance). Every rank holds the same sums,
 * so every rank's buffers stay alike.
 */
void ody_model_update_buffers(ody_model *model);
/* The parameter tensor named `name`, or NULL. */
ody_param *ody_model_find_param(ody_model *model, const char *name);
/* Log the layers, their shapes and parameter counts at info level. */
void ody_model_summary(const ody_ctx *ctx, const ody_model *model);

#endif /* ODYSSEY_NN_H */
