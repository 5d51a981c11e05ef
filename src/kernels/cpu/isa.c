/*
 * isa.c — which vector instruction set regrad's hand-written kernels use: the widest the
 * CPU has (AVX-512, or AVX2 with FMA), capped by REGRAD_MAX_ISA=AVX2 so a benchmark can
 * hold regrad to what it holds its peer to, or =BASE (plain C, so tests reach it too);
 * tests also cap it in-process (rg_cpu_isa_cap) to compare the variants' bits.  Decided
 * once; the kernels that use it give the same figures whichever it is, only faster (stats.c,
 * norm.c, the optimizers, the convolutions' forward products and dx), except the
 * convolutions' weight gradients, whose sums over positions run in 8 or 16 lanes.
 */
#include "../kernels.h"

#include <stdlib.h>
#include <strings.h>

static int decided = -1; /* written once, the same value by any thread that races */

/* The widest the CPU has, capped by REGRAD_MAX_ISA. */
static rg_isa widest(void) {
    rg_isa isa = RG_ISA_BASE;
#if defined(__x86_64__) && defined(__GNUC__)
    const char *cap = getenv("REGRAD_MAX_ISA");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        !(cap && strcasecmp(cap, "BASE") == 0))
        isa = RG_ISA_AVX2;
    if (isa == RG_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        !(cap && strcasecmp(cap, "AVX2") == 0))
        isa = RG_ISA_AVX512;
#endif
    return isa;
}

rg_isa rg_cpu_isa(void) {
    int isa = __atomic_load_n(&decided, __ATOMIC_RELAXED);
    if (isa >= 0) return (rg_isa)isa;
    isa = widest();
    __atomic_store_n(&decided, isa, __ATOMIC_RELAXED);
    return (rg_isa)isa;
}

rg_isa rg_cpu_isa_cap(rg_isa cap) {
    const rg_isa isa = widest() < cap ? widest() : cap;
    __atomic_store_n(&decided, (int)isa, __ATOMIC_RELAXED);
    return isa;
}
