/*
 * tensor: float <-> bfloat16 / IEEE fp16, and the half-precision sums.
 *
 * Every conversion works on the bit patterns with integer arithmetic
 * (selects instead of branches), so the loops vectorise and denormal
 * flushing in the floating-point environment cannot change a result.
 * Rounding is to nearest, ties to even, done by adding half a unit of the
 * dropped bits (minus one, plus the kept lowest bit) and truncating: a
 * carry out of the significand bumps the exponent, and into inf on
 * overflow, as IEEE rounding does.
 */
#include "odyssey/tensor.h"

#include <string.h>

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------- bf16 */

/* bf16 is float's upper half: round away the lower 16 bits; NaN -> quiet NaN, same sign. */
static inline uint16_t to_bf16(float f)
{
    uint32_t u = bits_of(f);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

static inline float from_bf16(uint16_t h)
{
    return float_of((uint32_t)h << 16);
}

/* ---------------------------------------------------------------- fp16 */

/*
 * |f| (bits a) as a normal fp16: exponent rebiased from 127 to 15, 13
 * significand bits rounded away. Meaningful for 2^-14 <= |f| < 65536.
 */
static inline uint32_t f16_normal(uint32_t a)
{
    return (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
}

/*
 * |f| (bits a) as an fp16 subnormal: the 24-bit significand m scaled so
 * that one unit is 2^-24, i.e. m >> (126 - exponent), rounded. Meaningful
 * for |f| < 2^-14; the shift is capped at 25, past which everything
 * rounds to 0 (m < 2^24), and floored at 1 for inputs it does not serve.
 */
static inline uint32_t f16_subnormal(uint32_t a)
{
    int32_t shift = 126 - (int32_t)(a >> 23);
    shift = shift > 25 ? 25 : shift < 1 ? 1 : shift;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    return (m + ((1u << (shift - 1)) - 1u) + ((m >> shift) & 1u)) >> shift;
}

static inline uint16_t to_f16(float f)
{
    uint32_t u = bits_of(f);
    uint32_t a = u & 0x7fffffffu, sign = (u >> 16) & 0x8000u;
    uint32_t h = a < 0x38800000u ? f16_subnormal(a) : f16_normal(a);
    h = a >= 0x47800000u ? 0x7c00u : h; /* |f| >= 65536 (and inf); 65520..65536 carry into inf */
    h = a > 0x7f800000u ? 0x7e00u : h;  /* NaN */
    return (uint16_t)(h | sign);
}

static inline float from_f16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t normal = ((e + 112u) << 23) | (m << 13);
    uint32_t special = 0x7f800000u | (m << 13);      /* inf, NaN with its payload */
    uint32_t subnormal = bits_of((float)m * 0x1p-24f); /* exact: a normal float */
    uint32_t bits = e == 31 ? special : normal;
    /* A mask, not ?:, keeps the float multiply unconditional (else it is not if-converted). */
    uint32_t is_subnormal = 0u - (uint32_t)(e == 0);
    bits = (subnormal & is_subnormal) | (bits & ~is_subnormal);
    return float_of(bits | sign);
}

/* ------------------------------------------------------------- arrays */

void ody_f32_to_bf16(const float *restrict in, uint16_t *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = to_bf16(in[i]);
}

void ody_bf16_to_f32(const uint16_t *restrict in, float *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = from_bf16(in[i]);
}

void ody_f32_to_f16(const float *restrict in, uint16_t *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = to_f16(in[i]);
}

void ody_f16_to_f32(const uint16_t *restrict in, float *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = from_f16(in[i]);
}

void ody_bf16_sum(const uint16_t *restrict in, uint16_t *restrict inout, size_t n)
{
    for (size_t i = 0; i < n; i++)
        inout[i] = to_bf16(from_bf16(in[i]) + from_bf16(inout[i]));
}

void ody_f16_sum(const uint16_t *restrict in, uint16_t *restrict inout, size_t n)
{
    for (size_t i = 0; i < n; i++)
        inout[i] = to_f16(from_f16(in[i]) + from_f16(inout[i]));
}
