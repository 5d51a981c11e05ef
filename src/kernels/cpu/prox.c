/*
 * prox.c — LassoNet's hierarchical proximal step (Hier-Prox, its group form; the
 * arithmetic is set out atop models/lassonet.c) on the CPU's buffers, feature by feature.
 * A device's (kernels/cuda/prox.cu) does each feature's arithmetic in this order, so the
 * two agree bit for bit.
 */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

static int by_abs_desc(const void *a, const void *b) {
    float x = fabsf(*(const float *)a), y = fabsf(*(const float *)b);
    return (x < y) - (x > y);
}

rg_status rg_cpu_hier_prox(float *theta, float *w1, int k, int d, int h, double M, double lambda) {
    float *u = malloc((size_t)(h > 0 ? h : 1) * sizeof *u);
    if (!u) return rg_fail(RG_ERR_MEMORY, "out of memory for lassonet's proximal step");
    for (int j = 0; j < d; j++) {
        double vn = 0;
        for (int c = 0; c < k; c++) vn += (double)theta[(size_t)c * d + j] * theta[(size_t)c * d + j];
        vn = sqrt(vn);
        for (int i = 0; i < h; i++) u[i] = w1[(size_t)i * d + j];
        qsort(u, (size_t)h, sizeof *u, by_abs_desc);
        double w = 0, cum = 0;
        for (int m = 0; m <= h; m++) {
            if (m > 0) cum += fabsf(u[m - 1]);
            const double wm = M / (1 + m * M * M) * fmax(vn + M * cum - lambda, 0);
            const double upper = m == 0 ? INFINITY : fabsf(u[m - 1]);
            const double lower = m == h ? 0 : fabsf(u[m]);
            if (lower <= wm && wm <= upper) {
                w = wm;
                break;
            }
        }
        for (int c = 0; c < k; c++) {
            float *t = &theta[(size_t)c * d + j];
            *t = vn > 0 ? (float)(w / M * *t / vn) : 0.0f;
        }
        for (int i = 0; i < h; i++) {
            float *x = &w1[(size_t)i * d + j];
            const float a = fminf((float)w, fabsf(*x));
            *x = *x < 0 ? -a : a;
        }
    }
    free(u);
    return RG_OK;
}
