/*
 * stats.c — the sums behind the health monitor's statistics: over one (sample, channel)
 * plane, shared by the monitor, which scans an output after the fact, and by ops that call
 * it on each sample's output just written, while it is still in cache (either way a figure
 * is the same bits, and does not depend on the thread count); over blocks of a dense
 * layer's units; and sums of squares, of weights, gradients and an update's size (the
 * distance between the weights before and after it), whose last steps the optimizer shares
 * when it takes them in its own pass (rg_finish_update_squares).
 */
#include "../kernels.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

/* Each kernel below is written once for a vector type (GCC's vector extensions: the
 * auto-vectoriser leaves these loops scalar) and compiled for plain x86-64 (SSE2) and for
 * AVX2 or AVX-512, chosen by rg_cpu_isa.  Every lane adds its values in the same order
 * whatever the width, and this file is compiled without FMA contraction
 * (-ffp-contract=off), so a figure is the same bits on every CPU. */

static int counts(float v, rg_count_kind want, float lo, float hi) {
    return want == RG_COUNT_NEAR_BOUND ? (v < lo) | (v > hi) : want != RG_COUNT_NONE && v > 0.0f;
}

/* Adds one vector x to the sums: x, x^2, the count `want` asks for (c counts down: a true
 * comparison is -1), and relu(x), relu(x)^2. */
#define ACCUMULATE(VI, x, zero, low, high, a, a2, c, r, r2)                                     \
    do {                                                                                      \
        a += x, a2 += x * x;                                                                  \
        const VI positive = x > zero;                                                         \
        if (want == RG_COUNT_POSITIVE || want == RG_COUNT_RELU_OF) c -= positive;             \
        else if (want == RG_COUNT_NEAR_BOUND) c -= (x < low) | (x > high);                    \
        if (want == RG_COUNT_RELU_OF) {                                                       \
            const __typeof__(x) v = (__typeof__(x))((VI)x & positive); /* relu(x): x or +0 */ \
            r += v, r2 += v * v;                                                              \
        }                                                                                     \
    } while (0)

/* The 8 float lanes of a plane's sums, before the tail and the lanes are added in double. */
typedef struct {
    float a[8], a2[8], r[8], r2[8];
    int c[8];
} plane_lanes;

/* rg_plane_sums' lanes (NV vectors of type VF) over the first n / 8 * 8 values.  The AVX
 * variants return before anything else runs, so GCC ends them with vzeroupper: calling
 * plain SSE code with the upper halves still dirty made the relu and pooling after a
 * watched convolution 2.5x slower (GCC put no vzeroupper before such a call). */
#define PLANE_LANES(NAME, VF, VI, NV, ATTR)                                                   \
    ATTR static void NAME(const float *restrict p, size_t n, rg_count_kind want, float lo,  \
                          float hi, plane_lanes *out) {                                       \
        const VF zero = {0}, low = zero + lo, high = zero + hi;                               \
        VF a[NV], a2[NV], r[NV], r2[NV];                                                      \
        VI c[NV];                                                                             \
        for (int h = 0; h < NV; h++) a[h] = a2[h] = r[h] = r2[h] = zero, c[h] = (VI){0};      \
        for (size_t i = 0; i + 8 <= n; i += 8)                                                \
            for (int h = 0; h < NV; h++) {                                                    \
                VF x;                                                                         \
                memcpy(&x, p + i + h * (8 / NV), sizeof x);                                   \
                ACCUMULATE(VI, x, zero, low, high, a[h], a2[h], c[h], r[h], r2[h]);          \
            }                                                                                 \
        memcpy(out->a, a, sizeof a), memcpy(out->a2, a2, sizeof a2);                          \
        memcpy(out->r, r, sizeof r), memcpy(out->r2, r2, sizeof r2);                          \
        memcpy(out->c, c, sizeof c);                                                          \
    }

/* NG vectors of units of a dense output from unit u0 side by side, each over all rows in
 * order, the row loop outside so that the NG vectors' sums do not wait on each other. */
#define UNIT_GROUP(VF, VI, NG, u0)                                                            \
    do {                                                                                      \
        VF a[NG], a2[NG], r[NG], r2[NG];                                                      \
        VI c[NG];                                                                             \
        for (int h = 0; h < NG; h++) a[h] = a2[h] = r[h] = r2[h] = zero, c[h] = (VI){0};      \
        for (int b = 0; b < batch; b++)                                                       \
            for (int h = 0; h < NG; h++) {                                                    \
                VF x;                                                                         \
                memcpy(&x, out + (size_t)b * stride + (u0) + h * lanes, sizeof x);            \
                ACCUMULATE(VI, x, zero, low, high, a[h], a2[h], c[h], r[h], r2[h]);          \
            }                                                                                 \
        memcpy(s + (u0), a, sizeof a), memcpy(s2 + (u0), a2, sizeof a2);                      \
        memcpy(counted + (u0), c, sizeof c);                                                  \
        if (want == RG_COUNT_RELU_OF) memcpy(rs + (u0), r, sizeof r), memcpy(rs2 + (u0), r2, sizeof r2); \
    } while (0)

/* The units of a dense output that fill whole vectors (VF holds `lanes` units), G vectors
 * at a time (as many as keep their 5 sums in registers), then one at a time; returns how
 * many units that is. */
#define BLOCK_SUMS(NAME, VF, VI, G, ATTR)                                                     \
    ATTR static int NAME(const float *restrict out, size_t stride, int batch, int width,    \
                         rg_count_kind want, float lo, float hi, float *s, float *s2,        \
                         int *counted, float *rs, float *rs2) {                              \
        const VF zero = {0}, low = zero + lo, high = zero + hi;                               \
        const int lanes = (int)(sizeof(VF) / sizeof(float)), vectors = width / lanes;         \
        int g = 0;                                                                            \
        for (; g + G <= vectors; g += G) UNIT_GROUP(VF, VI, G, g * lanes);                    \
        for (; g < vectors; g++) UNIT_GROUP(VF, VI, 1, g * lanes);                            \
        return vectors * lanes;                                                               \
    }

/* The sums of squares, sum (a[i] - b[i])^2, or sum a[i]^2 when b is NULL: 64 float lanes
 * (NV vectors of type VF, enough to keep the adds from waiting on each other) over the
 * first n / 64 * 64 values. */
#define SQUARE_LANES(NAME, VF, NV, ATTR)                                                      \
    ATTR static void NAME(const float *restrict a, const float *restrict b, size_t n,       \
                          float *out) {                                                       \
        VF lanes[NV];                                                                         \
        for (int h = 0; h < NV; h++) lanes[h] = (VF){0};                                      \
        for (size_t i = 0; i + 64 <= n; i += 64)                                              \
            for (int h = 0; h < NV; h++) {                                                    \
                VF x, y = {0};                                                                \
                memcpy(&x, a + i + h * (64 / NV), sizeof x);                                  \
                if (b) memcpy(&y, b + i + h * (64 / NV), sizeof y);                           \
                const VF d = x - y;                                                           \
                lanes[h] += d * d;                                                            \
            }                                                                                 \
        memcpy(out, lanes, sizeof lanes);                                                     \
    }

/* Both sums of squares of rg_squares_pair, a's and b's, in one pass (copying b to keep
 * when given): the lanes of each as SQUARE_LANES takes them. */
#define PAIR_LANES(NAME, VF, NV, ATTR)                                                        \
    ATTR static void NAME(const float *restrict a, const float *restrict b,                 \
                          float *restrict keep, size_t n, float *out_a, float *out_b) {      \
        VF la[NV], lb[NV];                                                                    \
        for (int h = 0; h < NV; h++) la[h] = lb[h] = (VF){0};                                 \
        for (size_t i = 0; i + 64 <= n; i += 64)                                              \
            for (int h = 0; h < NV; h++) {                                                    \
                VF x, y;                                                                      \
                memcpy(&x, a + i + h * (64 / NV), sizeof x);                                  \
                memcpy(&y, b + i + h * (64 / NV), sizeof y);                                  \
                if (keep) memcpy(keep + i + h * (64 / NV), &y, sizeof y);                     \
                la[h] += x * x, lb[h] += y * y;                                               \
            }                                                                                 \
        memcpy(out_a, la, sizeof la), memcpy(out_b, lb, sizeof lb);                           \
    }

#define BASE
PLANE_LANES(plane_lanes_base, v4f, v4i, 2, BASE)
BLOCK_SUMS(block_sums_base, v4f, v4i, 2, BASE)
SQUARE_LANES(square_lanes_base, v4f, 16, BASE)
#if defined(__x86_64__) && defined(__GNUC__)
#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx512f")))
PLANE_LANES(plane_lanes_avx2, v8f, v8i, 1, AVX2)
#define plane_lanes_avx512 plane_lanes_avx2 /* 8 lanes are one AVX2 vector */
BLOCK_SUMS(block_sums_avx2, v8f, v8i, 2, AVX2) /* 10 of 16 registers */
BLOCK_SUMS(block_sums_avx512, v16f, v16i, 4, AVX512) /* 20 of 32 registers */
SQUARE_LANES(square_lanes_avx2, v8f, 8, AVX2)
SQUARE_LANES(square_lanes_avx512, v16f, 4, AVX512)
PAIR_LANES(pair_lanes_avx512, v16f, 4, AVX512) /* 8 accumulators: AVX2's 16 registers spill */
#endif

long rg_plane_sums(const float *restrict p, size_t n, rg_count_kind want, float lo, float hi,
                   double t[4]) {
    plane_lanes l;
    RG_PICK(plane_lanes)(p, n, want, lo, hi, &l);
    double u[4] = {0, 0, 0, 0};
    long counted = 0;
    for (size_t i = n / 8 * 8; i < n; i++) { /* the tail in double, then the lanes in order */
        const double v = p[i], pos = v > 0 ? v : 0;
        u[0] += v, u[1] += v * v, u[2] += pos, u[3] += pos * pos;
        counted += counts(p[i], want, lo, hi);
    }
    for (int k = 0; k < 8; k++)
        u[0] += l.a[k], u[1] += l.a2[k], u[2] += l.r[k], u[3] += l.r2[k], counted += l.c[k];
    for (int k = 0; k < 4; k++) t[k] += u[k];
    return counted;
}

/* The sum that 64 lanes began over a[0, n) (minus b when given): the tail's squares added
 * in double, in order, then the lanes' sum in double, in a fixed tree (lanes j, j + 8, ...,
 * j + 56 in order for each j < 8, those 8 sums in pairs: a short chain of vector adds); in
 * double throughout when that leaves 1e-30..1e30. */
static double finish_squares(const float *lanes, const float *a, const float *b, size_t n) {
    double total = 0, part[8];
    for (size_t i = n / 64 * 64; i < n; i++) {
        const double d = (double)a[i] - (b ? b[i] : 0.0f);
        total += d * d;
    }
    for (int j = 0; j < 8; j++) part[j] = lanes[j];
    for (int k = 8; k < 64; k += 8)
        for (int j = 0; j < 8; j++) part[j] += lanes[k + j];
    total += ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    if (total > 1e-30 && total < 1e30) return total;
    /* tiny (squares below float's range read as 0), huge (they overflow) or non-finite:
     * again in double, where no float's square over- or underflows; NaN and Inf stay */
    total = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (b ? b[i] : 0.0f);
        total += d * d;
    }
    return total;
}

double rg_squares(const float *restrict a, const float *restrict b, size_t n) {
    float lanes[64];
    RG_PICK(square_lanes)(a, b, n, lanes);
    return finish_squares(lanes, a, b, n);
}

void rg_finish_update_squares(const float lanes[3 * 64], const float *restrict now,
                              const float *restrict before, const float *restrict grad,
                              size_t n, double out[3]) {
    out[0] = finish_squares(lanes, now, before, n);
    out[1] = finish_squares(lanes + 64, grad, NULL, n);
    out[2] = finish_squares(lanes + 128, before, NULL, n);
}

void rg_squares_pair(const float *restrict a, const float *restrict b, float *restrict keep,
                     size_t n, double out[2]) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (rg_cpu_isa() == RG_ISA_AVX512) {
        float la[64], lb[64];
        pair_lanes_avx512(a, b, keep, n, la, lb);
        for (size_t i = n / 64 * 64; keep && i < n; i++) keep[i] = b[i];
        out[0] = finish_squares(la, a, NULL, n), out[1] = finish_squares(lb, b, NULL, n);
        return;
    }
#endif
    if (keep) memcpy(keep, b, n * sizeof *keep);
    out[0] = rg_squares(a, NULL, n), out[1] = rg_squares(b, NULL, n);
}

/* Units of a dense output that fill no vector: one at a time. */
static void unit_tail_sums(const float *out, size_t stride, int batch, int width,
                           rg_count_kind want, float lo, float hi, float *s, float *s2,
                           int *counted, float *rs, float *rs2) {
    for (int k = 0; k < width; k++) {
        float a = 0, a2 = 0, r = 0, r2 = 0;
        int c = 0;
        for (int b = 0; b < batch; b++) {
            const float v = out[(size_t)b * stride + k], pos = v > 0.0f ? v : 0.0f;
            a += v, a2 += v * v, r += pos, r2 += pos * pos;
            c += counts(v, want, lo, hi);
        }
        s[k] = a, s2[k] = a2, counted[k] = c;
        if (want == RG_COUNT_RELU_OF) rs[k] = r, rs2[k] = r2;
    }
}

void rg_unit_block_sums(const float *restrict out, size_t stride, int batch, int width,
                        rg_count_kind want, float lo, float hi, float *s, float *s2, int *counted,
                        float *rs, float *rs2) {
    const int done = RG_PICK(block_sums)(out, stride, batch, width, want, lo, hi, s, s2, counted,
                                         rs, rs2);
    unit_tail_sums(out + done, stride, batch, width - done, want, lo, hi, s + done, s2 + done,
                   counted + done, rs + done, rs2 + done);
}
