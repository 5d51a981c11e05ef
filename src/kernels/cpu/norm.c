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
 * the same bits.
 */
#include "../kernels.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

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
#define DY_LANES(NAME, VF, ATTR)                                                              \
    ATTR static void NAME(const float *restrict x, const float *restrict dy, size_t n,      \
                          float mu, float *a, float *b) {                                     \
        enum { W = sizeof(VF) / sizeof(float), NV = SUM_LANES / W };                          \
        VF sa[NV], sb[NV];                                                                    \
        for (int h = 0; h < NV; h++) sa[h] = sb[h] = (VF){0};                                 \
        size_t i = 0;                                                                         \
        for (; i + SUM_LANES <= n; i += SUM_LANES)                                            \
            for (int h = 0; h < NV; h++) {                                                    \
                VF v, g;                                                                      \
                memcpy(&v, x + i + h * W, sizeof v);                                          \
                memcpy(&g, dy + i + h * W, sizeof g);                                         \
                sa[h] += g, sb[h] += g * (v - mu);                                            \
            }                                                                                 \
        memcpy(a, sa, sizeof sa), memcpy(b, sb, sizeof sb);                                   \
        for (size_t j = 0; i + j < n; j++) a[j] += dy[i + j], b[j] += dy[i + j] * (x[i + j] - mu); \
    }

/* y = x scale + shift. */
#define AFFINE(NAME, VF, ATTR)                                                                \
    ATTR static void NAME(const float *x, float *y, size_t n, float scale, float shift) {    \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        size_t i = 0;                                                                         \
        for (; i + W <= n; i += W) {                                                          \
            VF v;                                                                             \
            memcpy(&v, x + i, sizeof v);                                                      \
            v = v * scale + shift;                                                            \
            memcpy(y + i, &v, sizeof v);                                                      \
        }                                                                                     \
        for (; i < n; i++) y[i] = x[i] * scale + shift;                                       \
    }

/* dx (+)= k (dy - mdy - (x - mu) inv mdyx) (training), or k dy (x NULL); dx's old values
 * are added to unless fresh. */
#define INPUT_GRAD(NAME, VF, ATTR)                                                            \
    ATTR static void NAME(const float *x, const float *dy, float *dx, size_t n, float k,    \
                          float mdy, float mu, float inv, float mdyx, int fresh) {            \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        size_t i = 0;                                                                         \
        for (; i + W <= n; i += W) {                                                          \
            VF g, d;                                                                          \
            memcpy(&g, dy + i, sizeof g);                                                     \
            if (x) {                                                                          \
                VF v;                                                                         \
                memcpy(&v, x + i, sizeof v);                                                  \
                g = k * (g - mdy - (v - mu) * inv * mdyx);                                    \
            } else {                                                                          \
                g = k * g;                                                                    \
            }                                                                                 \
            if (!fresh) memcpy(&d, dx + i, sizeof d), g = d + g;                              \
            memcpy(dx + i, &g, sizeof g);                                                     \
        }                                                                                     \
        for (; i < n; i++) {                                                                  \
            const float g = x ? k * (dy[i] - mdy - (x[i] - mu) * inv * mdyx) : k * dy[i];     \
            dx[i] = fresh ? g : dx[i] + g;                                                    \
        }                                                                                     \
    }

#define KERNELS(SUFFIX, VF, ATTR)                                                             \
    X_LANES(x_lanes_##SUFFIX, VF, ATTR)                                                       \
    DY_LANES(dy_lanes_##SUFFIX, VF, ATTR)                                                     \
    AFFINE(affine_##SUFFIX, VF, ATTR)                                                         \
    INPUT_GRAD(input_grad_##SUFFIX, VF, ATTR)

KERNELS(base, v4f, )
#if defined(__x86_64__) && defined(__GNUC__)
KERNELS(avx2, v8f, __attribute__((target("avx2"))))
KERNELS(avx512, v16f, __attribute__((target("avx512f"))))
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

void rg_bn_plane_dy_sums(const float *x, const float *dy, size_t n, float mu, double *sdy,
                         double *sdyx) {
    float a[SUM_LANES], b[SUM_LANES];
    RG_PICK(dy_lanes)(x, dy, n, mu, a, b);
    *sdy += lanes_total(a), *sdyx += lanes_total(b);
}

void rg_bn_plane_affine(const float *x, float *y, size_t n, float scale, float shift) {
    RG_PICK(affine)(x, y, n, scale, shift);
}

void rg_bn_plane_input_grad(const float *x, const float *dy, float *dx, size_t n, float k,
                            float mdy, float mu, float inv, float mdyx, bool fresh) {
    RG_PICK(input_grad)(x, dy, dx, n, k, mdy, mu, inv, mdyx, fresh);
}
