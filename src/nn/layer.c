/* nn: what every layer kind shares: allocation, parameter specs, window geometry. */
#include "nn/nn_internal.h"

#include <string.h>

/* The hidden header keeps the struct 64-byte aligned behind it. */
enum { LAYER_HEADER = 64 };

ody_status nn_layer_new(ody_ctx *ctx, size_t bytes, const ody_layer_ops *ops, ody_shape in_shape,
                        ody_layer **out)
{
    *out = NULL;
    unsigned char *p;
    ody_status st = ody_alloc(ctx, LAYER_HEADER + bytes, ops->kind, (void **)&p);
    if (st != ODY_OK)
        return st;
    memcpy(p, &bytes, sizeof bytes);
    ody_layer *l = (ody_layer *)(p + LAYER_HEADER);
    l->ops = ops;
    l->in_shape = in_shape;
    *out = l;
    return ODY_OK;
}

void nn_layer_free(ody_ctx *ctx, ody_layer *l)
{
    if (!l)
        return;
    if (l->ops->destroy)
        l->ops->destroy(l);
    unsigned char *p = (unsigned char *)l - LAYER_HEADER;
    size_t bytes;
    memcpy(&bytes, p, sizeof bytes);
    ody_free(ctx, p, LAYER_HEADER + bytes);
}

void nn_param_set(ody_layer *l, int i, const char *name, ody_shape shape, int64_t fan_in,
                  int64_t fan_out)
{
    ody_param *p = &l->params[i];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->shape = shape;
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    if (l->nparams < i + 1)
        l->nparams = i + 1;
}

ody_status nn_window_make(ody_ctx *ctx, const char *kind, ody_shape in_shape, int k, int stride,
                          int pad, nn_window *win)
{
    char buf[64];
    if (in_shape.ndim != 3)
        return ody_fail(ctx, ODY_ERR_CONFIG, "%s needs a (C, H, W) input, got %s", kind,
                        ody_shape_format(&in_shape, buf, sizeof buf));
    int64_t ph = in_shape.dims[1] + 2 * (int64_t)pad, pw = in_shape.dims[2] + 2 * (int64_t)pad;
    if (k > ph || k > pw)
        return ody_fail(ctx, ODY_ERR_CONFIG, "kernel %d is larger than its padded input %lldx%lld", k,
                        (long long)ph, (long long)pw);
    *win = (nn_window){
        .c = (int)in_shape.dims[0], .h = (int)in_shape.dims[1], .w = (int)in_shape.dims[2],
        .k = k, .stride = stride, .pad = pad,
        .oh = (int)((ph - k) / stride + 1), .ow = (int)((pw - k) / stride + 1),
    };
    return ODY_OK;
}

void nn_window_span(const nn_window *win, int koff, int in_size, int out_size, int *lo, int *hi)
{
    int s = win->stride, first = win->pad - koff, last = in_size - 1 + win->pad - koff;
    *lo = first <= 0 ? 0 : (first + s - 1) / s;
    *hi = last < 0 ? 0 : last / s + 1;
    if (*hi > out_size)
        *hi = out_size;
    if (*lo > *hi)
        *lo = *hi;
}

ody_status nn_pool_create(ody_ctx *ctx, const ody_layer_ops *ops, const ody_layer_spec *spec,
                          ody_shape in_shape, ody_layer **out)
{
    *out = NULL;
    int k = nn_arg(spec, NN_POOL_KERNEL), stride = nn_arg(spec, NN_POOL_STRIDE);
    int pad = nn_arg(spec, NN_POOL_PADDING);
    if (stride == 0)
        stride = k;
    /* PyTorch's rule; it also keeps every window partly inside the input. */
    if (2 * pad > k)
        return ody_fail(ctx, ODY_ERR_CONFIG, "padding %d is more than half the kernel %d", pad, k);
    nn_window win;
    ody_status st = nn_window_make(ctx, ops->kind, in_shape, k, stride, pad, &win);
    if (st != ODY_OK)
        return st;
    ody_layer *l;
    if ((st = nn_layer_new(ctx, sizeof(nn_pool_layer), ops, in_shape, &l)) != ODY_OK)
        return st;
    ((nn_pool_layer *)l)->win = win;
    l->out_shape = ody_shape3(win.c, win.oh, win.ow);
    *out = l;
    return ODY_OK;
}
