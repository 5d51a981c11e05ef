/*
 * norm.c — batch normalisation's passes over one (sample, channel) plane, in vectors: the
 * sums its statistics need (of x, of (x - mu)^2, of dy and dy (x - mu)) and the element-wise
 * passes that apply them (y = x scale + shift, and the input gradient).
 *
 * Each kernel is written once for a GCC vector type and compiled for plain x86-64 (SSE2),
 * AVX2 and AVX-512, picked by rg_cpu_isa.  A sum runs in 16 float lanes, value i of the
 * plane going to lane i mod 16 in order (a 16-wide vector's worth, so that AVX-512 runs
 * one chain of adds, AVX2 two and SSE2 four side by side), the lanes then added in double
 * in a fixed tree; this file is compiled without FMA contraction, so every width gives
 * the same bits.  A relu fused after the batch norm (memory.c) is applied by the affine
 * pass, and its mask recomputed in backward from x by the same expression.
 */
#include "../kernels.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int v4i __attribute__((vector_size(16)));
typedef int v8i __attribute__((vector_size(32)));
typedef int v16i __attribute__((vector_size(64)));

/* relu(v), and g where v scale + shift > 0 (else 0), lane by lane as the scalar code */
#define RELU(VF, VI, v) ((VF)((VI)(v) & ~((v) < 0)))
#define MASKED(VF, VI, g, v, relu) ((VF)((VI)(g) & ((v) * (relu)[0] + (relu)[1] > 0)))

#define SUM_LANES 16

/* The 16 lanes in double: 4 sums of every 4th lane, in order, then in pairs. */
static double lanes_total(const float *lane) {
    double part[4];
    for (int j = 0; j < 4; j++) part[j] = lane[j];
    for (int k = 4; k < SUM_LANES; k += 4)
        for (int j = 0; j < 4; j++) part[j] += lane[k + j];
    return (part[0] + part[1]) + (part[2] + part[3]);
}

/* The lanes of sum f(x) over x[0, n) (f: x itself, or (x - mu)^2 when centred); the last
 * n mod 16 values one at a time into their lanes, as a vector would add them. */
#define X_LANES(NAME, VF, ATTR)                                                               \
    ATTR static void NAME(const float *restrict x, size_t n, float mu, int centred,         \
                          float *lane) {                                                      \
        enum { W = sizeof(VF) / sizeof(float), NV = SUM_LANES / W };                          \
        VF acc[NV];                                                                           \
        for (int h = 0; h < NV; h++) acc[h] = (VF){0};                                        \
        size_t i = 0;                                                                         \
        for (; i + SUM_LANES <= n; i += SUM_LANES)                                            \
            for (int h = 0; h < NV; h++) {                                                    \
                VF v;                                                                         \
                memcpy(&v, x + i + h * W, sizeof v);                                          \
                if (centred) v = (v - mu) * (v - mu);                                         \
                acc[h] += v;                                                                  \
            }                                                                                 \
        memcpy(lane, acc, sizeof acc);                                                        \
        for (size_t j = 0; i + j < n; j++) {                                                  \
            const float d = x[i + j] - mu;                                                    \
            lane[j] += centred ? d * d : x[i + j];                                            \
        }                                                                                     \
    }

/* The lanes of sum dy (into a) and sum dy (x - mu) (into b). */
#define DY_LANES(NAME, VF, VI, ATTR)                                                          \
    ATTR static void NAME(const float *restrict x, const float *restrict dy, size_t n,      \
                          float mu, const float *relu, float *a, float *b) {                  \
        enum { W = sizeof(VF) / sizeof(float), NV = SUM_LANES / W };                          \
        VF sa[NV], sb[NV];                                                                    \
        for (int h = 0; h < NV; h++) sa[h] = sb[h] = (VF){0};                                 \
        size_t i = 0;                                                                         \
        for (; i + SUM_LANES <= n; i += SUM_LANES)                                            \
            for (int h = 0; h < NV; h++) {                                                    \
                VF v, g;                                                                      \
                memcpy(&v, x + i + h * W, sizeof v);                                          \
                memcpy(&g, dy + i + h * W, sizeof g);                                         \
                if (relu) g = MASKED(VF, VI, g, v, relu);                                     \
                sa[h] += g, sb[h] += g * (v - mu);                                            \
            }                                                                                 \
        memcpy(a, sa, sizeof sa), memcpy(b, sb, sizeof sb);                                   \
        for (size_t j = 0; i + j < n; j++) {                                                  \
            const float g = rg_bn_relu_masked(dy[i + j], x[i + j], relu);                     \
            a[j] += g, b[j] += g * (x[i + j] - mu);                                           \
        }                                                                                     \
    }

/* y = x scale + shift, and relu(y) when relu (NaN passes, as in the relu op). */
#define AFFINE(NAME, VF, VI, ATTR)                                                            \
    ATTR static void NAME(const float *x, float *y, size_t n, float scale, float shift,      \
                          int relu) {                                                         \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        size_t i = 0;                                                                         \
        for (; i + W <= n; i += W) {                                                          \
            VF v;                                                                             \
            memcpy(&v, x + i, sizeof v);                                                      \
            v = v * scale + shift;                                                            \
            if (relu) v = RELU(VF, VI, v);                                                    \
            memcpy(y + i, &v, sizeof v);                                                      \
        }                                                                                     \
        for (; i < n; i++) {                                                                  \
            const float v = x[i] * scale + shift;                                             \
            y[i] = relu && v < 0 ? 0.0f : v;                                                  \
        }                                                                                     \
    }

/* dx (+)= k (dy - mdy - (x - mu) inv mdyx) (train), or k dy; dx's old values are added
 * to unless fresh. */
#define INPUT_GRAD(NAME, VF, VI, ATTR)                                                        \
    ATTR static void NAME(const float *x, const float *dy, float *dx, size_t n, float k,    \
                          float mdy, float mu, float inv, float mdyx, int train,             \
                          const float *relu, int fresh) {                                     \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        size_t i = 0;                                                                         \
        for (; i + W <= n; i += W) {                                                          \
            VF g, d, v;                                                                       \
            memcpy(&g, dy + i, sizeof g);                                                     \
            memcpy(&v, x + i, sizeof v);                                                      \
            if (relu) g = MASKED(VF, VI, g, v, relu);                                         \
            g = train ? k * (g - mdy - (v - mu) * inv * mdyx) : k * g;                        \
            if (!fresh) memcpy(&d, dx + i, sizeof d), g = d + g;                              \
            memcpy(dx + i, &g, sizeof g);                                                     \
        }                                                                                     \
        for (; i < n; i++) {                                                                  \
            const float h = rg_bn_relu_masked(dy[i], x[i], relu);                             \
            const float g = train ? k * (h - mdy - (x[i] - mu) * inv * mdyx) : k * h;         \
            dx[i] = fresh ? g : dx[i] + g;                                                    \
        }                                                                                     \
    }

#define KERNELS(SUFFIX, VF, VI, ATTR)                                                         \
    X_LANES(x_lanes_##SUFFIX, VF, ATTR)                                                       \
    DY_LANES(dy_lanes_##SUFFIX, VF, VI, ATTR)                                                 \
    AFFINE(affine_##SUFFIX, VF, VI, ATTR)                                                     \
    INPUT_GRAD(input_grad_##SUFFIX, VF, VI, ATTR)

KERNELS(base, v4f, v4i, )
#if defined(__x86_64__) && defined(__GNUC__)
KERNELS(avx2, v8f, v8i, __attribute__((target("avx2"))))
KERNELS(avx512, v16f, v16i, __attribute__((target("avx512f"))))
#endif

double rg_bn_plane_sum(const float *x, size_t n) {
    float lane[SUM_LANES];
    RG_PICK(x_lanes)(x, n, 0.0f, 0, lane);
    return lanes_total(lane);
}

double rg_bn_plane_centred_squares(const float *x, size_t n, float mu) {
    float lane[SUM_LANES];
    RG_PICK(x_lanes)(x, n, mu, 1, lane);
    return lanes_total(lane);
}

void rg_bn_plane_dy_sums(const float *x, const float *dy, size_t n, float mu, const float *relu,
                         double *sdy, double *sdyx) {
    float a[SUM_LANES], b[SUM_LANES];
    RG_PICK(dy_lanes)(x, dy, n, mu, relu, a, b);
    *sdy += lanes_total(a), *sdyx += lanes_total(b);
}

void rg_bn_plane_affine(const float *x, float *y, size_t n, float scale, float shift, bool relu) {
    RG_PICK(affine)(x, y, n, scale, shift, relu);
}

void rg_bn_plane_input_grad(const float *x, const float *dy, float *dx, size_t n, float k,
                            float mdy, float mu, float inv, float mdyx, bool train,
                            const float *relu, bool fresh) {
    RG_PICK(input_grad)(x, dy, dx, n, k, mdy, mu, inv, mdyx, train, relu, fresh);
}
