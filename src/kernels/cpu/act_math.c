/*
 * act_math.c — the sigmoid and tanh of a float array in vector lanes. libm's expf and tanhf
 * take one value a call, and took a third of a sigmoid CNN's step and two fifths of a tanh
 * MLP's. Here each value is taken to double, where the exponential's reduction and
 * polynomial leave about 1e-14 of relative error, and rounded to float once at the end:
 * within a unit in the last place of the true value, and nearer than libm's float formula
 * (1 / (1 + expf(-x)) rounds three times).
 *
 * One body, compiled for plain x86-64 (SSE2), AVX2 and AVX-512 (rg_cpu_isa picks), with
 * the same double operations in every lane and no multiply-add fused (this file is
 * compiled with -ffp-contract=off): the same bits on every CPU and for any thread count.
 * NaN passes through; infinities give the limits.
 */
#include "../kernels.h"
#include "cpu.h"

#include <string.h>

/* e^t's reduction t = k ln2 + r, |r| <= ln2 / 2: ln 2 in two parts, the first with the low
 * 21 bits of its significand zero, so k LN2_HI is exact for |k| < 2^21. */
#define LOG2E 1.4426950408889634
#define LN2_HI 0x1.62e42fee00000p-1
#define LN2_LO 0x1.a39ef35793c76p-33
/* 1.5 2^52: added to a double below 2^51 in magnitude, it leaves that value rounded to an
 * integer in the low bits of the significand */
#define ROUNDER 0x1.8p52
/* beyond these the double exponential would leave the normal range; the activations
 * are at their limits long before */
#define EXP_MAX 708.0
/* below this |x| tanh takes its series (the formula from e^2x would lose bits to
 * cancellation): the first omitted term is under 1e-18 of the value */
#define TANH_SERIES_BELOW 0.03

/* y[i] = NAME(x[i]) for i < n (x == y allowed): whole vectors, then the tail in one more */
#define LANES_RUN(SUFFIX, TARGET, W, NAME)                                                         \
    TARGET static void NAME##_run_##SUFFIX(const float *x, float *y, long n) {                   \
        long i = 0;                                                                              \
        for (; i + (W) <= n; i += (W)) {                                                         \
            vf_##SUFFIX v;                                                                       \
            memcpy(&v, x + i, sizeof v);                                                         \
            NAME##_##SUFFIX(&v);                                                                 \
            memcpy(y + i, &v, sizeof v);                                                         \
        }                                                                                        \
        if (i < n) {                                                                             \
            vf_##SUFFIX v = {0};                                                                 \
            memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));                                  \
            NAME##_##SUFFIX(&v);                                                                 \
            memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));                                  \
        }                                                                                        \
    }

#define LANES_KERNELS(SUFFIX, TARGET, W)                                                           \
    typedef float vf_##SUFFIX __attribute__((vector_size(4 * (W))));                              \
    typedef double vd_##SUFFIX __attribute__((vector_size(8 * (W))));                             \
    typedef long vl_##SUFFIX __attribute__((vector_size(8 * (W))));                          \
                                                                                                   \
    /* e^t for t in [-EXP_MAX, EXP_MAX] (NaN stays NaN): 2^k times the Taylor series of e^r   \
     * to r^9, whose first omitted term is under 1e-11 of it for |r| <= ln2 / 2 */               \
    TARGET static inline void exp_##SUFFIX(vd_##SUFFIX *io) {                                   \
        const vd_##SUFFIX t = *io, rounder = (vd_##SUFFIX){0} + ROUNDER;                         \
        vd_##SUFFIX k = t * LOG2E + rounder;                                                     \
        const vl_##SUFFIX ki = (vl_##SUFFIX)k - (vl_##SUFFIX)rounder;                            \
        k -= rounder;                                                                            \
        const vd_##SUFFIX r = (t - k * LN2_HI) - k * LN2_LO;                                     \
        vd_##SUFFIX p = 1.0 / 40320 + r * (1.0 / 362880);                                        \
        p = 1.0 / 5040 + r * p;                                                                  \
        p = 1.0 / 720 + r * p;                                                                   \
        p = 1.0 / 120 + r * p;                                                                   \
        p = 1.0 / 24 + r * p;                                                                    \
        p = 1.0 / 6 + r * p;                                                                     \
        p = 0.5 + r * p;                                                                         \
        p = 1.0 + r * p;                                                                         \
        p = 1.0 + r * p;                                                                         \
        *io = p * (vd_##SUFFIX)((ki + 1023) << 52);                                              \
    }                                                                                            \
                                                                                                 \
    /* t clamped to [-EXP_MAX, EXP_MAX]; NaN fails both tests and stays */                       \
    TARGET static inline void clamp_##SUFFIX(vd_##SUFFIX *io) {                                  \
        const vd_##SUFFIX t = *io;                                                               \
        const vl_##SUFFIX low = t < -EXP_MAX, high = t > EXP_MAX;                                \
        const vl_##SUFFIX lim_lo = (vl_##SUFFIX)((vd_##SUFFIX){0} - EXP_MAX);                    \
        const vl_##SUFFIX lim_hi = (vl_##SUFFIX)((vd_##SUFFIX){0} + EXP_MAX);                    \
        *io = (vd_##SUFFIX)(((vl_##SUFFIX)t & ~(low | high)) | (lim_lo & low) | (lim_hi & high)); \
    }                                                                                            \
                                                                                                 \
    TARGET static inline void sigmoid_##SUFFIX(vf_##SUFFIX *io) {                                \
        vd_##SUFFIX e = -__builtin_convertvector(*io, vd_##SUFFIX);                              \
        clamp_##SUFFIX(&e), exp_##SUFFIX(&e);                                                    \
        *io = __builtin_convertvector(1.0 / (1.0 + e), vf_##SUFFIX);                             \
    }                                                                                            \
                                                                                                 \
    /* tanh |x| = 1 - 2 / (e^2|x| + 1), or its odd series near 0; the sign put back */          \
    TARGET static inline void tanh_##SUFFIX(vf_##SUFFIX *io) {                                   \
        const vd_##SUFFIX d = __builtin_convertvector(*io, vd_##SUFFIX);                         \
        const vl_##SUFFIX sign = (vl_##SUFFIX)d & (long)0x8000000000000000UL;                    \
        const vd_##SUFFIX a = (vd_##SUFFIX)((vl_##SUFFIX)d ^ sign), a2 = a * a;                  \
        vd_##SUFFIX e = a + a;                                                                   \
        clamp_##SUFFIX(&e), exp_##SUFFIX(&e);                                                    \
        const vd_##SUFFIX far = 1.0 - 2.0 / (e + 1.0);                                           \
        vd_##SUFFIX near = -17.0 / 315 + a2 * (62.0 / 2835);                                     \
        near = 2.0 / 15 + a2 * near;                                                             \
        near = -1.0 / 3 + a2 * near;                                                             \
        near = a + a * (a2 * near);                                                              \
        const vl_##SUFFIX small = a < TANH_SERIES_BELOW;                                         \
        const vl_##SUFFIX t = ((vl_##SUFFIX)near & small) | ((vl_##SUFFIX)far & ~small);         \
        *io = __builtin_convertvector((vd_##SUFFIX)(t | sign), vf_##SUFFIX);                     \
    }                                                                                            \
                                                                                                 \
    LANES_RUN(SUFFIX, TARGET, W, sigmoid)                                                        \
    LANES_RUN(SUFFIX, TARGET, W, tanh)

LANES_KERNELS(base, , 2)
#if defined(__x86_64__) && defined(__GNUC__)
LANES_KERNELS(avx2, __attribute__((target("avx2"))), 4)
LANES_KERNELS(avx512, __attribute__((target("avx512f"))), 8)
#endif

void rg_cpu_sigmoid_run(const float *x, float *y, long n) { RG_PICK(sigmoid_run)(x, y, n); }

void rg_cpu_tanh_run(const float *x, float *y, long n) { RG_PICK(tanh_run)(x, y, n); }
