/*
 * nn internals shared by the files of src/nn (not part of the public API):
 * layer allocation, parameter specs, window geometry of conv and pooling,
 * and the constructors the layer table points at.
 */
#ifndef ODYSSEY_NN_INTERNAL_H
#define ODYSSEY_NN_INTERNAL_H

#include "odyssey/nn.h"

/*
 * Layer kinds may leave ody_layer_ops.scratch_floats and saved_floats NULL
 * (none needed), and destroy NULL (nothing beyond the struct). A forward
 * gets info NULL for evaluation (nn_training).
 */

/*
 * Allocate a layer struct of `bytes` (a kind's own struct, ody_layer first),
 * zeroed, with ops and in_shape set. The size is kept in a hidden header so
 * nn_layer_free can return it to ody_free without knowing the kind.
 */
ody_status nn_layer_new(ody_ctx *ctx, size_t bytes, const ody_layer_ops *ops, ody_shape in_shape,
                        ody_layer **out);
/* Call the kind's destroy hook, then release the struct (NULL is fine). */
void nn_layer_free(ody_ctx *ctx, ody_layer *l);

/* Fill params[i] of l: name without the layer prefix, shape and fans. */
void nn_param_set(ody_layer *l, int i, const char *name, ody_shape shape, int64_t fan_in,
                  int64_t fan_out);

/* Argument i of a spec as an int (the model has checked range and wholeness). */
static inline int nn_arg(const ody_layer_spec *spec, int i) { return (int)spec->args[i]; }

/* A kernel's failure stays on the layer (ody_layer.status) until the model is rebuilt. */
static inline void nn_keep_failure(ody_layer *l, ody_status st)
{
    if (st != ODY_OK && l->status == ODY_OK)
        l->status = st;
}

/* True when this forward pass trains (dropout active). info may be NULL. */
static inline bool nn_training(const ody_forward_info *info) { return info && info->training; }

/* Per-sample floats of a shape, as size_t for buffer arithmetic. */
static inline size_t nn_numel(ody_shape s) { return (size_t)ody_shape_numel(&s); }

/*
 * Geometry of a square sliding window (conv, pooling) over a (C, H, W)
 * input: output size floor((H + 2*pad - k) / stride) + 1 in each dimension.
 */
typedef struct {
    int c, h, w;         /* input, per sample */
    int k, stride, pad;
    int oh, ow;          /* output */
} nn_window;

/*
 * Check that in_shape is (C, H, W) and that the k x k window fits the padded
 * input; fill *win. Errors (ODY_ERR_CONFIG) say what is wrong, for the model
 * to prefix with the layer.
 */
ody_status nn_window_make(ody_ctx *ctx, const char *kind, ody_shape in_shape, int k, int stride,
                          int pad, nn_window *win);
/* The input rectangle [y0, y1) x [x0, x1) of output (oy, ox), clipped to the input. */
typedef struct {
    int y0, y1, x0, x1;
} nn_rect;

static inline nn_rect nn_window_at(const nn_window *win, int oy, int ox)
{
    int y0 = oy * win->stride - win->pad, x0 = ox * win->stride - win->pad;
    int y1 = y0 + win->k, x1 = x0 + win->k;
    return (nn_rect){y0 < 0 ? 0 : y0, y1 > win->h ? win->h : y1, x0 < 0 ? 0 : x0, x1 > win->w ? win->w : x1};
}

/*
 * Output positions o in [*lo, *hi) of one dimension whose input position
 * o*stride + koff - pad lies inside [0, in_size).
 */
void nn_window_span(const nn_window *win, int koff, int in_size, int out_size, int *lo, int *hi);

/* Both pooling kinds: a layer and its window. */
typedef struct {
    ody_layer base;
    nn_window win;
} nn_pool_layer;

/*
 * Create a pooling layer with `ops` from a spec (kernel_size, stride with 0
 * meaning the kernel, padding at most half the kernel, as PyTorch asks).
 */
ody_status nn_pool_create(ody_ctx *ctx, const ody_layer_ops *ops, const ody_layer_spec *spec,
                          ody_shape in_shape, ody_layer **out);

/* Constructors of the layer table (one per file). */
ody_status nn_conv2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_maxpool2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                               ody_layer **out);
ody_status nn_avgpool2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                               ody_layer **out);
ody_status nn_linear_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_relu_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
/* A relu's backward on m elements: dst = dout where out > 0, else 0 (also NaN out). dout is read always:
 * a conditional read does not vectorise (a branch per element). */
void nn_relu_mask(size_t m, const float *restrict out, const float *restrict dout, float *restrict dst);
ody_status nn_tanh_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_sigmoid_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_dropout_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_flatten_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_batchnorm_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);
ody_status nn_global_avgpool_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                                    ody_layer **out);
/* A residual block's add (not in the kind table: the model makes it, with two inputs). */
ody_status nn_add_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape, ody_layer **out);

/* Argument positions in ody_layer_spec.args, in the order of the layer table. */
enum { NN_CONV_OUT_CHANNELS = 0, NN_CONV_KERNEL, NN_CONV_STRIDE, NN_CONV_PADDING, NN_CONV_ALGORITHM };
enum { NN_POOL_KERNEL = 0, NN_POOL_STRIDE, NN_POOL_PADDING };
enum { NN_LINEAR_OUT_FEATURES = 0 };
enum { NN_DROPOUT_P = 0 };
enum { NN_BN_MOMENTUM = 0, NN_BN_EPS, NN_BN_STATISTICS };


/*
 * Check spec's arguments against its kind's table (required, range, whole
 * numbers). Errors name the argument; the caller prefixes the layer.
 */
ody_status nn_spec_check(ody_ctx *ctx, const ody_layer_kind *kind, const ody_layer_spec *spec);

#endif /* ODYSSEY_NN_INTERNAL_H */
