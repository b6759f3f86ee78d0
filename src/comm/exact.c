/*
 * comm: exact, order-free gradient sums for deterministic mode.
 *
 * Every chunk's float gradient is added into an int64 accumulator as fixed
 * point: element e of tensor t becomes round(g * 2^s[t]), rounding to
 * nearest-even, exactly (via a double and the 2^52 + 2^51 bit trick, valid
 * while |g * 2^s| < 2^51). Integer addition is associative, so the sum
 * over chunks and ranks (MPI_SUM on int64) has the same bits whatever the
 * order and the number of ranks.
 *
 * The scale s[t] is a power of two chosen so that the largest chunk value
 * times the number of chunks in a step stays below 2^51: from the global
 * per-tensor maxima of the previous step (an MPI_MAX allreduce each step)
 * with 2^4 of headroom. A step whose values outgrow it is reported as an
 * overflow and redone by the caller with the scale taken from that step's
 * own maxima, which then fits. Precision: at least 51 - 4 - log2(chunks)
 * bits relative to the tensor's largest value (44 bits with 8 chunks),
 * against float's 24; values below that are rounded to the quantum.
 *
 * The sum across ranks goes through node shared memory (src/comm/shm.c)
 * when it can: each finished bucket is added into the node's sum at once,
 * and the maxima ride along. Otherwise (distributed.shared_memory false, or
 * no room in /dev/shm) through MPI_Iallreduce, bucket by bucket. Integer
 * sums: both give the same bits.
 */
#include "odyssey/comm.h"

#include "comm/comm_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_internal.h"
/* The AVX2 loops are compiled for AVX2 and FMA (target attributes: the build
 * targets the architecture's baseline) and run where the CPU has it. */
#ifdef ODY_X86_KERNELS
#include <immintrin.h>
#define EXACT_AVX2 __attribute__((target("avx2,fma")))
#endif

#define EXACT_BITS 51      /* |value| < 2^51: the conversion trick's range */
#define EXACT_HEADROOM 4   /* growth tolerated from one step to the next: 2^4 */
#define EXACT_FIRST_SCALE 40 /* before any maximum is known (values up to ~2^7 fit) */

struct ody_exact {
    ody_ctx *ctx;
    const ody_model *model;
    size_t n;             /* floats of the gradient arena */
    int64_t *acc;         /* (n) this rank's fixed-point sum of its chunks */
    int ntensors;
    int *scale;           /* (ntensors) exponent s of each tensor */
    float *local_max;     /* (ntensors + 2): max |g| per tensor, then overflow, non-finite */
    float *global_max;
    bool *fresh;          /* (ntensors) no chunk of this step added into the tensor's acc yet */
    int64_t chunks;       /* chunks in the step (all ranks), for the bound */
    /* the sum goes out in buckets of whole layers, started from the last
     * chunk's backward as its layers finish (see ody_exact_layer_ready) */
    int nbuckets, next;
    ody_bucket *buckets;
    int *layer_tensor;    /* (nlayers + 1) first tensor index of each layer */
    MPI_Request max_req;  /* the maxima's MPI_MAX, started once every tensor is added */
    ody_shm *shm;         /* the node's shared sum, or NULL: MPI */
    ody_vote *carry;      /* a step vote riding in the next shared round */
    void (*busy)(void *); /* work for the next shared round's wait, or NULL */
    void *busy_arg;
    bool sleepy;
    uint64_t bytes_sent;
    ody_status error;
};

/*
 * Tensor t of the layout belongs to layer l when layer_tensor[l] <= t <
 * layer_tensor[l + 1]. The buffers (after every trainable tensor; their
 * gradient slots hold statistics written in forward) go with the last
 * layer, whose gradients are ready first.
 */
static int *map_layer_tensors(const ody_model *m)
{
    int *first = calloc((size_t)m->nlayers + 1, sizeof *first);
    if (!first)
        return NULL;
    int t = 0;
    for (int l = 0; l < m->nlayers; l++) {
        first[l] = t;
        for (int p = 0; p < m->layers[l]->nparams; p++)
            t += !m->layers[l]->params[p].buffer;
    }
    first[m->nlayers] = m->ntensors;
    return first;
}

/* Buckets, and with `shared` the node segment: collective then, after
 * agreeing on every rank's status so far (st). */
static ody_status plan(ody_ctx *ctx, ody_exact *e, size_t bucket_bytes, bool shared, ody_status st)
{
    e->nbuckets = ody_plan_buckets(e->model, bucket_bytes / sizeof(int64_t), &e->buckets);
    e->layer_tensor = map_layer_tensors(e->model);
    if (st == ODY_OK && (e->nbuckets < 0 || !e->layer_tensor))
        st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for exact reduction");
    e->sleepy = ody_ranks_outnumber_cores(ctx);
    /* all ranks on to the segment, or none */
    if (shared && (st = ody_comm_agree(ctx, st)) == ODY_OK)
        st = ody_shm_create(ctx, e->n, e->ntensors + 2, ODY_VOTE_COUNT, &e->shm);
    return st;
}

ody_status ody_exact_create(ody_ctx *ctx, const ody_model *model, size_t bucket_bytes,
                            bool shared_memory, ody_exact **out)
{
    *out = NULL;
    ody_exact *e = calloc(1, sizeof *e);
    if (!e) { /* the others may be on their way to the node segment: agree */
        ody_status st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for exact reduction");
        return shared_memory ? ody_comm_agree(ctx, st) : st;
    }
    e->ctx = ctx;
    e->model = model;
    e->n = model->grads.size;
    e->ntensors = model->ntensors;
    void *acc = NULL;
    ody_status st = ody_alloc(ctx, e->n * sizeof(int64_t), "fixed-point gradients", &acc);
    e->acc = acc;
    e->scale = calloc((size_t)e->ntensors + 1, sizeof *e->scale);
    e->local_max = calloc((size_t)e->ntensors + 2, sizeof *e->local_max);
    e->global_max = calloc((size_t)e->ntensors + 2, sizeof *e->global_max);
    e->fresh = calloc((size_t)e->ntensors + 1, sizeof *e->fresh);
    if (st == ODY_OK && (!e->scale || !e->local_max || !e->global_max || !e->fresh))
        st = ody_fail(ctx, ODY_ERR_NOMEM, "out of memory for exact reduction");
    if (st == ODY_OK || shared_memory) /* plan agrees on st before any collective */
        st = plan(ctx, e, bucket_bytes, shared_memory, st);
    if (st != ODY_OK) {
        ody_exact_destroy(ctx, e);
        return st;
    }
    for (int t = 0; t < e->ntensors; t++)
        e->scale[t] = EXACT_FIRST_SCALE;
    e->max_req = MPI_REQUEST_NULL;
    *out = e;
    return ODY_OK;
}

void ody_exact_destroy(ody_ctx *ctx, ody_exact *e)
{
    if (!e)
        return;
    ody_free(ctx, e->acc, e->n * sizeof(int64_t));
    ody_shm_destroy(e->shm);
    free(e->scale);
    free(e->buckets);
    free(e->layer_tensor);
    free(e->local_max);
    free(e->global_max);
    free(e->fresh);
    free(e);
}

void ody_exact_begin(ody_exact *e, int64_t chunks)
{
    /* Nothing is cleared: the step's first chunk stores into each tensor's
     * acc, the later ones add, and a tensor no chunk of this rank reached
     * is zeroed before it is sent (zero_fresh). The gaps between tensors
     * are never written: zero from the allocation (and the sums of zeros). */
    for (int t = 0; t < e->ntensors; t++)
        e->fresh[t] = true;
    memset(e->local_max, 0, ((size_t)e->ntensors + 2) * sizeof *e->local_max);
    e->chunks = chunks > 0 ? chunks : 1;
    e->next = 0;
    e->max_req = MPI_REQUEST_NULL;
}

/* round(x) for |x| < 2^51, exactly, branch-free (vectorisable): adding
 * 1.5 * 2^52 leaves the integer in the low mantissa bits. */
static inline int64_t round_exact(double x)
{
    const double magic = 6755399441055744.0; /* 2^52 + 2^51 */
    double y = x + magic;
    int64_t bits;
    memcpy(&bits, &y, sizeof bits);
    /* In unsigned arithmetic: out of range (an overflow or a non-finite
     * value, both detected and the sum discarded) it wraps instead of
     * being undefined; in range it is the same two's complement value. */
    return (int64_t)((uint64_t)bits - 0x4338000000000000ULL);
}

#ifdef EXACT_AVX2
/* add_tensor's whole vectors of eight; returns how many floats it took. */
EXACT_AVX2 static size_t add_tensor_avx2(int64_t *restrict acc, float *restrict g, size_t n, double scale,
                                         bool fresh, float *max_out, bool *bad_out)
{
    size_t i = 0;
    float max = 0.0f;
    /* Eight at a time: |g| for the max, |g| >= inf or NaN for the check, and
     * the same round-to-nearest-even through the magic constant in two
     * halves of four doubles (x * 2^s is exact, so x * 2^s + magic in one
     * FMA rounds once, as the scalar path's add does: the same bits). */
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    const __m256d vscale = _mm256_set1_pd(scale);
    const __m256d vmagic = _mm256_set1_pd(6755399441055744.0);
    const __m256i vbias = _mm256_set1_epi64x(0x4338000000000000LL);
    __m256 vmax = _mm256_setzero_ps(), vbad = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 a = _mm256_andnot_ps(sign, x);
        vmax = _mm256_max_ps(vmax, a);
        vbad = _mm256_or_ps(vbad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
        for (int h = 0; h < 2; h++) {
            __m128 half = h ? _mm256_extractf128_ps(x, 1) : _mm256_castps256_ps128(x);
            __m256d y = _mm256_fmadd_pd(_mm256_cvtps_pd(half), vscale, vmagic);
            __m256i q = _mm256_sub_epi64(_mm256_castpd_si256(y), vbias);
            __m256i *dst = (__m256i *)(acc + i + 4 * h);
            _mm256_storeu_si256(dst, fresh ? q : _mm256_add_epi64(_mm256_loadu_si256(dst), q));
        }
        _mm256_storeu_ps(g + i, _mm256_setzero_ps());
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++)
        max = lanes[l] > max ? lanes[l] : max;
    *max_out = max;
    *bad_out = _mm256_movemask_ps(vbad) != 0;
    return i;
}
#endif

#ifdef ODY_TARGET_AVX512
/* add_tensor_avx2's loop 16 floats at a time (the same operations on each
 * element: the same bits); returns how many floats it took. */
ODY_TARGET_AVX512 static size_t add_tensor_avx512(int64_t *restrict acc, float *restrict g, size_t n, double scale,
                                                bool fresh, float *max_out, bool *bad_out)
{
    size_t i = 0;
    const __m512 inf = _mm512_set1_ps(INFINITY);
    const __m512d vscale = _mm512_set1_pd(scale), vmagic = _mm512_set1_pd(6755399441055744.0);
    const __m512i vbias = _mm512_set1_epi64(0x4338000000000000LL);
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i), a = _mm512_abs_ps(x);
        vmax = _mm512_max_ps(vmax, a);
        bad |= _mm512_cmp_ps_mask(a, inf, _CMP_NLT_UQ);
        for (int h = 0; h < 2; h++) {
            __m256 half = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), h));
            __m512d y = _mm512_fmadd_pd(_mm512_cvtps_pd(half), vscale, vmagic);
            __m512i q = _mm512_sub_epi64(_mm512_castpd_si512(y), vbias);
            int64_t *dst = acc + i + 8 * h;
            _mm512_storeu_si512(dst, fresh ? q : _mm512_add_epi64(_mm512_loadu_si512(dst), q));
        }
        _mm512_storeu_ps(g + i, _mm512_setzero_ps());
    }
    *max_out = _mm512_reduce_max_ps(vmax); /* a max: exact in any order */
    *bad_out = bad != 0;
    return i;
}
#endif

/* Add one tensor's chunk gradient into acc (store it, when fresh: the
 * step's first) and clear g (the next chunk's backward accumulates into it
 * from zero), in one pass; returns its max |g|, or NaN when some value is
 * not finite (the step's sum is then discarded by the caller, whatever was
 * added). */
static float add_tensor(int64_t *restrict acc, float *restrict g, size_t n, int s, bool fresh)
{
    const double scale = ldexp(1.0, s);
    float max = 0.0f;
    bool bad = false;
    size_t i = 0;
#ifdef ODY_TARGET_AVX512
    if (ody_cpu_isa_active() >= ODY_ISA_AVX512)
        i = add_tensor_avx512(acc, g, n, scale, fresh, &max, &bad);
#endif
#ifdef EXACT_AVX2
    if (i == 0 && ody_cpu_isa_active() >= ODY_ISA_AVX2)
        i = add_tensor_avx2(acc, g, n, scale, fresh, &max, &bad);
#endif
    for (; i < n; i++) {
        float a = fabsf(g[i]);
        bad |= !(a < INFINITY);
        max = a > max ? a : max;
        uint64_t q = (uint64_t)round_exact((double)g[i] * scale);
        acc[i] = (int64_t)(fresh ? q : (uint64_t)acc[i] + q);
        g[i] = 0.0f;
    }
    return bad ? NAN : max;
}

/* Add tensors [first, last) of one chunk's gradients. */
static void add_tensors(ody_exact *e, float *grads, int first, int last)
{
    const double limit = ldexp(1.0, EXACT_BITS) / (double)e->chunks;
    for (int t = first; t < last; t++) {
        const ody_param *p = e->model->tensors[t];
        size_t n = (size_t)ody_shape_numel(&p->shape);
        float max = add_tensor(e->acc + p->offset, grads + p->offset, n, e->scale[t], e->fresh[t]);
        e->fresh[t] = false;
        if (isnan(max)) {
            e->local_max[e->ntensors + 1] = 1.0f;
            continue;
        }
        if ((double)max * ldexp(1.0, e->scale[t]) >= limit)
            e->local_max[e->ntensors] = 1.0f;
        if (max > e->local_max[t])
            e->local_max[t] = max;
    }
}

void ody_exact_add(ody_exact *e, float *grads) { add_tensors(e, grads, 0, e->ntensors); }

void ody_exact_add_layer(ody_exact *e, float *grads, int layer)
{
    add_tensors(e, grads, e->layer_tensor[layer], e->layer_tensor[layer + 1]);
}

/* The maxima (and the overflow and non-finite flags) go out once every
 * tensor of the step has been added, behind the last bucket. */
static void start_maxima(ody_exact *e)
{
    if (MPI_Iallreduce(e->local_max, e->global_max, e->ntensors + 2, MPI_FLOAT, MPI_MAX,
                       e->ctx->comm, &e->max_req) != MPI_SUCCESS &&
        e->error == ODY_OK)
        e->error = ody_fail(e->ctx, ODY_ERR_MPI, "exact reduction: maxima allreduce failed");
}

/* acc of the tensors in [begin, end) that no chunk of this rank reached
 * in this step (it had no chunk, or failed before its chunks) to zero. */
static void zero_fresh(ody_exact *e, size_t begin, size_t end)
{
    for (int t = 0; t < e->ntensors; t++) {
        const ody_param *p = e->model->tensors[t];
        if (e->fresh[t] && p->offset >= begin && p->offset < end) {
            memset(e->acc + p->offset, 0, (size_t)ody_shape_numel(&p->shape) * sizeof *e->acc);
            e->fresh[t] = false;
        }
    }
}

static void start_bucket(ody_exact *e, ody_bucket *b)
{
    zero_fresh(e, b->begin, b->end);
    int count = (int)(b->end - b->begin);
    e->bytes_sent += (uint64_t)count * sizeof(int64_t);
    if (e->shm) { /* into the node's sum now; nothing to wait for but the barrier */
        ody_shm_add(e->shm, e->acc, b->begin, b->end);
        return;
    }
    if (MPI_Iallreduce(MPI_IN_PLACE, e->acc + b->begin, count, MPI_INT64_T, MPI_SUM, e->ctx->comm,
                       &b->req) != MPI_SUCCESS &&
        e->error == ODY_OK)
        e->error = ody_fail(e->ctx, ODY_ERR_MPI, "exact gradient allreduce of %d values failed",
                            count);
}

void ody_exact_layer_ready(void *exact, int layer)
{
    ody_exact *e = exact;
    float *grads = e->model->grads.data;
    add_tensors(e, grads, e->layer_tensor[layer], e->layer_tensor[layer + 1]);
    bool all_sent = e->next == e->nbuckets;
    while (e->next < e->nbuckets && e->buckets[e->next].ready_layer >= layer)
        start_bucket(e, &e->buckets[e->next++]);
    if (e->shm) /* the maxima go with the meeting; nothing for MPI to progress */
        return;
    /* The last bucket holds the lowest layer with parameters: nothing is
     * added after it, so the maxima are final. */
    if (!all_sent && e->next == e->nbuckets)
        start_maxima(e);
    ody_progress_buckets(e->buckets, e->next);
}

uint64_t ody_exact_bytes_sent(const ody_exact *e) { return e->bytes_sent; }

bool ody_exact_shared(const ody_exact *e) { return e->shm != NULL; }

void ody_exact_while_waiting(ody_exact *e, void (*busy)(void *), void *arg)
{
    e->busy = e->shm ? busy : NULL;
    e->busy_arg = arg;
}

bool ody_exact_carry_vote(ody_exact *e, ody_vote *vote)
{
    if (!e->shm)
        return false;
    e->carry = vote;
    vote->req = MPI_REQUEST_NULL; /* ody_vote_finish finds it complete */
    vote->started = true;
    return true;
}

/* Shared memory: the round's maxima (and a carried vote) join the sum,
 * and the ranks meet. */
static ody_status meet_shared(ody_exact *e)
{
    ody_shm_merge(e->shm, e->local_max, e->carry ? e->carry->local : NULL);
    ody_status st = ody_shm_wait(e->shm, e->busy, e->busy_arg);
    e->busy = NULL;
    memcpy(e->global_max, ody_shm_max(e->shm), ((size_t)e->ntensors + 2) * sizeof(float));
    if (e->carry)
        memcpy(e->carry->total, ody_shm_count(e->shm), sizeof e->carry->total);
    e->carry = NULL;
    return st;
}

/* Start the buckets and the maxima not started yet and wait for all of
 * them. */
static ody_status sum_buckets(ody_exact *e)
{
    /* layer_ready started the maxima with the last bucket, if it got there */
    bool maxima_due = e->next < e->nbuckets || e->nbuckets == 0;
    while (e->next < e->nbuckets)
        start_bucket(e, &e->buckets[e->next++]);
    if (e->shm)
        return meet_shared(e);
    if (maxima_due)
        start_maxima(e);
    for (int i = 0; i < e->nbuckets; i++) {
        if (ody_wait_request(&e->buckets[i].req, e->sleepy) != MPI_SUCCESS && e->error == ODY_OK)
            e->error = ody_fail(e->ctx, ODY_ERR_MPI, "waiting for exact gradient bucket %d failed", i);
    }
    if (ody_wait_request(&e->max_req, e->sleepy) != MPI_SUCCESS && e->error == ODY_OK)
        e->error = ody_fail(e->ctx, ODY_ERR_MPI, "waiting for the exact reduction's maxima failed");
    ody_status st = e->error;
    e->error = ODY_OK;
    return st;
}

#ifdef EXACT_AVX2
/* unscale_tensor's whole vectors of four; returns how many it took. */
EXACT_AVX2 static size_t unscale_tensor_avx2(const int64_t *sum, float *restrict g, size_t n, double unscale)
{
    size_t i = 0;
    const __m256d vunscale = _mm256_set1_pd(unscale);
    const __m256d vmagic = _mm256_set1_pd(6755399441055744.0);
    const __m256i vbias = _mm256_set1_epi64x(0x4338000000000000LL);
    for (; i + 4 <= n; i += 4) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(sum + i));
        __m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(q, vbias)), vmagic);
        _mm_storeu_ps(g + i, _mm256_cvtpd_ps(_mm256_mul_pd(d, vunscale)));
    }
    return i;
}
#endif

#ifdef ODY_TARGET_AVX512
/* unscale_tensor_avx2's loop eight at a time (the same bits). */
ODY_TARGET_AVX512 static size_t unscale_tensor_avx512(const int64_t *sum, float *restrict g, size_t n, double unscale)
{
    size_t i = 0;
    const __m512d vunscale = _mm512_set1_pd(unscale), vmagic = _mm512_set1_pd(6755399441055744.0);
    const __m512i vbias = _mm512_set1_epi64(0x4338000000000000LL);
    for (; i + 8 <= n; i += 8) {
        __m512i q = _mm512_loadu_si512(sum + i);
        __m512d d = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_add_epi64(q, vbias)), vmagic);
        _mm256_storeu_ps(g + i, _mm512_cvtpd_ps(_mm512_mul_pd(d, vunscale)));
    }
    return i;
}
#endif

/* g = sum * 2^-s rounded once to float. |sum| < 2^51, so the double is
 * exact (the magic constant again). */
static void unscale_tensor(const int64_t *sum, float *restrict g, size_t n, int s)
{
    const double unscale = ldexp(1.0, -s);
    size_t i = 0;
#ifdef ODY_TARGET_AVX512
    if (ody_cpu_isa_active() >= ODY_ISA_AVX512)
        i = unscale_tensor_avx512(sum, g, n, unscale);
#endif
#ifdef EXACT_AVX2
    if (i == 0 && ody_cpu_isa_active() >= ODY_ISA_AVX2)
        i = unscale_tensor_avx2(sum, g, n, unscale);
#endif
    for (; i < n; i++)
        g[i] = (float)((double)sum[i] * unscale);
}

/* The exponent that puts chunks * 2^headroom * max below 2^51. */
static int scale_for(float max, int64_t chunks)
{
    if (!(max > 0.0f))
        return EXACT_FIRST_SCALE;
    int exp_max = 0;
    frexp((double)max * (double)chunks, &exp_max); /* max * chunks < 2^exp_max */
    return EXACT_BITS - EXACT_HEADROOM - exp_max;
}

ody_status ody_exact_wait(ody_exact *e, bool *redo, bool *nonfinite)
{
    /* The sum and the maxima that say whether it is usable (both mostly
     * under way since backward); a sum that overflowed is thrown away. */
    ody_wait_begin(e->ctx, ODY_WAIT_GRADIENTS);
    ody_status st = sum_buckets(e);
    ody_wait_end(e->ctx);
    if (st != ODY_OK)
        return st;
    *nonfinite = e->global_max[e->ntensors + 1] != 0.0f;
    *redo = !*nonfinite && e->global_max[e->ntensors] != 0.0f;
    return ODY_OK;
}

ody_status ody_exact_finish(ody_exact *e, float *grads, bool *redo, bool *nonfinite)
{
    ody_status st = ody_exact_wait(e, redo, nonfinite);
    if (st == ODY_OK && !*nonfinite)
        ody_exact_read(e, grads, *redo);
    return st;
}

void ody_exact_read(ody_exact *e, float *grads, bool redo)
{
    /* The node's shared sum, or acc itself (the sum MPI left there). */
    const int64_t *sum = e->shm ? ody_shm_sum(e->shm) : e->acc;
    for (int t = 0; t < e->ntensors; t++) {
        const ody_param *p = e->model->tensors[t];
        if (!redo)
            unscale_tensor(sum + p->offset, grads + p->offset, (size_t)ody_shape_numel(&p->shape), e->scale[t]);
        /* The next step's scale (or this one's again, when redone). */
        if (e->global_max[t] > 0.0f)
            e->scale[t] = scale_for(e->global_max[t], e->chunks);
    }
}

int ody_exact_tensors(const ody_exact *e) { return e->ntensors; }

void ody_exact_save(const ody_exact *e, double *v)
{
    for (int t = 0; t < e->ntensors; t++)
        v[t] = e->scale[t];
}

void ody_exact_load(ody_exact *e, const double *v, int n)
{
    for (int t = 0; t < e->ntensors && t < n; t++)
        e->scale[t] = (int)v[t];
}
