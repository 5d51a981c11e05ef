/*
 * vector.c — the CPU backend's element-wise passes over parameter, gradient and mask
 * buffers that the trainer, GRA, pruning and the classic remedies ask for: scale, copy,
 * subtract, a step along a direction, masks, clamps, fills, counts, sums of squares in
 * index order, and pruning's scores.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

void rg_cpu_scale(float *x, size_t n, float f) {
    for (size_t i = 0; i < n; i++) x[i] *= f;
}

void rg_cpu_copy(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof *dst); }

void rg_cpu_subtract(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] - b[i];
}

void rg_cpu_step_along(float *x, const float *x0, const float *d, size_t n, float f) {
    if (d)
        for (size_t i = 0; i < n; i++) x[i] = x0[i] + f * d[i];
    else /* along x - x0, as subtract would have written it */
        for (size_t i = 0; i < n; i++) x[i] = x0[i] + f * (x[i] - x0[i]);
}

void rg_cpu_multiply(float *x, const float *m, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= m[i];
}

void rg_cpu_clamp(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > v ? v : x[i] < -v ? -v : x[i];
}

double rg_cpu_squares_in_order(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void rg_cpu_pieces_squares(const float *x, const size_t *at, const size_t *len, size_t n, double *out) {
#pragma omp parallel for schedule(dynamic, 64) if (n > 256)
    for (size_t c = 0; c < n; c++) out[c] = rg_cpu_squares_in_order(x + at[c], len[c]);
}

void rg_cpu_scale_pieces(float *x, const size_t *at, const size_t *len, size_t n, const float *f) {
#pragma omp parallel for schedule(dynamic, 64) if (n > 256)
    for (size_t c = 0; c < n; c++) rg_cpu_scale(x + at[c], len[c], f[c]);
}

void rg_cpu_fill(float *x, size_t n, float v) {
    if (v == 0 && !signbit(v)) { /* zeroing gradient buffers: memset's own stores are faster */
        memset(x, 0, n * sizeof *x);
        return;
    }
    for (size_t i = 0; i < n; i++) x[i] = v;
}

size_t rg_cpu_count_zeros(const float *x, size_t n) {
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) zeros += x[i] == 0.0f;
    return zeros;
}

void rg_cpu_unit_scores(const float *w, size_t units, size_t len, int norm, bool per_weight,
                        float *out) {
    for (size_t u = 0; u < units; u++) {
        const float *x = w + u * len;
        if (norm == 0) { /* each value itself */
            out[u] = fabsf(x[0]);
            continue;
        }
        double s = 0;
        for (size_t i = 0; i < len; i++) s += norm == 1 ? fabs(x[i]) : (double)x[i] * x[i];
        if (norm != 1) s = sqrt(s);
        if (per_weight) s /= norm == 1 ? (double)len : sqrt((double)len);
        out[u] = (float)s;
    }
}

size_t rg_cpu_first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}
