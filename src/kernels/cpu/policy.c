/*
 * policy.c — the CPU kernels' switches, read from the environment once, whatever thread
 * asks first:
 *   REGRAD_MAX_ISA=AVX2|BASE  caps the vector instructions the hand-written kernels use
 *                             (AVX-512, or AVX2 with FMA, or plain C), so a benchmark can
 *                             hold regrad to what it holds its peer to and tests reach
 *                             every variant;
 *   REGRAD_DIRECT_CONV=0      sends every convolution to im2col and the BLAS;
 *   REGRAD_WINOGRAD=0         keeps 3x3 convolutions off Winograd's products.
 * Tests change them in-process (rg_cpu_isa_cap, rg_direct_conv_allow).  The kernels that
 * read the instruction set give the same figures whichever it is, only faster (stats.c,
 * norm.c, the optimizers, the convolutions' forward products and dx), except the
 * convolutions' weight gradients, whose sums over positions run in 8 or 16 lanes.
 */
#include "../kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct {
    int isa;       /* an rg_isa, capped by rg_cpu_isa_cap */
    int first_isa; /* the one decided at the first use, which the direct kernels keep */
    int direct;    /* the direct convolution kernels may run */
    int winograd;  /* Winograd's products may run */
} policy = {-1, -1, 1, 1};
static pthread_once_t once = PTHREAD_ONCE_INIT;

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

static bool turned_off(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "0") == 0;
}

static void read_environment(void) {
    const rg_isa isa = widest();
    policy.first_isa = isa;
    policy.direct = !turned_off("REGRAD_DIRECT_CONV");
    policy.winograd = !turned_off("REGRAD_WINOGRAD");
    __atomic_store_n(&policy.isa, (int)isa, __ATOMIC_RELEASE);
}

static void decide(void) {
    if (__atomic_load_n(&policy.isa, __ATOMIC_ACQUIRE) < 0) pthread_once(&once, read_environment);
}

rg_isa rg_cpu_isa(void) {
    decide();
    return (rg_isa)__atomic_load_n(&policy.isa, __ATOMIC_RELAXED);
}

rg_isa rg_cpu_isa_first(void) {
    decide();
    return (rg_isa)policy.first_isa;
}

rg_isa rg_cpu_isa_cap(rg_isa cap) {
    decide();
    const rg_isa isa = widest() < cap ? widest() : cap;
    __atomic_store_n(&policy.isa, (int)isa, __ATOMIC_RELAXED);
    return isa;
}

bool rg_direct_conv_allowed(void) {
    decide();
    return __atomic_load_n(&policy.direct, __ATOMIC_RELAXED);
}

void rg_direct_conv_allow(bool on) {
    decide();
    __atomic_store_n(&policy.direct, on ? 1 : 0, __ATOMIC_RELAXED);
}

bool rg_winograd_allowed(void) {
    decide();
    return policy.winograd;
}
