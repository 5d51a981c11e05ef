/*
 * eigen.c — eigenvalues of a symmetric matrix by rank (the k-th smallest), for the
 * monitor's conditioning figures: Householder reduction to tridiagonal form (O(4/3 n^3),
 * once), then bisection on Sturm counts (O(n) a count), which finds any one eigenvalue to
 * full precision without the others.
 */
#include "../internal.h"

#include <math.h>
#include <stdlib.h>

/* Reduces the symmetric n x n matrix a (row-major, both halves) to tridiagonal form by
 * Householder reflections H = I - 2 v v^T / v^T v applied on both sides; d gets the
 * diagonal, e the n-1 off-diagonal entries.  a is destroyed. */
static void tridiagonalise(double *a, int n, double *d, double *e, double *v, double *p) {
    for (int k = 0; k + 2 < n; k++) {
        const int m = n - k - 1; /* the trailing block's size */
        double norm2 = 0;
        for (int i = 0; i < m; i++) v[i] = a[(size_t)(k + 1 + i) * n + k], norm2 += v[i] * v[i];
        const double norm = sqrt(norm2);
        if (norm == 0) {
            e[k] = 0;
            continue;
        }
        const double alpha = v[0] > 0 ? -norm : norm;
        v[0] -= alpha;
        double vtv = 0;
        for (int i = 0; i < m; i++) vtv += v[i] * v[i];
        const double beta = 2 / vtv;
        /* B <- H B H for the trailing block B: p = beta B v, q = p - (beta v.p / 2) v,
         * B -= v q^T + q v^T */
        double vp = 0;
        for (int i = 0; i < m; i++) {
            double s = 0;
            const double *row = a + (size_t)(k + 1 + i) * n + k + 1;
            for (int j = 0; j < m; j++) s += row[j] * v[j];
            p[i] = beta * s;
            vp += v[i] * p[i];
        }
        const double c = beta * vp / 2;
        for (int i = 0; i < m; i++) p[i] -= c * v[i];
        for (int i = 0; i < m; i++) {
            double *row = a + (size_t)(k + 1 + i) * n + k + 1;
            for (int j = 0; j < m; j++) row[j] -= v[i] * p[j] + p[i] * v[j];
        }
        e[k] = alpha;
    }
    for (int i = 0; i < n; i++) d[i] = a[(size_t)i * n + i];
    if (n >= 2) e[n - 2] = a[(size_t)(n - 1) * n + n - 2];
}

/* How many eigenvalues of the tridiagonal (d, e) lie below x: the negative pivots of
 * T - x I's LDL^T factorisation (Sylvester's law of inertia). */
static int count_below(const double *d, const double *e, int n, double x) {
    int count = 0;
    double q = 1;
    for (int i = 0; i < n; i++) {
        q = d[i] - x - (i ? e[i - 1] * e[i - 1] / q : 0);
        if (q == 0) q = -1e-300; /* a zero pivot: nudge it, as LAPACK's dstebz does */
        count += q < 0;
    }
    return count;
}

int rg_symmetric_eigenvalues(const float *m, int n, const int *ranks, int count, double *out) {
    double *a = malloc((size_t)n * n * sizeof *a), *d = malloc((size_t)n * sizeof *d);
    double *e = malloc((size_t)n * sizeof *e), *v = malloc((size_t)n * sizeof *v);
    double *p = malloc((size_t)n * sizeof *p);
    const bool ok = a && d && e && v && p && n > 0;
    if (ok) {
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = m[i];
        tridiagonalise(a, n, d, e, v, p);
        double lo = INFINITY, hi = -INFINITY; /* Gershgorin's bounds */
        for (int i = 0; i < n; i++) {
            const double r = (i ? fabs(e[i - 1]) : 0) + (i + 1 < n ? fabs(e[i]) : 0);
            lo = fmin(lo, d[i] - r), hi = fmax(hi, d[i] + r);
        }
        for (int k = 0; k < count; k++) { /* the ranks[k]-th smallest (0-based) */
            double a0 = lo, b0 = hi;
            for (int it = 0; it < 200 && b0 - a0 > 1e-15 * fmax(fabs(a0), fabs(b0)); it++) {
                const double mid = 0.5 * (a0 + b0);
                if (count_below(d, e, n, mid) > ranks[k]) b0 = mid;
                else a0 = mid;
            }
            out[k] = 0.5 * (a0 + b0);
        }
    }
    free(a), free(d), free(e), free(v), free(p);
    return ok ? 0 : -1;
}
