/*
 * hash.h — splitmix64 and the counter-based uniform draw made from it, the one definition
 * that the host (rng.c: seeding, dropout on the CPU) and the CUDA kernels (dropout on the
 * device) both inline, so a mask is the same on either.
 */
#ifndef RG_HASH_H
#define RG_HASH_H

#include <stdint.h>

#ifdef __CUDACC__
#define RG_HASH_FN static __host__ __device__ inline
#else
#define RG_HASH_FN static inline
#endif

/* The next value of the splitmix64 sequence at *x. */
RG_HASH_FN uint64_t rg_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform value in [0, 1) with 24 bits, a function of (key, counter) alone. */
RG_HASH_FN float rg_hash_draw(uint64_t key, uint64_t counter) {
    uint64_t x = key ^ (counter * 0xD1B54A32D192ED03ull);
    return (float)(rg_splitmix64(&x) >> 40) * 0x1.0p-24f;
}

#endif
