/*
 * Unit tests: tensor's half-precision conversions (bf16, fp16) and sums.
 *
 * Conversions to float are checked against a reference built from the
 * formats' definitions (ldexp), exhaustively over all 65536 patterns;
 * conversions from float by the defining property of round-to-nearest-even
 * over many floats, and by cases whose results PyTorch 1.13 printed
 * (torch.tensor(x).half() / .bfloat16(), viewed as int16).
 */
#include "ody_test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odyssey/tensor.h"

#define COUNT(array) (sizeof(array) / sizeof(array)[0])

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The value of an fp16 pattern from its definition. */
static double f16_value(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

static uint16_t to_f16(float x)
{
    uint16_t h;
    ody_f32_to_f16(&x, &h, 1);
    return h;
}

static uint16_t to_bf16(float x)
{
    uint16_t h;
    ody_f32_to_bf16(&x, &h, 1);
    return h;
}

enum { PATTERNS = 65536 };

/* Every 16-bit pattern (h[i] = i), widened to f, and f narrowed back to back. */
static void convert_every_pattern(void (*widen)(const uint16_t *, float *, size_t),
                                  void (*narrow)(const float *, uint16_t *, size_t), uint16_t *h,
                                  float *f, uint16_t *back)
{
    for (int i = 0; i < PATTERNS; i++)
        h[i] = (uint16_t)i;
    widen(h, f, PATTERNS);
    narrow(f, back, PATTERNS);
}

/* ---------------------------------------------------------------- fp16 */

static void test_f16_to_f32_is_exact_everywhere(void **state)
{
    (void)state;
    static uint16_t h[PATTERNS], back[PATTERNS];
    static float f[PATTERNS];
    convert_every_pattern(ody_f16_to_f32, ody_f32_to_f16, h, f, back);
    for (int i = 0; i < PATTERNS; i++) {
        double want = f16_value(h[i]);
        if (isnan(want)) {
            assert_true(isnan(f[i]) && !signbit(f[i]) == !(i >> 15));
            assert_true((back[i] & 0x7c00) == 0x7c00 && (back[i] & 0x3ff) != 0); /* still NaN */
        } else if (!((double)f[i] == want && !signbit(f[i]) == !signbit(want) && back[i] == h[i])) {
            fail_msg("fp16 0x%04x: got %.9g (back 0x%04x), want %.9g", i, (double)f[i],
                     back[i], want);
        }
    }
}

/* h is the fp16 nearest to x, ties to the even pattern (x finite, |x| < 65520). */
static void expect_nearest_f16(float x, uint16_t h)
{
    double v = f16_value(h), err = fabs(v - x);
    for (int d = -1; d <= 1; d += 2) {
        uint16_t n = (uint16_t)(h + d);
        if ((n & 0x7fff) > 0x7bff || (n >> 15) != (h >> 15))
            continue; /* past the largest finite value or across zero */
        double other = fabs(f16_value(n) - x);
        if (other < err || (other == err && (h & 1)))
            fail_msg("%.9g -> 0x%04x (%.9g), but 0x%04x (%.9g) is nearer or even", (double)x, h,
                     v, n, f16_value(n));
    }
}

static void test_f32_to_f16_rounds_to_nearest_even(void **state)
{
    (void)state;
    /* Every float bit pattern in steps that hit all exponents and many significands. */
    for (uint64_t u = 0; u < 0x477ff000u; u += 4093) {
        float x = float_of((uint32_t)u);
        expect_nearest_f16(x, to_f16(x));
        expect_nearest_f16(-x, to_f16(-x));
    }
    /* Exact ties at every fp16 exponent: halfway between consecutive values. */
    for (uint16_t h = 0; h < 0x7bff; h += 7) {
        float mid = (float)((f16_value(h) + f16_value((uint16_t)(h + 1))) / 2);
        uint16_t got = to_f16(mid);
        assert_int_equal(got, (h & 1) ? h + 1 : h);
    }
}

typedef struct {
    float x;
    uint16_t want;
} f16_case;

static void test_f16_special_values_match_pytorch(void **state)
{
    (void)state;
    const f16_case cases[] = {
        {65504.0f, 0x7bff},  {65519.0f, 0x7bff},          {65520.0f, 0x7c00},
        {1e6f, 0x7c00},      {1.0f + 0x1p-11f, 0x3c00},   {1.0f + 0x3p-11f, 0x3c02},
        {0x1p-24f, 0x0001},  {0x1p-25f, 0x0000},          {0x3p-25f, 0x0002},
        {0x1.ffcp-15f, 0x0400} /* 1023.5 x 2^-24 */,       {0x1p-14f, 0x0400},
        {1e-40f, 0x0000},    {-0.0f, 0x8000},             {-2.5f, 0xc100},
        {0.1f, 0x2e66},      {3.14159265f, 0x4248},       {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00}, {-65520.0f, 0xfc00},         {FLT_MAX, 0x7c00},
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        if (to_f16(cases[i].x) != cases[i].want)
            fail_msg("%a -> 0x%04x, want 0x%04x", (double)cases[i].x, to_f16(cases[i].x),
                     cases[i].want);
    assert_int_equal(to_f16(NAN), 0x7e00);
    assert_int_equal(to_f16(-NAN), 0xfe00);
    assert_int_equal(to_f16(float_of(0x7f800001u)), 0x7e00); /* a NaN never becomes inf */
}

/* ---------------------------------------------------------------- bf16 */

static void test_bf16_round_trip_and_rounding(void **state)
{
    (void)state;
    static uint16_t h[PATTERNS], back[PATTERNS];
    static float f[PATTERNS];
    convert_every_pattern(ody_bf16_to_f32, ody_f32_to_bf16, h, f, back);
    for (int i = 0; i < PATTERNS; i++) {
        assert_int_equal(bits_of(f[i]), (uint32_t)i << 16);
        bool nan = (i & 0x7f80) == 0x7f80 && (i & 0x7f) != 0;
        assert_int_equal(back[i], nan ? (i | 0x40) : i);
    }
    /* Round to nearest even on the 16 dropped bits (PyTorch 1.13 gives the same). */
    static const uint32_t in[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x00008000u, 0x00018000u,
                                  0x7f7fffffu, 0x7f7f7fffu, 0x80000001u, 0x3dcccccdu, 0x40490fdbu};
    static const uint16_t want[] = {0x3f80, 0x3f82, 0x3f81, 0x0000, 0x0002,
                                    0x7f80, 0x7f7f, 0x8000, 0x3dcd, 0x4049};
    for (size_t i = 0; i < COUNT(in); i++)
        if (to_bf16(float_of(in[i])) != want[i])
            fail_msg("0x%08x -> 0x%04x, want 0x%04x", in[i], to_bf16(float_of(in[i])), want[i]);
    assert_int_equal(to_bf16(INFINITY), 0x7f80);
    assert_int_equal(to_bf16(-INFINITY), 0xff80);
    assert_int_equal(to_bf16(NAN), 0x7fc0);
    assert_int_equal(to_bf16(float_of(0x7f800001u)), 0x7fc0); /* quiet, not inf */
    assert_int_equal(to_bf16(float_of(0xff800001u)), 0xffc0);
}

/* ---------------------------------------------------------------- sums */

static void test_half_sums_round_once(void **state)
{
    (void)state;
    /* bf16: 1 + 2^-8 is a tie (to 1.0), 1+2^-7 + 2^-8 a tie to 1+2^-6; inf - inf is NaN. */
    uint16_t a[5] = {0x3f80, 0x3f81, 0x7f80, 0x4000, 0x0001};
    uint16_t b[5] = {0x3b80, 0x3b80, 0xff80, 0xc000, 0x0001};
    ody_bf16_sum(a, b, 5);
    assert_int_equal(b[0], 0x3f80);
    assert_int_equal(b[1], 0x3f82);
    assert_true((b[2] & 0x7f80) == 0x7f80 && (b[2] & 0x7f) != 0);
    assert_int_equal(b[3], 0x0000);
    assert_int_equal(b[4], 0x0002);
    /* fp16: a tie at 1 + 2^-11, overflow at 65504 + 16, subnormals add exactly. */
    uint16_t c[4] = {0x3c00, 0x7bff, 0x0001, 0x3c00};
    uint16_t d[4] = {0x1000 /* 2^-11 */, 0x4c00 /* 16 */, 0x03ff, 0xbc00};
    ody_f16_sum(c, d, 4);
    assert_int_equal(d[0], 0x3c00);
    assert_int_equal(d[1], 0x7c00);
    assert_int_equal(d[2], 0x0400);
    assert_int_equal(d[3], 0x0000);
}

typedef struct {
    void (*widen)(const uint16_t *, float *, size_t);
    void (*narrow)(const float *, uint16_t *, size_t);
    void (*sum)(const uint16_t *, uint16_t *, size_t);
} half_type;

/* t->sum over x and y (converted to the type) is each float sum rounded once. */
static void expect_sum_rounds_float_sum(const half_type *t, const float *x, const float *y)
{
    enum { N = 1037 }; /* a ragged length past the vector widths */
    static uint16_t hx[N], hy[N], want[N];
    static float fx[N], fy[N];
    t->narrow(x, hx, N);
    t->narrow(y, hy, N);
    t->widen(hx, fx, N);
    t->widen(hy, fy, N);
    for (int i = 0; i < N; i++)
        fx[i] += fy[i];
    t->narrow(fx, want, N);
    t->sum(hx, hy, N);
    assert_memory_equal(hy, want, sizeof want);
    t->sum(hx, hy, 0); /* n = 0 touches nothing */
    assert_memory_equal(hy, want, sizeof want);
}

static void test_half_sums_match_float_sums(void **state)
{
    (void)state;
    static float x[1037], y[1037];
    for (int i = 0; i < 1037; i++) {
        x[i] = (float)sin(i * 0.37) * (float)(1 << (i % 20)) * 1e-3f;
        y[i] = (float)cos(i * 0.11) * (float)(1 << (i % 13)) * 1e-2f;
    }
    const half_type f16 = {ody_f16_to_f32, ody_f32_to_f16, ody_f16_sum};
    const half_type bf16 = {ody_bf16_to_f32, ody_f32_to_bf16, ody_bf16_sum};
    expect_sum_rounds_float_sum(&f16, x, y);
    expect_sum_rounds_float_sum(&bf16, x, y);
}

static const struct CMUnitTest group[] = {
    cmocka_unit_test(test_f16_to_f32_is_exact_everywhere),
    cmocka_unit_test(test_f32_to_f16_rounds_to_nearest_even),
    cmocka_unit_test(test_f16_special_values_match_pytorch),
    cmocka_unit_test(test_bf16_round_trip_and_rounding),
    cmocka_unit_test(test_half_sums_round_once),
    cmocka_unit_test(test_half_sums_match_float_sums),
};

ODY_TEST_MAIN(group)
