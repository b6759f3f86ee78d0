/*
 * What the AVX2 and AVX-512 kernel files share (each compiled with its own
 * -m flags; include it only there): an 8x8 transpose, and the kernel size
 * as a constant for the direct loops.
 */
#ifndef ODYSSEY_NN_CONV_AVX_H
#define ODYSSEY_NN_CONV_AVX_H

#include <immintrin.h>

/* Transpose 8 rows of 8 floats in place: r[l] becomes lane l of r[0..8) (as bits). */
static inline void nn_transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/*
 * call(KC) with the kernel size k as the constant KC for the common 3 and
 * 5 (0: not a constant, the loops read it at run time). With a constant
 * the tap loops unroll whole, with no loop exits among the FMAs: LeNet-5's
 * conv2 forward took 3.7 us a sample at the AVX-512 level with 5 as a loop
 * count and 2.8 unrolled (the same sums in the same order).
 */
#define NN_WITH_K(k, call)                                                                     \
    do {                                                                                       \
        if ((k) == 5)                                                                          \
            call(5);                                                                           \
        else if ((k) == 3)                                                                     \
            call(3);                                                                           \
        else                                                                                   \
            call(0);                                                                           \
    } while (0)

/*
 * A case of the switch over P that calls the including file's
 * direct_block(g, x, S, wt, bias, y, P, B, KC) with P, B and (stride 1)
 * the kernel size as constants, so that its sums live in registers.
 */
#define NN_DIRECT_UNIT(KC) direct_block(g, x, 1, wt, bias, y, P_, B_, KC)
#define NN_DIRECT_CASE(P, B)                                                                   \
    case P:                                                                                    \
        if (S == 1) {                                                                          \
            enum { P_ = P, B_ = B };                                                           \
            NN_WITH_K(g->win.k, NN_DIRECT_UNIT);                                               \
        } else {                                                                               \
            direct_block(g, x, S, wt, bias, y, P, B, 0);                                       \
        }                                                                                      \
        return;

#endif /* ODYSSEY_NN_CONV_AVX_H */
