/*
 * rng.c — reproducible random numbers: xoshiro256** for sequential draws (initialisation,
 * shuffles) and a counter-based hash for draws made inside parallel loops (dropout).
 */
#include "../internal.h"
#include "hash.h"

#include <math.h>

void rg_rng_seed(rg_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = rg_splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rg_rng_next(rg_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rg_rng_uniform(rg_rng *r) { return (float)(rg_rng_next(r) >> 40) * 0x1.0p-24f; }

float rg_rng_normal(rg_rng *r) {
    /* Box-Muller on (0,1] x [0,1): one normal per call keeps the stream simple to resume. */
    double u1 = ((double)(rg_rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(rg_rng_next(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t rg_rng_below(rg_rng *r, uint32_t n) {
    /* Lemire's multiply-and-reject: unbiased without a division in the common case. */
    uint64_t m = (uint64_t)(uint32_t)(rg_rng_next(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rg_rng_next(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void rg_rng_shuffle(rg_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rg_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

float rg_hash_uniform(uint64_t key, uint64_t counter) { return rg_hash_draw(key, counter); }
