/*
 * tensor: shapes, float buffers, views into flat arenas, and conversions
 * between float and the half-precision types (bf16, fp16).
 *
 * Activations are float32 NCHW. A tensor is a view: it never owns memory.
 * Parameters, gradients and each optimizer state are one flat buffer each
 * (an ody_arena); layers hold views into them at the same offsets.
 */
#ifndef ODYSSEY_TENSOR_H
#define ODYSSEY_TENSOR_H

#include "odyssey/core.h"

#define ODY_MAX_DIMS 4

typedef struct {
    int ndim;
    int64_t dims[ODY_MAX_DIMS];
} ody_shape;

/* Shapes of 1 to 4 dimensions. */
ody_shape ody_shape1(int64_t d0);
ody_shape ody_shape2(int64_t d0, int64_t d1);
ody_shape ody_shape3(int64_t d0, int64_t d1, int64_t d2);
ody_shape ody_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Product of the dimensions (1 for ndim 0). */
int64_t ody_shape_numel(const ody_shape *s);
bool ody_shape_equal(const ody_shape *a, const ody_shape *b);
/* Write "1x28x28" into buf; returns buf. */
char *ody_shape_format(const ody_shape *s, char *buf, size_t len);

/* A view: data is owned elsewhere (an arena, a layer's buffer). */
typedef struct {
    float *data;
    ody_shape shape;
} ody_tensor;

/*
 * A flat arena of floats, carved into views by offset. Every view starts on
 * a 64-byte boundary (offsets are multiples of ODY_ARENA_ALIGN floats), so
 * a layer can use aligned SIMD on its parameters.
 */
#define ODY_ARENA_ALIGN 16

typedef struct {
    float *data;
    size_t size;     /* floats in use (a multiple of ODY_ARENA_ALIGN) */
    size_t capacity; /* floats allocated */
} ody_arena;

/* Round n floats up to the arena alignment. */
static inline size_t ody_arena_round(size_t n)
{
    return (n + ODY_ARENA_ALIGN - 1) / ODY_ARENA_ALIGN * ODY_ARENA_ALIGN;
}

/* Allocate an arena of `capacity` floats, zeroed. `what` names it in errors. */
ody_status ody_arena_create(ody_ctx *ctx, ody_arena *arena, size_t capacity, const char *what);
/* Release the arena's memory (an arena never created is fine). */
void ody_arena_destroy(ody_ctx *ctx, ody_arena *arena);
/* Reserve n floats at the end; returns the offset, or SIZE_MAX when full. */
size_t ody_arena_take(ody_arena *arena, size_t n);

/* ------------------------------------------------ half-precision floats */

/*
 * bfloat16 and IEEE fp16 values are held as uint16_t bit patterns, for
 * gradient communication in reduced precision. Conversions from float
 * round to nearest, ties to even; inf stays inf and NaN becomes a quiet
 * NaN of the same sign; the target's subnormals are produced. fp16
 * overflows to inf from 65520 up (its largest finite value is 65504);
 * bf16 has float's range and overflows only at its very top (from
 * 3.3962e38, halfway past its largest finite value 3.3895e38). Conversions to float are exact (NaN payloads kept).
 * The arrays must not overlap; the loops are branch-free and vectorisable,
 * and no conversion depends on the flush-to-zero settings of the
 * floating-point environment.
 */
void ody_f32_to_bf16(const float *in, uint16_t *out, size_t n);
void ody_bf16_to_f32(const uint16_t *in, float *out, size_t n);
void ody_f32_to_f16(const float *in, uint16_t *out, size_t n);
void ody_f16_to_f32(const uint16_t *in, float *out, size_t n);
/*
 * inout[i] = in[i] + inout[i], added in float and rounded once to the
 * half type: the body of an MPI_SUM user op over bf16 / fp16 buffers (in
 * and inout may not overlap). The sum is correctly rounded (float holds
 * more than twice the bits of either type).
 */
void ody_bf16_sum(const uint16_t *in, uint16_t *inout, size_t n);
void ody_f16_sum(const uint16_t *in, uint16_t *inout, size_t n);

#endif /* ODYSSEY_TENSOR_H */
