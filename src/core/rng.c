/* core: counter-based random numbers from Random123's Philox4x32-10. */
#include "odyssey/core.h"

#include <math.h>

#include <Random123/philox.h>

void ody_philox(ody_rng_key key, uint64_t c0, uint64_t c1, uint32_t out[4])
{
    philox4x32_ctr_t ctr = {{(uint32_t)c0, (uint32_t)(c0 >> 32), (uint32_t)c1, (uint32_t)(c1 >> 32)}};
    /* The key mixes the seed with the stream tag, so streams never overlap. */
    philox4x32_key_t k = {{(uint32_t)key.seed ^ (key.stream * 0x9E3779B9u),
                           (uint32_t)(key.seed >> 32) + key.stream}};
    philox4x32_ctr_t r = philox4x32(ctr, k);
    for (int i = 0; i < 4; i++)
        out[i] = r.v[i];
}

void ody_rng_uniform(ody_rng_key key, uint64_t c0, size_t n, float lo, float hi, float *out)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i += 4) {
        ody_philox(key, c0, i / 4, w);
        for (size_t j = 0; j < 4 && i + j < n; j++)
            out[i + j] = lo + (hi - lo) * ody_u32_to_unit(w[j]);
    }
}

void ody_rng_normal(ody_rng_key key, uint64_t c0, size_t n, float stddev, float *out)
{
    uint32_t w[4];
    for (size_t i = 0; i < n; i += 4) {
        ody_philox(key, c0, i / 4, w);
        for (size_t j = 0; j < 4 && i + j < n; j += 2) {
            /* Box-Muller in double: u1 in (0, 1], u2 in [0, 1). */
            double u1 = ((double)w[j] + 1.0) / 4294967296.0;
            double u2 = (double)w[j + 1] / 4294967296.0;
            double r = sqrt(-2.0 * log(u1));
            out[i + j] = (float)(stddev * r * cos(6.283185307179586 * u2));
            if (i + j + 1 < n)
                out[i + j + 1] = (float)(stddev * r * sin(6.283185307179586 * u2));
        }
    }
}

void ody_rng_permutation(ody_rng_key key, uint64_t c0, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    uint32_t w[4];
    for (int64_t i = n - 1; i > 0; i--) {
        ody_philox(key, c0, (uint64_t)i, w);
        /* 64 random bits, reduced without visible bias for n < 2^40. */
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
