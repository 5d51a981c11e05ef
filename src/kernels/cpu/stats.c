/*
 * stats.c — the sums behind the health monitor's statistics: over one (sample, channel)
 * plane, shared by the monitor, which scans an output after the fact, and by ops that call
 * it on each sample's output just written, while it is still in cache (either way a figure
 * is the same bits, and does not depend on the thread count); over blocks of a dense
 * layer's units; and the squared distance that measures an update, shared with the
 * optimizer, which can take it in its own pass.
 */
#include "../kernels.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static int counts(float v, rg_count_kind want, float lo, float hi) {
    return want == RG_COUNT_NEAR_BOUND ? (v < lo) | (v > hi) : want != RG_COUNT_NONE && v > 0.0f;
}

/* 8 float lanes (two vectors of 4: GCC's vector extensions, SSE2 on x86-64, since the
 * auto-vectoriser leaves this loop scalar), added in double at the end. */
long rg_plane_sums(const float *restrict p, size_t n, rg_count_kind want, float lo, float hi,
                   double t[4]) {
    const v4f zero = {0, 0, 0, 0}, low = {lo, lo, lo, lo}, high = {hi, hi, hi, hi};
    v4f a[2] = {zero, zero}, a2[2] = {zero, zero}, r[2] = {zero, zero}, r2[2] = {zero, zero};
    v4i c[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    const size_t body = n / 8 * 8;
    for (size_t i = 0; i < body; i += 8)
        for (int h = 0; h < 2; h++) {
            v4f x;
            memcpy(&x, p + i + 4 * h, sizeof x);
            a[h] += x, a2[h] += x * x;
            const v4i positive = x > zero;
            if (want == RG_COUNT_POSITIVE || want == RG_COUNT_RELU_OF) c[h] -= positive;
            else if (want == RG_COUNT_NEAR_BOUND) c[h] -= (x < low) | (x > high);
            if (want == RG_COUNT_RELU_OF) {
                const v4f v = (v4f)((v4i)x & positive); /* relu(x): x, or +0 */
                r[h] += v, r2[h] += v * v;
            }
        }
    double u[4] = {0, 0, 0, 0};
    long counted = 0;
    for (size_t i = body; i < n; i++) {
        const double v = p[i], pos = v > 0 ? v : 0;
        u[0] += v, u[1] += v * v, u[2] += pos, u[3] += pos * pos;
        counted += counts(p[i], want, lo, hi);
    }
    for (int k = 0; k < 8; k++)
        u[0] += a[k / 4][k % 4], u[1] += a2[k / 4][k % 4], u[2] += r[k / 4][k % 4],
            u[3] += r2[k / 4][k % 4], counted += c[k / 4][k % 4];
    for (int k = 0; k < 4; k++) t[k] += u[k];
    return counted;
}

/* The last units of a layer, fewer than a block: one at a time. */
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
    if (width < RG_UNIT_BLOCK) {
        unit_tail_sums(out, stride, batch, width, want, lo, hi, s, s2, counted, rs, rs2);
        return;
    }
    enum { V = RG_UNIT_BLOCK / 4 };
    const v4f zero = {0, 0, 0, 0}, low = {lo, lo, lo, lo}, high = {hi, hi, hi, hi};
    v4f a[V], a2[V], r[V], r2[V];
    v4i c[V];
    for (int h = 0; h < V; h++) a[h] = a2[h] = r[h] = r2[h] = zero, c[h] = (v4i){0, 0, 0, 0};
    for (int h = 0; h < V; h++) /* 4 units at a time over all rows: 5 sums in registers */
        for (int b = 0; b < batch; b++) {
            v4f x;
            memcpy(&x, out + (size_t)b * stride + 4 * h, sizeof x);
            a[h] += x, a2[h] += x * x;
            const v4i positive = x > zero;
            if (want == RG_COUNT_POSITIVE || want == RG_COUNT_RELU_OF) c[h] -= positive;
            else if (want == RG_COUNT_NEAR_BOUND) c[h] -= (x < low) | (x > high);
            if (want == RG_COUNT_RELU_OF) {
                const v4f v = (v4f)((v4i)x & positive);
                r[h] += v, r2[h] += v * v;
            }
        }
    memcpy(s, a, sizeof a), memcpy(s2, a2, sizeof a2), memcpy(counted, c, sizeof c);
    if (want == RG_COUNT_RELU_OF) memcpy(rs, r, sizeof r), memcpy(rs2, r2, sizeof r2);
}

double rg_distance_squared(const float *restrict a, const float *restrict b, size_t n) {
    float lanes[8] = {0};
    double total = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) lanes[k] += (a[i + k] - b[i + k]) * (a[i + k] - b[i + k]);
    for (; i < n; i++) total += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    for (int k = 0; k < 8; k++) total += lanes[k];
    return total;
}
