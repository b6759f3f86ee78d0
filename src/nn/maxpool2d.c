/*
 * maxpool2d: the maximum of each k x k window, per channel. Padding counts
 * as -infinity (it never wins). The position of each maximum is saved for
 * backward as an int32 index into its input plane; ties go to the first.
 *
 *   in (n, C, H, W) -> out (n, C, OH, OW); saved (n, C, OH, OW) int32
 */
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(int32_t) == sizeof(float), "argmax indices live in a float buffer");

static size_t maxpool2d_saved_floats(const ody_layer *l, int max_batch)
{
    return (size_t)max_batch * nn_numel(l->out_shape);
}

/* One input plane (H, W) -> one output plane (OH, OW) and its argmax. */
static void pool_plane(const nn_window *g, const float *in, float *out, int32_t *arg)
{
    for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
            nn_rect r = nn_window_at(g, oy, ox);
            float best = -INFINITY;
            int32_t at = r.y0 * g->w + r.x0;
            for (int y = r.y0; y < r.y1; y++)
                for (int x = r.x0; x < r.x1; x++)
                    if (in[y * g->w + x] > best) {
                        best = in[y * g->w + x];
                        at = y * g->w + x;
                    }
            out[oy * g->ow + ox] = best;
            arg[oy * g->ow + ox] = at;
        }
}

/* best, where = v, at when v > best (strictly: ties keep the first), without a branch. */
static inline void keep_max(float v, int32_t at, float *best, int32_t *where)
{
    int32_t wins = -(int32_t)(v > *best); /* all ones or zero */
    *where = (*where & ~wins) | (at & wins);
    *best = v > *best ? v : *best; /* maxss */
}

/*
 * The same for 2x2 windows at stride 2 without padding (LeNet's pools),
 * unrolled and without branches (which of the four wins is random).
 */
static void pool_plane_2x2(const nn_window *g, const float *in, float *out, int32_t *arg)
{
    for (int oy = 0; oy < g->oh; oy++) {
        const float *r0 = in + 2 * oy * g->w, *r1 = r0 + g->w;
        for (int ox = 0; ox < g->ow; ox++) {
            int x = 2 * ox, at = 2 * oy * g->w + x;
            float best = r0[x];
            int32_t where = at;
            keep_max(r0[x + 1], at + 1, &best, &where);
            keep_max(r1[x], at + g->w, &best, &where);
            keep_max(r1[x + 1], at + g->w + 1, &best, &where);
            out[oy * g->ow + ox] = best;
            arg[oy * g->ow + ox] = where;
        }
    }
}

static void maxpool2d_forward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                              float *out)
{
    const nn_window *g = &((nn_pool_layer *)l)->win;
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    int32_t *arg = (int32_t *)l->saved + (size_t)(info ? info->row_offset : 0) * g->c * out_plane;
    bool fast = g->k == 2 && g->stride == 2 && g->pad == 0;
    for (size_t p = 0; p < (size_t)n * g->c; p++)
        (fast ? pool_plane_2x2 : pool_plane)(g, in + p * in_plane, out + p * out_plane, arg + p * out_plane);
}

static void maxpool2d_backward(ody_layer *l, const ody_forward_info *info, int n, const float *in,
                               const float *out, const float *dout, float *din)
{
    if (!din)
        return;
    const nn_window *g = &((nn_pool_layer *)l)->win;
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    const int32_t *arg = (const int32_t *)l->saved + (size_t)(info ? info->row_offset : 0) * g->c * out_plane;
    memset(din, 0, (size_t)n * g->c * in_plane * sizeof *din);
    for (size_t p = 0; p < (size_t)n * g->c; p++) {
        float *d = din + p * in_plane;
        const float *dy = dout + p * out_plane;
        const int32_t *a = arg + p * out_plane;
        for (size_t i = 0; i < out_plane; i++)
            d[a[i]] += dy[i];
    }
}

static const ody_layer_ops maxpool2d_ops = {
    .kind = "maxpool2d",
    .saved_floats = maxpool2d_saved_floats,
    .forward = maxpool2d_forward,
    .backward = maxpool2d_backward,
};

ody_status nn_maxpool2d_create(ody_ctx *ctx, const ody_layer_spec *spec, ody_shape in_shape,
                               ody_layer **out)
{
    return nn_pool_create(ctx, &maxpool2d_ops, spec, in_shape, out);
}
