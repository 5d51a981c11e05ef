/*
 * gra.c — the CPU backend's arithmetic for GRA (src/health/repair.c decides; this computes):
 * the polar factor of a weight matrix by Newton-Schulz, re-centring and re-scaling units,
 * a kernel's taps made to sum to zero across its input channels, a layer's step with the
 * sums a coarse bound needs, the step's change of the pre-activations in function space
 * (exact, and two upper bounds), and the centring reparametrisation's two passes.
 */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Newton-Schulz's start and first steps.  X starts as W over the square root of its Gram
 * matrix's top eigenvalue, found from below by POWER_STEPS steps of power iteration and
 * taken POWER_SAFETY larger: from a start whose part along the top eigenvector is c, the
 * estimate is at least |c|^(1/POWER_STEPS) of it (0.71 for |c| = 1e-3), so X's singular
 * values stay below 1.13, inside both polynomials' range.  Where the singular values are
 * spread (the Gram's trace under QUINTIC_BELOW of its size: a random layer's is about
 * 1/4), quintic steps with Muon's coefficients (Jordan et al. 2024) first lift the small
 * ones 3.4x a step (the cubic: 1.5x) into a band around 1, until the trace, taken every
 * other step as the band swings, grows by under QUINTIC_GAIN; then the cubic converges.
 * On random square layers that is about 14 steps where the cubic alone takes 24
 * (docs/gra.md). */
#define POWER_STEPS 20
#define POWER_SAFETY 1.1
#define QUINTIC_BELOW 0.6
#define QUINTIC_GAIN 0.5
static const float QUINTIC[3] = {3.4445f, -4.7750f, 2.0315f};

/* gram's largest eigenvalue, from below (k x k, symmetric, positive semi-definite) */
static double top_eigenvalue_from_below(const float *gram, int k) {
    float *const both = malloc(2 * (size_t)k * sizeof *both), *v = both, *u = both + k;
    if (!both) return 0;
    double norm = 0, lambda = 0;
    for (int i = 0; i < k; i++) v[i] = (float)(1 + 0.5 * sin(1.7 * i + 0.4)), norm += (double)v[i] * v[i];
    for (int it = 0; it < POWER_STEPS && norm > 0 && isfinite(norm); it++) {
        rg_sgemm(false, false, k, 1, k, (float)(1 / sqrt(norm)), gram, k, v, 1, 0, u, 1); /* G v, v a unit */
        norm = rg_sum_squares(u, (size_t)k);
        lambda = sqrt(norm);
        float *t = v;
        v = u, u = t;
    }
    free(both);
    return lambda;
}

/* The polar factor of the rows x cols matrix w (the nearest matrix with equal singular
 * values, U V^T of its SVD) times its RMS singular value, so the layer keeps its directions
 * and scale but stretches no direction more than another.  Newton-Schulz: the cubic
 * X <- 1.5 X - 0.5 (X X^T) X takes every singular value in (0, sqrt 3) towards 1, after
 * the start and quintic steps above.  Returns ||W' - W|| / ||W||, or -1 (w unchanged)
 * when it does not converge in max_steps (a rank-deficient w), when a cubic step would cost
 * more than max_flops, or memory is short. */
double rg_cpu_polar(float *w, int rows, int cols, int max_steps, double tolerance, double max_flops) {
    const bool wide = rows <= cols; /* iterate with the smaller Gram matrix */
    const int k = wide ? rows : cols;
    const size_t size = (size_t)rows * cols;
    if (4.0 * k * k * (double)(wide ? cols : rows) > max_flops) return -1;
    float *x = malloc(size * sizeof(float)), *y = malloc(size * sizeof(float));
    float *gram = malloc(2 * (size_t)k * k * sizeof(float)), *poly = gram + (size_t)k * k;
    bool done = false, quintic = false;
    double change = -1, traces[2] = {0, 0};
    const double norm = sqrt(rg_sum_squares(w, size));
    if (!x || !y || !gram || !(norm > 0) || !isfinite(norm)) goto out;
    for (size_t i = 0; i < size; i++) x[i] = (float)(w[i] / norm);
    for (int it = 0; it < max_steps && !done; it++) {
        rg_sgram(!wide, k, wide ? cols : rows, 1, x, cols, 0, gram, k);
        if (it == 0) { /* the start: X over its top singular value */
            const double top = POWER_SAFETY * top_eigenvalue_from_below(gram, k);
            if (!(top > 0) || !isfinite(top)) goto out;
            const float s = (float)(1 / sqrt(top));
            for (size_t i = 0; i < size; i++) x[i] *= s;
            for (size_t i = 0; i < (size_t)k * k; i++) gram[i] *= s * s;
        }
        double off = 0, trace = 0; /* || gram - I ||_F */
        for (int a = 0; a < k; a++) {
            trace += gram[(size_t)a * k + a];
            for (int b = 0; b < k; b++) {
                const double d = gram[(size_t)a * k + b] - (a == b);
                off += d * d;
            }
        }
        if (it == 0) quintic = trace < QUINTIC_BELOW * k; /* singular values spread */
        else if (quintic && it >= 2 && trace - traces[it % 2] < QUINTIC_GAIN) quintic = false;
        traces[it % 2] = trace;
        if (sqrt(off) < tolerance) done = true, quintic = false;
        if (quintic) { /* X <- a X + (b G + c G^2) X */
            rg_sgram(true, k, k, QUINTIC[2], gram, k, 0, poly, k); /* G^2 = G^T G */
            for (size_t i = 0; i < (size_t)k * k; i++) poly[i] += QUINTIC[1] * gram[i];
            for (size_t i = 0; i < size; i++) y[i] = QUINTIC[0] * x[i];
            if (wide) rg_sgemm(false, false, rows, cols, k, 1, poly, k, x, cols, 1, y, cols);
            else rg_sgemm(false, false, rows, cols, k, 1, x, cols, poly, k, 1, y, cols);
        } else {
            for (size_t i = 0; i < size; i++) y[i] = 1.5f * x[i];
            if (wide) rg_sgemm(false, false, rows, cols, k, -0.5f, gram, k, x, cols, 1, y, cols);
            else rg_sgemm(false, false, rows, cols, k, -0.5f, x, cols, gram, k, 1, y, cols);
        }
        float *t = x;
        x = y, y = t;
    }
    if (done) {
        const float scale = (float)(norm / sqrt((double)k));
        double moved = 0;
        for (size_t i = 0; i < size; i++) {
            const float v = x[i] * scale;
            moved += ((double)v - w[i]) * ((double)v - w[i]);
            w[i] = v;
        }
        change = sqrt(moved) / norm;
    }
out:
    free(x);
    free(y);
    free(gram);
    return change;
}

void rg_cpu_recenter_units(float *w, float *b, int units, size_t row, const double *scale,
                           const double *mean) {
    for (int u = 0; u < units; u++) {
        if (scale[u] == 0) continue;
        for (size_t j = 0; j < row; j++) w[(size_t)u * row + j] *= (float)scale[u];
        if (b) b[u] = (float)((b[u] - mean[u]) * scale[u]);
    }
}

double rg_cpu_zero_sum_taps(float *w, int units, int channels, int taps) {
    double moved = 0, norm = 0;
    for (int u = 0; u < units; u++) {
        float *row = w + (size_t)u * channels * taps;
        for (int t = 0; t < taps; t++) {
            double sum = 0;
            for (int c = 0; c < channels; c++) sum += row[(size_t)c * taps + t];
            const float mean = (float)(sum / channels);
            for (int c = 0; c < channels; c++) {
                const double v = row[(size_t)c * taps + t];
                norm += v * v;
                moved += (double)mean * mean;
                row[(size_t)c * taps + t] -= mean;
            }
        }
    }
    return norm > 0 ? sqrt(moved / norm) : 0;
}

void rg_cpu_function_change(const float *dw, const float *db, int units, int f,
                            const float *moment, const float *mean, float *scratch, double *sum) {
    float *t = scratch;
    rg_sgemm(false, false, units, f, f, 1.0f, dw, f, moment, f, 0.0f, t, f);
    double e = 0;
    for (int j = 0; j < units; j++) {
        double quad = 0, lin = 0;
        for (int k = 0; k < f; k++) {
            quad += (double)t[(size_t)j * f + k] * dw[(size_t)j * f + k];
            lin += (double)dw[(size_t)j * f + k] * mean[k];
        }
        const double b = db ? db[j] : 0;
        e += quad + 2 * b * lin + b * b;
    }
    *sum = e;
}

/* The same over the samples themselves: T = X dW^T (n x units), then (T + db)^2 summed,
 * n f units products where the moment's cost units f^2. */
void rg_cpu_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows, int n,
                                 float *scratch, double *sum) {
    float *t = scratch;
    rg_sgemm(false, true, n, units, f, 1.0f, rows, f, dw, f, 0.0f, t, units);
    double e = 0;
    for (int s = 0; s < n; s++)
        for (int u = 0; u < units; u++) {
            const double z = (double)t[(size_t)s * units + u] + (db ? db[u] : 0);
            e += z * z;
        }
    *sum = e;
}

/* E||dW x + db||^2 = |dW mu + db|^2 + tr(dW C dW^T), and with C = Q^T S Q + R,
 * tr(dW C dW^T) = tr(P S P^T) + tr(dW R dW^T) <= tr(P S P^T) + ||R||_F ||dW||^2 for
 * P = dW Q^T: one pass over dW for its products with Q's k rows and the mean (P and dW mu)
 * and its squares, then tr(P S P^T) = sum S .* (P^T P). */

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

enum { SPLIT_ROWS = 9 }; /* the covariance split's Q rows (8) and the mean's */

/* Each row j of dw (units x f): its SPLIT_ROWS products with qm's rows into
 * p[j * SPLIT_ROWS ...], and the sum of squares of all of dw, returned: float lanes of VF,
 * each row's tail one value at a time.  One read of dw for everything the bound needs. */
#define ROW_PRODUCTS(NAME, VF, SUM, ATTR)                                                     \
    ATTR static double NAME(const float *restrict dw, int units, int f,                       \
                            const float *restrict qm, float *restrict p) {                    \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        double squares = 0;                                                                   \
        for (int j = 0; j < units; j++) {                                                     \
            const float *row = dw + (size_t)j * f;                                            \
            VF acc[SPLIT_ROWS], sq = {0};                                                     \
            for (int i = 0; i < SPLIT_ROWS; i++) acc[i] = (VF){0};                            \
            int c = 0;                                                                        \
            for (; c + W <= f; c += W) {                                                      \
                VF x;                                                                         \
                memcpy(&x, row + c, sizeof x);                                                \
                sq += x * x;                                                                  \
                for (int i = 0; i < SPLIT_ROWS; i++) {                                        \
                    VF q;                                                                     \
                    memcpy(&q, qm + (size_t)i * f + c, sizeof q);                             \
                    acc[i] += x * q;                                                          \
                }                                                                             \
            }                                                                                 \
            for (int i = 0; i < SPLIT_ROWS; i++) {                                            \
                float s = SUM(acc[i]);                                                        \
                for (int t = c; t < f; t++) s += row[t] * qm[(size_t)i * f + t];              \
                p[(size_t)j * SPLIT_ROWS + i] = s;                                            \
            }                                                                                 \
            squares += SUM(sq);                                                               \
            for (int t = c; t < f; t++) squares += (double)row[t] * row[t];                   \
        }                                                                                     \
        return squares;                                                                       \
    }

/* A vector's lanes summed in a tree of halves. */
#define BASE
static inline float sum4(v4f v) { return (v[0] + v[2]) + (v[1] + v[3]); }
ROW_PRODUCTS(row_products_base, v4f, sum4, BASE)
#if defined(__x86_64__) && defined(__GNUC__)
#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx512f")))
/* (halves by shuffles, not through memory, which kept the accumulators on the stack) */
AVX2 static inline float sum8(v8f v) {
    return sum4(__builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7));
}
AVX512 static inline float sum16(v16f v) {
    return sum8(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
}
ROW_PRODUCTS(row_products_avx2, v8f, sum8, AVX2)
ROW_PRODUCTS(row_products_avx512, v16f, sum16, AVX512)
#endif

/* A layer's step, dw = w - w0 (units x f; dw NULL: not kept), with what the trust region's
 * first bounds need of it in the same pass: each row's product with the input mean into
 * pm, and the sum of squares of dw, returned. */
#define LAYER_STEP(NAME, VF, SUM, ATTR)                                                       \
    ATTR static double NAME(float *restrict dw, const float *restrict w,                      \
                            const float *restrict w0, int units, int f,                       \
                            const float *restrict mean, float *restrict pm) {                 \
        enum { W = sizeof(VF) / sizeof(float) };                                              \
        double squares = 0;                                                                   \
        for (int j = 0; j < units; j++) {                                                     \
            const size_t at = (size_t)j * f;                                                  \
            VF acc = {0}, sq = {0};                                                           \
            int c = 0;                                                                        \
            for (; c + W <= f; c += W) {                                                      \
                VF a, b, m;                                                                   \
                memcpy(&a, w + at + c, sizeof a);                                             \
                memcpy(&b, w0 + at + c, sizeof b);                                            \
                memcpy(&m, mean + c, sizeof m);                                               \
                const VF d = a - b;                                                           \
                if (dw) memcpy(dw + at + c, &d, sizeof d);                                    \
                sq += d * d;                                                                  \
                acc += d * m;                                                                 \
            }                                                                                 \
            float p = SUM(acc);                                                               \
            squares += SUM(sq);                                                               \
            for (; c < f; c++) {                                                              \
                const float d = w[at + c] - w0[at + c];                                       \
                if (dw) dw[at + c] = d;                                                       \
                p += d * mean[c];                                                             \
                squares += (double)d * d;                                                     \
            }                                                                                 \
            pm[j] = p;                                                                        \
        }                                                                                     \
        return squares;                                                                       \
    }

LAYER_STEP(layer_step_base, v4f, sum4, BASE)
#if defined(__x86_64__) && defined(__GNUC__)
LAYER_STEP(layer_step_avx2, v8f, sum8, AVX2)
LAYER_STEP(layer_step_avx512, v16f, sum16, AVX512)
#endif

double rg_cpu_layer_step(float *dw, const float *w, const float *w0, int units, int f, const float *mean,
                         float *pm) {
    return RG_PICK(layer_step)(dw, w, w0, units, f, mean, pm);
}

double rg_cpu_step_products(const float *dw, int units, int f, const float *qm, int rows, float *products) {
    if (rows == SPLIT_ROWS) return RG_PICK(row_products)(dw, units, f, qm, products);
    /* fewer than 8 inputs: a small layer, in plain loops */
    for (int j = 0; j < units; j++)
        for (int i = 0; i < rows; i++) {
            double d = 0;
            for (int c = 0; c < f; c++) d += (double)dw[(size_t)j * f + c] * qm[(size_t)i * f + c];
            products[(size_t)j * rows + i] = (float)d;
        }
    return rg_squares(dw, NULL, (size_t)units * f);
}

double rg_bound_from_sums(const rg_bound_sums *b, const float *s, int k, double rest, int units) {
    double quad = 0;
    for (int i = 0; i < k; i++) {
        quad += (double)s[i * 8 + i] * b->gram[i * 8 + i];
        for (int i2 = i + 1; i2 < k; i2++) quad += ((double)s[i * 8 + i2] + s[i2 * 8 + i]) * b->gram[i * 8 + i2];
    }
    return (b->shift + fmax(quad, 0) + rest * b->squares) / units;
}

void rg_cpu_bound_sums(const float *products, const float *db, int units, int k, double *shift, double *gram) {
    *shift = 0; /* |dW mu + db|^2 and P^T P */
    for (int j = 0; j < units; j++) {
        const float *p = products + (size_t)j * (k + 1);
        const double l = (double)p[k] + (db ? db[j] : 0);
        *shift += l * l;
        for (int i = 0; i < k; i++) /* its upper triangle: S and P^T P are symmetric */
            for (int i2 = i; i2 < k; i2++) gram[i * 8 + i2] += (double)p[i] * p[i2];
    }
}

void rg_cpu_function_change_bound(const float *dw, const float *db, int units, int f, const float *qm, int k,
                                  float *scratch, rg_bound_sums *sums) {
    *sums = (rg_bound_sums){.squares = rg_cpu_step_products(dw, units, f, qm, k + 1, scratch)};
    rg_cpu_bound_sums(scratch, db, units, k, &sums->shift, sums->gram);
}

/* GRA's per-step arithmetic on n layers (backend.h), one layer after another. */
void rg_cpu_layer_steps(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++) *l[i].squares = rg_cpu_layer_step(NULL, l[i].w, l[i].w0, l[i].units, l[i].f, l[i].mean, l[i].pm);
}

void rg_cpu_uncentre_steps(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++) rg_cpu_subtract(l[i].b, l[i].b, l[i].pm, (size_t)l[i].units);
}

/* |dW mu + db|^2 over units, from the step's products with the mean (pm): the part of
 * E||dW x + db||^2 = |dW mu + db|^2 + tr(dW C dW^T) that the trust region's coarse bounds
 * (repair.c) do not bound with the step's squares. */
void rg_cpu_step_shifts(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++) {
        if (l[i].b) rg_cpu_subtract(l[i].db, l[i].b, l[i].b0, (size_t)l[i].units);
        double s = 0;
        for (int u = 0; u < l[i].units; u++) {
            const double d = (double)l[i].pm[u] + (l[i].b ? l[i].db[u] : 0);
            s += d * d;
        }
        *l[i].shift = s;
    }
}

void rg_cpu_centre_gradient(float *gw, const float *gb, int units, int f, const float *mean) {
    for (int u = 0; u < units; u++) {
        float *row = gw + (size_t)u * f;
        for (int k = 0; k < f; k++) row[k] -= gb[u] * mean[k];
    }
}

void rg_cpu_centre_gradients(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++) rg_cpu_centre_gradient(l[i].gw, l[i].gb, l[i].units, l[i].f, l[i].mean);
}

void rg_cpu_sums_of_squares(const float *const *x, const size_t *len, double *const *out, int n) {
    for (int i = 0; i < n; i++) *out[i] = rg_sum_squares(x[i], len[i]);
}

void rg_cpu_times_matrix(float *out, const float *x, int units, int f, const float *p) {
    rg_sgemm(false, false, units, f, f, 1.0f, x, f, p, f, 0.0f, out, f);
}
