/*
 * An 8x8 transpose for the AVX2 and AVX-512 kernel files (each compiled
 * with its own -m flags; include it only there).
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

#endif /* ODYSSEY_NN_CONV_AVX_H */
