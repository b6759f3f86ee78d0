/*
 * oneDNN primitives for a layer with weights: convolution (conv2d's onednn
 * algorithm) and inner product (linear with bf16 compute). Forward,
 * backward data and backward weights, in the layouts oneDNN prefers, in
 * fp32 or with bf16 inputs and weights (fp32 accumulation and outputs).
 *
 * The layer's tensors stay in the project's layouts: in (n, C, H, W) or
 * (n, IN), out (n, OC, OH, OW) or (n, OUT), W (OC, C, K, K) or (OUT, IN),
 * b (OC), fp32. Each pass reorders what it reads into the primitive's
 * layout (blocked channels, bf16 when asked) in the layer's scratch, runs
 * the primitive, and reorders what it writes back. The reorders are
 * memory-bound and cost a few percent of a 3x3 convolution of 32 or more
 * channels; running on the plain layouts instead makes oneDNN fall back to
 * im2col + gemm at a third of the speed.
 *
 * A primitive is made for one batch size. A plan holds the three for one n:
 * the prepared batch's plan, and the chunk's in deterministic mode, are
 * made before training (nn_dnnl_op_plan), others (a chunk's tail, a
 * validation piece) on first use, kept in a few slots. A plan's results
 * depend only on n, so a chunk gives the same bits on whatever rank
 * computes it.
 *
 * The staging buffers are the op's own, grown when a plan is made: the
 * layouts oneDNN picks depend on the batch (bf16 blocks the batch
 * dimension for some n), so a smaller batch may need more than the
 * prepared one.
 */
#include "nn/nn_dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PLAN_SLOTS = 8 };

typedef struct {
    int n; /* 0: slot free */
    dnnl_primitive_desc_t fpd, dpd, wpd;
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    /* forward: user src -> src, user W -> W, dst -> user out */
    nn_dnnl_reorder f_src, f_wei, f_dst;
    /* backward data: user dout -> diff_dst, user W -> W, diff_src -> user din */
    nn_dnnl_reorder d_ddst, d_wei, d_dsrc;
    /* backward weights: user in -> src, user dout -> diff_dst, diff_weights -> (OC, C, K, K) */
    nn_dnnl_reorder w_src, w_ddst, w_dwei;
    dnnl_memory_t f_m_src, f_m_wei, f_m_bias, f_m_dst;
    dnnl_memory_t d_m_ddst, d_m_wei, d_m_dsrc;
    dnnl_memory_t w_m_src, w_m_ddst, w_m_dwei, w_m_dbias;
    size_t fwd_floats, bwd_floats; /* staging of each pass, after the kept part */
    /*
     * A fused max pool (after the relu): the convolution's output stays in
     * its blocked layout (kept from forward to backward, with the pool's
     * workspace, at the start of the op's buffers), the pool runs on it,
     * and only the pooled output is reordered back.
     */
    dnnl_primitive_desc_t ppd, pbpd;
    dnnl_primitive_t pool_fwd, pool_bwd;
    nn_dnnl_reorder p_out;           /* pooled (blocked) -> user out */
    nn_dnnl_reorder p_dout;          /* user dout -> the pool's diff_dst */
    nn_dnnl_reorder p_to_d, p_to_w;  /* the conv output's layout -> backward data's, weights' diff_dst */
    dnnl_memory_t pm_src, pm_dst, pm_ws, pm_ddst, pm_dsrc;
    size_t kept_dst, kept_ws;        /* floats of the kept conv output and workspace */
    size_t kept_src;                 /* > 0: forward's staged input, kept for backward weights (same layout) */
} op_plan;

struct nn_dnnl_op {
    ody_ctx *ctx;
    nn_dnnl_shape shape;
    size_t weights, outputs, biases; /* floats of W, of one sample's output, of b */
    op_plan plans[PLAN_SLOTS]; /* [0]: the prepared batch */
    float *work;               /* the passes' staging buffers: as large as the largest plan needs */
    size_t work_floats;
    int next_slot;               /* the slot a new plan replaces (1 .. PLAN_SLOTS-1, in turn) */
};

static ody_status fit_work(nn_dnnl_op *c, const op_plan *p);

/* The op's buffers start with what forward keeps for backward: conv output, pool workspace, staged input. */
static size_t kept_floats(const op_plan *p) { return p->kept_dst + p->kept_ws + p->kept_src; }

static void plan_free(op_plan *p)
{
    dnnl_primitive_desc_t pds[] = {p->fpd, p->dpd, p->wpd, p->ppd, p->pbpd};
    dnnl_primitive_t prims[] = {p->fwd, p->bwd_data, p->bwd_weights, p->pool_fwd, p->pool_bwd};
    for (int i = 0; i < 5; i++) {
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    }
    nn_dnnl_reorder *rs[] = {&p->f_src, &p->f_wei, &p->f_dst, &p->d_ddst, &p->d_wei,  &p->d_dsrc, &p->w_src,
                             &p->w_ddst, &p->w_dwei, &p->p_out, &p->p_dout, &p->p_to_d, &p->p_to_w};
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        nn_dnnl_reorder_free(rs[i]);
    dnnl_memory_t ms[] = {p->f_m_src,  p->f_m_wei,  p->f_m_bias, p->f_m_dst,  p->d_m_ddst, p->d_m_wei,
                          p->d_m_dsrc, p->w_m_src,  p->w_m_ddst, p->w_m_dwei, p->w_m_dbias, p->pm_src,
                          p->pm_dst,   p->pm_ws,    p->pm_ddst,  p->pm_dsrc};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (ms[i])
            dnnl_memory_destroy(ms[i]);
    *p = (op_plan){0};
}

/* The user-side descriptions of one batch of n. */
typedef struct {
    dnnl_memory_desc_t src, dst, wei, bias;           /* plain, fp32 */
    dnnl_memory_desc_t a_src, a_dst, a_wei, a_dsrc, a_dwei; /* any layout; inputs in the compute type */
    dnnl_dims_t strides, pad_l, pad_r;
} op_descs;

static ody_status make_descs(ody_ctx *ctx, const nn_dnnl_shape *sh, int n, op_descs *d)
{
    dnnl_data_type_t in_type = sh->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_status_t s;
    if (sh->kind == NN_DNNL_INNER_PRODUCT) {
        dnnl_dims_t src = {n, sh->in_features}, dst = {n, sh->out_features},
                    wei = {sh->out_features, sh->in_features}, bias = {sh->out_features};
        s = dnnl_memory_desc_init_by_tag(&d->src, 2, src, dnnl_f32, dnnl_nc);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->dst, 2, dst, dnnl_f32, dnnl_nc);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->wei, 2, wei, dnnl_f32, dnnl_oi);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->bias, 1, bias, dnnl_f32, dnnl_x);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->a_src, 2, src, in_type, dnnl_format_tag_any);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->a_dst, 2, dst, in_type, dnnl_format_tag_any);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->a_wei, 2, wei, in_type, dnnl_format_tag_any);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->a_dsrc, 2, src, dnnl_f32, dnnl_format_tag_any);
        if (s == dnnl_success)
            s = dnnl_memory_desc_init_by_tag(&d->a_dwei, 2, wei, dnnl_f32, dnnl_format_tag_any);
        return nn_dnnl_check(ctx, s, "inner product shapes");
    }
    const nn_window *w = &sh->conv.win;
    int oc = sh->conv.oc;
    dnnl_dims_t src = {n, w->c, w->h, w->w}, dst = {n, oc, w->oh, w->ow}, wei = {oc, w->c, w->k, w->k},
                bias = {oc};
    s = dnnl_memory_desc_init_by_tag(&d->src, 4, src, dnnl_f32, dnnl_nchw);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->dst, 4, dst, dnnl_f32, dnnl_nchw);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->wei, 4, wei, dnnl_f32, dnnl_oihw);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->bias, 1, bias, dnnl_f32, dnnl_x);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->a_src, 4, src, in_type, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->a_dst, 4, dst, in_type, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->a_wei, 4, wei, in_type, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->a_dsrc, 4, src, dnnl_f32, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&d->a_dwei, 4, wei, dnnl_f32, dnnl_format_tag_any);
    /* oneDNN wants the right padding that makes the output size exact (floor division, as PyTorch). */
    d->strides[0] = d->strides[1] = w->stride;
    d->pad_l[0] = d->pad_l[1] = w->pad;
    d->pad_r[0] = (w->oh - 1) * w->stride + w->k - w->h - w->pad;
    d->pad_r[1] = (w->ow - 1) * w->stride + w->k - w->w - w->pad;
    return nn_dnnl_check(ctx, s, "convolution shapes");
}

/* The forward primitive, with a relu post-op when fused; its dst is fp32 (in the layout oneDNN picks). */
static ody_status make_forward(ody_ctx *ctx, dnnl_engine_t e, const nn_dnnl_shape *sh, op_descs *d,
                               op_plan *p)
{
    dnnl_convolution_desc_t cd;
    dnnl_inner_product_desc_t id;
    bool inner = sh->kind == NN_DNNL_INNER_PRODUCT, relu = sh->relu;
    const void *op = inner ? (const void *)&id : (const void *)&cd;
    dnnl_memory_desc_t dst;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_memory_desc_init_by_tag(&dst, d->dst.ndims, d->dst.dims, dnnl_f32, dnnl_format_tag_any);
    dnnl_status_t s =
        inner ? dnnl_inner_product_forward_desc_init(&id, dnnl_forward_training, &d->a_src, &d->a_wei, &d->bias,
                                                     &dst)
              : dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &d->a_src,
                                                   &d->a_wei, &d->bias, &dst, d->strides, d->pad_l, d->pad_r);
    if (s == dnnl_success && relu) {
        s = dnnl_primitive_attr_create(&attr);
        if (s == dnnl_success)
            s = dnnl_post_ops_create(&ops);
        if (s == dnnl_success)
            s = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (s == dnnl_success)
            s = dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&p->fpd, op, attr, e, NULL);
    if (ops)
        dnnl_post_ops_destroy(ops);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return nn_dnnl_check(ctx, s, inner ? "inner product forward" : "convolution forward");
}

static ody_status make_backward(ody_ctx *ctx, dnnl_engine_t e, const nn_dnnl_shape *sh, op_descs *d,
                                op_plan *p)
{
    bool inner = sh->kind == NN_DNNL_INNER_PRODUCT;
    dnnl_convolution_desc_t cdd, cwd;
    dnnl_inner_product_desc_t idd, iwd;
    dnnl_status_t s =
        inner ? dnnl_inner_product_backward_data_desc_init(&idd, &d->a_dsrc, &d->a_wei, &d->a_dst)
              : dnnl_convolution_backward_data_desc_init(&cdd, dnnl_convolution_direct, &d->a_dsrc, &d->a_wei,
                                                         &d->a_dst, d->strides, d->pad_l, d->pad_r);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&p->dpd, inner ? (const void *)&idd : (const void *)&cdd, NULL, e, p->fpd);
    if (s == dnnl_success)
        s = inner ? dnnl_inner_product_backward_weights_desc_init(&iwd, &d->a_src, &d->a_dwei, &d->bias, &d->a_dst)
                  : dnnl_convolution_backward_weights_desc_init(&cwd, dnnl_convolution_direct, &d->a_src,
                                                                &d->a_dwei, &d->bias, &d->a_dst, d->strides,
                                                                d->pad_l, d->pad_r);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&p->wpd, inner ? (const void *)&iwd : (const void *)&cwd, NULL, e, p->fpd);
    return nn_dnnl_check(ctx, s, inner ? "inner product backward" : "convolution backward");
}

static const dnnl_memory_desc_t *md(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

static const dnnl_memory_desc_t *d_wei_of(const op_plan *p) { return md(p->dpd, dnnl_query_weights_md); }

/* Floats the reorder's target takes in scratch (none when the source is used as it is). */
static size_t staged(const nn_dnnl_reorder *r, const dnnl_memory_desc_t *to)
{
    return r->same ? 0 : ody_arena_round(nn_dnnl_floats(to));
}

/*
 * The fused max pool of plan p: forward and backward pooling on the
 * convolution's output layout f_dst, and the reorders around them.
 */
static ody_status make_pool(nn_dnnl_op *c, dnnl_engine_t e, int n, const dnnl_memory_desc_t *f_dst,
                            const dnnl_memory_desc_t *d_ddst, const dnnl_memory_desc_t *w_ddst, op_plan *p)
{
    ody_ctx *ctx = c->ctx;
    const nn_dnnl_shape *sh = &c->shape;
    int k = sh->pool_k, stride = sh->pool_k;
    dnnl_dims_t dims = {n, sh->conv.oc, sh->conv.win.oh / stride, sh->conv.win.ow / stride};
    dnnl_dims_t strides = {stride, stride}, kernel = {k, k}, zero = {0, 0};
    dnnl_memory_desc_t any, user;
    dnnl_pooling_desc_t fd, bd;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&any, 4, dims, dnnl_f32, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = dnnl_memory_desc_init_by_tag(&user, 4, dims, dnnl_f32, dnnl_nchw);
    if (s == dnnl_success)
        s = dnnl_pooling_forward_desc_init(&fd, dnnl_forward_training, dnnl_pooling_max, f_dst, &any, strides,
                                           kernel, zero, zero);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&p->ppd, &fd, NULL, e, NULL);
    const dnnl_memory_desc_t *pooled = s == dnnl_success ? md(p->ppd, dnnl_query_dst_md) : NULL;
    if (s == dnnl_success)
        s = dnnl_pooling_backward_desc_init(&bd, dnnl_pooling_max, f_dst, pooled, strides, kernel, zero, zero);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&p->pbpd, &bd, NULL, e, p->ppd);
    ody_status st = nn_dnnl_check(ctx, s, "max pooling");
    const dnnl_memory_desc_t *ws = st == ODY_OK ? md(p->ppd, dnnl_query_workspace_md) : NULL;
    if (st == ODY_OK)
        st = nn_dnnl_reorder_make(ctx, pooled, &user, &p->p_out);
    if (st == ODY_OK)
        st = nn_dnnl_reorder_make(ctx, &user, md(p->pbpd, dnnl_query_diff_dst_md), &p->p_dout);
    if (st == ODY_OK)
        st = nn_dnnl_reorder_make(ctx, f_dst, d_ddst, &p->p_to_d);
    if (st == ODY_OK)
        st = nn_dnnl_reorder_make(ctx, f_dst, w_ddst, &p->p_to_w);
    const dnnl_memory_desc_t *descs[] = {f_dst, pooled, ws, md(p->pbpd, dnnl_query_diff_dst_md), f_dst};
    dnnl_memory_t *mems[] = {&p->pm_src, &p->pm_dst, &p->pm_ws, &p->pm_ddst, &p->pm_dsrc};
    for (int i = 0; st == ODY_OK && i < 5; i++)
        st = nn_dnnl_memory(ctx, descs[i], mems[i]);
    if (st == ODY_OK)
        st = nn_dnnl_primitive(ctx, p->ppd, "max pooling forward", &p->pool_fwd);
    if (st == ODY_OK)
        st = nn_dnnl_primitive(ctx, p->pbpd, "max pooling backward", &p->pool_bwd);
    if (st != ODY_OK)
        return st;
    p->kept_dst = ody_arena_round(nn_dnnl_floats(f_dst));
    p->kept_ws = ody_arena_round(nn_dnnl_floats(ws));
    /* forward: pooled; backward: pooled gradient, the conv output's gradient, and the two diff_dst layouts */
    p->fwd_floats += ody_arena_round(nn_dnnl_floats(pooled));
    p->bwd_floats = ody_arena_round(nn_dnnl_floats(&user)) + /* the masked pooled gradient */
                    ody_arena_round(nn_dnnl_floats(md(p->pbpd, dnnl_query_diff_dst_md))) + p->kept_dst +
                    staged(&p->p_to_d, d_ddst) + staged(&p->p_to_w, w_ddst) + staged(&p->d_wei, d_wei_of(p)) +
                    staged(&p->d_dsrc, md(p->dpd, dnnl_query_diff_src_md)) +
                    staged(&p->w_src, md(p->wpd, dnnl_query_src_md)) +
                    ody_arena_round(nn_dnnl_floats(md(p->wpd, dnnl_query_diff_weights_md))) +
                    (p->w_dwei.same ? 0 : ody_arena_round(c->weights)) + ody_arena_round(c->biases);
    return ODY_OK;
}

static ody_status make_plan(nn_dnnl_op *c, int n, op_plan *p)
{
    ody_ctx *ctx = c->ctx;
    dnnl_engine_t e;
    op_descs d;
    ody_status st = nn_dnnl_engine(ctx, &e, NULL);
    if (st == ODY_OK)
        st = make_descs(ctx, &c->shape, n, &d);
    if (st == ODY_OK)
        st = make_forward(ctx, e, &c->shape, &d, p);
    if (st == ODY_OK)
        st = make_backward(ctx, e, &c->shape, &d, p);
    const dnnl_memory_desc_t *f_src = NULL, *f_wei = NULL, *f_dst = NULL, *d_ddst = NULL, *d_wei = NULL,
                             *d_dsrc = NULL, *w_src = NULL, *w_ddst = NULL, *w_dwei = NULL;
    if (st == ODY_OK) {
        f_src = md(p->fpd, dnnl_query_src_md);
        f_wei = md(p->fpd, dnnl_query_weights_md);
        f_dst = md(p->fpd, dnnl_query_dst_md);
        d_ddst = md(p->dpd, dnnl_query_diff_dst_md);
        d_wei = md(p->dpd, dnnl_query_weights_md);
        d_dsrc = md(p->dpd, dnnl_query_diff_src_md);
        w_src = md(p->wpd, dnnl_query_src_md);
        w_ddst = md(p->wpd, dnnl_query_diff_dst_md);
        w_dwei = md(p->wpd, dnnl_query_diff_weights_md);
    }
    struct {
        const dnnl_memory_desc_t *from, *to;
        nn_dnnl_reorder *r;
    } reorders[] = {
        {&d.src, f_src, &p->f_src},   {&d.wei, f_wei, &p->f_wei},   {f_dst, &d.dst, &p->f_dst},
        {&d.dst, d_ddst, &p->d_ddst}, {&d.wei, d_wei, &p->d_wei},   {d_dsrc, &d.src, &p->d_dsrc},
        {&d.src, w_src, &p->w_src},   {&d.dst, w_ddst, &p->w_ddst}, {w_dwei, &d.wei, &p->w_dwei},
    };
    for (size_t i = 0; st == ODY_OK && i < sizeof reorders / sizeof reorders[0]; i++)
        st = nn_dnnl_reorder_make(ctx, reorders[i].from, reorders[i].to, reorders[i].r);
    struct {
        const dnnl_memory_desc_t *desc;
        dnnl_memory_t *m;
    } mems[] = {
        {f_src, &p->f_m_src},   {f_wei, &p->f_m_wei},   {&d.bias, &p->f_m_bias}, {f_dst, &p->f_m_dst},
        {d_ddst, &p->d_m_ddst}, {d_wei, &p->d_m_wei},   {d_dsrc, &p->d_m_dsrc},  {w_src, &p->w_m_src},
        {w_ddst, &p->w_m_ddst}, {w_dwei, &p->w_m_dwei}, {&d.bias, &p->w_m_dbias},
    };
    for (size_t i = 0; st == ODY_OK && i < sizeof mems / sizeof mems[0]; i++)
        st = nn_dnnl_memory(ctx, mems[i].desc, mems[i].m);
    if (st == ODY_OK)
        st = nn_dnnl_primitive(ctx, p->fpd, "convolution forward", &p->fwd);
    if (st == ODY_OK)
        st = nn_dnnl_primitive(ctx, p->dpd, "convolution backward data", &p->bwd_data);
    if (st == ODY_OK)
        st = nn_dnnl_primitive(ctx, p->wpd, "convolution backward weights", &p->bwd_weights);
    if (st != ODY_OK) {
        plan_free(p);
        return st;
    }
    p->n = n;
    p->fwd_floats = staged(&p->f_src, f_src) + staged(&p->f_wei, f_wei) + staged(&p->f_dst, f_dst);
    if (!c->shape.stateless && !p->f_src.same && !p->w_src.same && dnnl_memory_desc_equal(f_src, w_src))
        p->kept_src = staged(&p->f_src, f_src);
    if (c->shape.pool_k) {
        st = make_pool(c, e, n, f_dst, d_ddst, w_ddst, p);
        if (st != ODY_OK)
            plan_free(p);
        return st;
    }
    /* Backward: diff_dst, W, diff_src, then src, diff_dst again (unless the same layout), dW and db. */
    bool shared_ddst = dnnl_memory_desc_equal(d_ddst, w_ddst);
    p->bwd_floats = (c->shape.relu ? ody_arena_round(nn_dnnl_floats(&d.dst)) : 0) + staged(&p->d_ddst, d_ddst) + staged(&p->d_wei, d_wei) + staged(&p->d_dsrc, d_dsrc) +
                    staged(&p->w_src, w_src) + (shared_ddst ? 0 : staged(&p->w_ddst, w_ddst)) +
                    ody_arena_round(nn_dnnl_floats(w_dwei)) +
                    (p->w_dwei.same ? 0 : ody_arena_round(nn_dnnl_floats(&d.wei))) +
                    ody_arena_round(c->biases);
    return ODY_OK;
}

ody_status nn_dnnl_op_create(ody_ctx *ctx, const nn_dnnl_shape *shape, nn_dnnl_op **out)
{
    nn_dnnl_op *c = calloc(1, sizeof *c);
    if (!c)
        return ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for a layer's oneDNN plans");
    c->ctx = ctx;
    c->shape = *shape;
    if (shape->kind == NN_DNNL_INNER_PRODUCT) {
        c->weights = (size_t)shape->out_features * shape->in_features;
        c->outputs = (size_t)shape->out_features;
        c->biases = (size_t)shape->out_features;
    } else {
        const nn_window *w = &shape->conv.win;
        c->weights = (size_t)shape->conv.oc * w->c * w->k * w->k;
        c->outputs = (size_t)shape->conv.oc * w->oh * w->ow;
        c->biases = (size_t)shape->conv.oc;
    }
    c->next_slot = 1;
    *out = c;
    return ODY_OK;
}

void nn_dnnl_op_destroy(nn_dnnl_op *c)
{
    if (!c)
        return;
    for (int i = 0; i < PLAN_SLOTS; i++)
        plan_free(&c->plans[i]);
    free(c->work);
    free(c);
}

ody_status nn_dnnl_op_plan(nn_dnnl_op *c, int max_batch)
{
    op_plan fresh = {0};
    ody_status st = make_plan(c, max_batch, &fresh);
    if (st == ODY_OK)
        st = fit_work(c, &fresh);
    if (st != ODY_OK) {
        plan_free(&fresh);
        return st;
    }
    for (int i = 0; i < PLAN_SLOTS; i++) /* a cached plan of the same n would shadow it */
        if (c->plans[i].n == max_batch)
            plan_free(&c->plans[i]);
    plan_free(&c->plans[0]);
    c->plans[0] = fresh;
    return ODY_OK;
}

const char *nn_dnnl_op_impl(const nn_dnnl_op *c)
{
    return c->plans[0].fpd ? nn_dnnl_impl(c->plans[0].fpd) : "not planned";
}

/*
 * The plan for n in a pass. A plan that cannot be made there is a broken
 * invariant (the prepared plan had the same shapes with more rows; only
 * running out of memory is left): the rank stops with the reason.
 */
/* Grow the staging buffers to what p needs. */
static ody_status fit_work(nn_dnnl_op *c, const op_plan *p)
{
    size_t need = kept_floats(p) + (p->fwd_floats > p->bwd_floats ? p->fwd_floats : p->bwd_floats);
    if (need <= c->work_floats)
        return ODY_OK;
    size_t bytes = (need * sizeof(float) + 63) / 64 * 64;
    float *work = aligned_alloc(64, bytes);
    if (!work)
        return ody_fail(c->ctx, ODY_ERR_NOMEM, "out of memory for %zu bytes of oneDNN staging buffers", bytes);
    free(c->work);
    c->work = work;
    c->work_floats = need;
    return ODY_OK;
}

/* The plan for n, found or made (in a free slot, or the oldest of slots 1..). */
static ody_status find_plan(nn_dnnl_op *c, int n, op_plan **out)
{
    for (int i = 0; i < PLAN_SLOTS; i++)
        if (c->plans[i].n == n) {
            *out = &c->plans[i];
            return ODY_OK;
        }
    op_plan *p = &c->plans[c->next_slot];
    c->next_slot = c->next_slot + 1 < PLAN_SLOTS ? c->next_slot + 1 : 1;
    plan_free(p);
    ody_status st = make_plan(c, n, p);
    if (st == ODY_OK)
        st = fit_work(c, p);
    *out = p;
    return st;
}

ody_status nn_dnnl_op_plan_batch(nn_dnnl_op *c, int n)
{
    op_plan *p;
    return find_plan(c, n, &p);
}

/* A pass's end: its primitives' status as the op's error, naming the layer and the batch. */
static ody_status pass_status(nn_dnnl_op *c, dnnl_status_t s, const char *pass, int n)
{
    if (s == dnnl_success)
        return ODY_OK;
    return ody_fail(c->ctx, s == dnnl_out_of_memory ? ODY_ERR_NOMEM : ODY_ERR_INTERNAL,
                    "%s: oneDNN %s of %d rows failed: %s (status %d)", c->shape.layer, pass, n,
                    nn_dnnl_status_text(s), (int)s);
}

/* The plan for n in a pass, or NULL with the error (naming the layer) on the op's context. */
static op_plan *plan_for(nn_dnnl_op *c, int n)
{
    op_plan *p;
    if (find_plan(c, n, &p) == ODY_OK)
        return p;
    ody_error_prefix(c->ctx, "%s: primitives for %d rows", c->shape.layer, n);
    return NULL;
}

/* The next piece of scratch for what r writes (or the source itself when r is a no-op). */
static void *stage(dnnl_status_t *s, const nn_dnnl_reorder *r, const dnnl_memory_desc_t *to, const void *src,
                   float **cursor)
{
    if (r->same)
        return (void *)src;
    void *at = *cursor;
    *cursor += ody_arena_round(nn_dnnl_floats(to));
    nn_dnnl_reorder_run(s, r, src, at);
    return at;
}

ody_status nn_dnnl_op_forward(nn_dnnl_op *c, const float *w, const float *b, int n, const float *in, float *out)
{
    op_plan *p = plan_for(c, n);
    if (!p)
        return c->ctx->err_status;
    dnnl_status_t s = dnnl_success;
    float *kept = c->work, *cursor = c->work + kept_floats(p);
    void *src;
    if (p->kept_src) {
        src = kept + p->kept_dst + p->kept_ws;
        nn_dnnl_reorder_run(&s, &p->f_src, in, src);
    } else {
        src = stage(&s, &p->f_src, md(p->fpd, dnnl_query_src_md), in, &cursor);
    }
    void *wei = stage(&s, &p->f_wei, md(p->fpd, dnnl_query_weights_md), w, &cursor);
    void *dst = p->pool_fwd ? kept : p->f_dst.same ? out : cursor;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, nn_dnnl_at(p->f_m_src, src)},
                               {DNNL_ARG_WEIGHTS, nn_dnnl_at(p->f_m_wei, wei)},
                               {DNNL_ARG_BIAS, nn_dnnl_at(p->f_m_bias, b)},
                               {DNNL_ARG_DST, nn_dnnl_at(p->f_m_dst, dst)}};
    nn_dnnl_execute(&s, p->fwd, 4, args);
    if (!p->pool_fwd) {
        nn_dnnl_reorder_run(&s, &p->f_dst, dst, out);
        return pass_status(c, s, "forward", n);
    }
    void *pooled = p->p_out.same ? out : cursor;
    dnnl_exec_arg_t pool[3] = {{DNNL_ARG_SRC, nn_dnnl_at(p->pm_src, kept)},
                               {DNNL_ARG_DST, nn_dnnl_at(p->pm_dst, pooled)},
                               {DNNL_ARG_WORKSPACE, nn_dnnl_at(p->pm_ws, kept + p->kept_dst)}};
    nn_dnnl_execute(&s, p->pool_fwd, 3, pool);
    nn_dnnl_reorder_run(&s, &p->p_out, pooled, out);
    return pass_status(c, s, "forward", n);
}

/* The gradient of the convolution's output, in backward data's and backward weights' layouts. */
typedef struct {
    void *data, *weights;
} conv_grads;

/* nn_relu_mask of m elements into the next piece of scratch, which it returns. */
static float *relu_mask_staged(size_t m, const float *out, const float *dout, float **cursor)
{
    float *masked = *cursor;
    *cursor += ody_arena_round(m);
    nn_relu_mask(m, out, dout, masked);
    return masked;
}

/*
 * dst = dout where out > 0, else 0, for (n, c, h, w) tensors in the user's
 * layout, written straight into layout `to` when it is fp32 and either the
 * user's own or channels blocked by B (nChw8c, nChw16c: padding channels
 * set to 0): the relu's backward and the reorder in one pass. False, and
 * nothing written, for any other layout.
 */
static bool mask_into(const dnnl_memory_desc_t *to, int n, int c, int h, int w, const float *out,
                      const float *dout, float *dst)
{
    if (to->data_type != dnnl_f32 || to->format_kind != dnnl_blocked || to->ndims != 4 ||
        to->offset0 != 0 || to->dims[0] != n || to->dims[1] != c || to->padded_dims[0] != n ||
        to->padded_dims[2] != h || to->padded_dims[3] != w)
        return false;
    const dnnl_blocking_desc_t *bd = &to->format_desc.blocking;
    const dnnl_dim_t *st = bd->strides;
    const size_t hw = (size_t)h * (size_t)w;
    if (bd->inner_nblks == 0) {
        if (st[3] != 1 || st[2] != w || st[1] != (dnnl_dim_t)hw || st[0] != (dnnl_dim_t)(c * hw))
            return false;
        nn_relu_mask((size_t)n * (size_t)c * hw, out, dout, dst);
        return true;
    }
    if (bd->inner_nblks != 1 || bd->inner_idxs[0] != 1)
        return false;
    const dnnl_dim_t b = bd->inner_blks[0];
    if (st[3] != b || st[2] != w * b || st[1] != (dnnl_dim_t)hw * b)
        return false;
    const dnnl_dim_t blocks = to->padded_dims[1] / b;
    for (int i = 0; i < n; i++)
        for (dnnl_dim_t cb = 0; cb < blocks; cb++) {
            float *block = dst + i * st[0] + cb * st[1];
            for (dnnl_dim_t ci = 0; ci < b; ci++) {
                dnnl_dim_t ch = cb * b + ci;
                if (ch >= c) {
                    for (size_t q = 0; q < hw; q++)
                        block[q * (size_t)b + (size_t)ci] = 0.0f;
                    continue;
                }
                const float *o = out + ((size_t)i * (size_t)c + (size_t)ch) * hw;
                const float *g = dout + ((size_t)i * (size_t)c + (size_t)ch) * hw;
                for (size_t q = 0; q < hw; q++) {
                    float d = g[q]; /* read always, as in nn_relu_mask */
                    block[q * (size_t)b + (size_t)ci] = o[q] > 0.0f ? d : 0.0f;
                }
            }
        }
    return true;
}

/*
 * Fused pool: dout is the pooled output's gradient. The relu's backward
 * runs on the pooled side: a window's maximum is its argmax's relu output,
 * and the pool sends a gradient to the argmax only, so zeroing dout where
 * the pooled output is 0 masks exactly what masking the conv output's
 * gradient by its relu output would (a quarter of the elements, and no
 * pass over the kept output). The pool's backward then gives the conv
 * output's gradient in the kept output's layout, reordered for each pass
 * that runs (backward data only when need_data).
 */
static conv_grads pooled_grads(dnnl_status_t *s, nn_dnnl_op *c, op_plan *p, int n, const float *out,
                               const float *dout, bool need_data, float **cursor)
{
    float *kept = c->work;
    const nn_window *w = &c->shape.conv.win;
    int k = c->shape.pool_k, oc = c->shape.conv.oc, ph = w->oh / k, pw = w->ow / k;
    const dnnl_memory_desc_t *pool_ddst = md(p->pbpd, dnnl_query_diff_dst_md);
    void *pddst = *cursor;
    if (mask_into(pool_ddst, n, oc, ph, pw, out, dout, pddst)) {
        *cursor += ody_arena_round(nn_dnnl_floats(pool_ddst));
    } else {
        size_t m = (size_t)n * (size_t)oc * (size_t)ph * (size_t)pw;
        pddst = stage(s, &p->p_dout, pool_ddst, relu_mask_staged(m, out, dout, cursor), cursor);
    }
    float *g = *cursor;
    *cursor += p->kept_dst;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, nn_dnnl_at(p->pm_ddst, pddst)},
                               {DNNL_ARG_WORKSPACE, nn_dnnl_at(p->pm_ws, kept + p->kept_dst)},
                               {DNNL_ARG_DIFF_SRC, nn_dnnl_at(p->pm_dsrc, g)}};
    nn_dnnl_execute(s, p->pool_bwd, 3, args);
    const dnnl_memory_desc_t *d_ddst = md(p->dpd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *w_ddst = md(p->wpd, dnnl_query_diff_dst_md);
    conv_grads grads = {0};
    if (need_data)
        grads.data = stage(s, &p->p_to_d, d_ddst, g, cursor);
    grads.weights = need_data && dnnl_memory_desc_equal(d_ddst, w_ddst) ? grads.data
                                                                       : stage(s, &p->p_to_w, w_ddst, g, cursor);
    return grads;
}

/*
 * Alone or with a fused relu: dout in the user's layout, masked by the
 * relu's output, in the layouts of the passes that run (backward data only
 * when need_data). A convolution whose passes share one fp32 layout gets
 * the mask and the reorder in one pass (mask_into).
 */
static conv_grads plain_grads(dnnl_status_t *s, nn_dnnl_op *c, op_plan *p, int n, const float *out,
                              const float *dout, bool need_data, float **cursor)
{
    const dnnl_memory_desc_t *d_ddst = md(p->dpd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *w_ddst = md(p->wpd, dnnl_query_diff_dst_md);
    bool shared = dnnl_memory_desc_equal(d_ddst, w_ddst);
    conv_grads g = {0};
    if (c->shape.relu && c->shape.kind != NN_DNNL_INNER_PRODUCT && (shared || !need_data)) {
        const nn_window *w = &c->shape.conv.win;
        const dnnl_memory_desc_t *to = need_data ? d_ddst : w_ddst;
        float *at = *cursor;
        if (mask_into(to, n, c->shape.conv.oc, w->oh, w->ow, out, dout, at)) {
            *cursor += ody_arena_round(nn_dnnl_floats(to));
            g.weights = at;
            g.data = need_data ? at : NULL;
            return g;
        }
    }
    if (c->shape.relu)
        dout = relu_mask_staged((size_t)n * c->outputs, out, dout, cursor);
    if (need_data)
        g.data = stage(s, &p->d_ddst, d_ddst, dout, cursor);
    g.weights = need_data && shared ? g.data : stage(s, &p->w_ddst, w_ddst, dout, cursor);
    return g;
}

ody_status nn_dnnl_op_backward(nn_dnnl_op *c, const float *w, float *dw, float *db, int n, const float *in,
                               const float *out, const float *dout, float *din)
{
    op_plan *p = plan_for(c, n);
    if (!p)
        return c->ctx->err_status;
    dnnl_status_t s = dnnl_success;
    float *cursor = c->work + kept_floats(p);
    conv_grads g = p->pool_bwd ? pooled_grads(&s, c, p, n, out, dout, din != NULL, &cursor)
                               : plain_grads(&s, c, p, n, out, dout, din != NULL, &cursor);
    if (din) {
        void *wei = stage(&s, &p->d_wei, md(p->dpd, dnnl_query_weights_md), w, &cursor);
        void *dsrc = p->d_dsrc.same ? din : cursor;
        cursor += p->d_dsrc.same ? 0 : ody_arena_round(nn_dnnl_floats(md(p->dpd, dnnl_query_diff_src_md)));
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, nn_dnnl_at(p->d_m_ddst, g.data)},
                                   {DNNL_ARG_WEIGHTS, nn_dnnl_at(p->d_m_wei, wei)},
                                   {DNNL_ARG_DIFF_SRC, nn_dnnl_at(p->d_m_dsrc, dsrc)}};
        nn_dnnl_execute(&s, p->bwd_data, 3, args);
        nn_dnnl_reorder_run(&s, &p->d_dsrc, dsrc, din);
    }
    /* The input as forward staged it (the same batch's forward comes just before), or staged now. */
    void *src = p->kept_src ? c->work + p->kept_dst + p->kept_ws
                            : stage(&s, &p->w_src, md(p->wpd, dnnl_query_src_md), in, &cursor);
    float *dwei = cursor;
    cursor += ody_arena_round(nn_dnnl_floats(md(p->wpd, dnnl_query_diff_weights_md)));
    float *dw_plain = dwei;
    if (!p->w_dwei.same) {
        dw_plain = cursor;
        cursor += ody_arena_round(c->weights);
    }
    float *dbias = cursor;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, nn_dnnl_at(p->w_m_src, src)},
                               {DNNL_ARG_DIFF_DST, nn_dnnl_at(p->w_m_ddst, g.weights)},
                               {DNNL_ARG_DIFF_WEIGHTS, nn_dnnl_at(p->w_m_dwei, dwei)},
                               {DNNL_ARG_DIFF_BIAS, nn_dnnl_at(p->w_m_dbias, dbias)}};
    nn_dnnl_execute(&s, p->bwd_weights, 4, args);
    nn_dnnl_reorder_run(&s, &p->w_dwei, dwei, dw_plain);
    if (s != dnnl_success)
        return pass_status(c, s, "backward", n);
    /* Gradients accumulate (micro-batches, chunks): add this batch's. */
    for (size_t i = 0; i < c->weights; i++)
        dw[i] += dw_plain[i];
    for (size_t o = 0; o < c->biases; o++)
        db[o] += dbias[o];
    return ODY_OK;
}
