/*
 * eigen.c — symmetric eigenproblems.  Both start with a Householder reduction to
 * tridiagonal form (O(4/3 n^3)).  Eigenvalues by rank (the k-th smallest), for the
 * monitor's conditioning figures: bisection on Sturm counts (O(n) a count), which finds any
 * one eigenvalue to full precision without the others.  The whole decomposition, for GRA's
 * whitened coordinates: implicit QL sweeps with Wilkinson shifts on the tridiagonal form,
 * their rotations and the reflections accumulated into the eigenvectors (O(n^3) more).
 */
#include "../internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* Columns whose largest entry lies within [1 / SAFE_SCALE, SAFE_SCALE] are reflected as
 * they are: their squares' sums stay normal doubles. */
#define SAFE_SCALE 1e100

/* Reduces the symmetric n x n matrix a (row-major, both halves) to tridiagonal form by
 * Householder reflections H = I - 2 v v^T / v^T v applied on both sides; d gets the
 * diagonal, e the n-1 off-diagonal entries.  a is destroyed.  With `keep` (n x n), the k-th
 * reflection's v is kept in its row k (entries k+1..n-1) and 2 / v^T v in its entry k, 0
 * for none. */
static void tridiagonalise(double *a, int n, double *d, double *e, double *v, double *p, double *keep) {
    for (int k = 0; k + 2 < n; k++) {
        if (keep) keep[(size_t)k * n + k] = 0;
        const int m = n - k - 1; /* the trailing block's size */
        double largest = 0;
        for (int i = 0; i < m; i++) v[i] = a[(size_t)(k + 1 + i) * n + k], largest = fmax(largest, fabs(v[i]));
        if (largest == 0) {
            e[k] = 0;
            continue;
        }
        /* A column far from 1 (rounding's residue below a block of zero rows reaches 1e-160,
         * whose squares are denormal) is reflected as v / largest: H is the same for any
         * multiple of v, and its sums then neither underflow nor overflow. */
        const double unit = largest < SAFE_SCALE && largest > 1 / SAFE_SCALE ? 1 : largest;
        double norm2 = 0;
        for (int i = 0; i < m; i++) v[i] /= unit, norm2 += v[i] * v[i];
        const double norm = sqrt(norm2);
        const double alpha = v[0] > 0 ? -norm : norm;
        v[0] -= alpha;
        double vtv = 0;
        for (int i = 0; i < m; i++) vtv += v[i] * v[i];
        const double beta = 2 / vtv;
        if (keep) {
            keep[(size_t)k * n + k] = beta;
            for (int i = 0; i < m; i++) keep[(size_t)k * n + k + 1 + i] = v[i];
        }
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
        e[k] = alpha * unit;
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
        tridiagonalise(a, n, d, e, v, p, NULL);
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

/* The eigenvalues d and eigenvectors of the symmetric tridiagonal (d, e): implicit QL
 * sweeps with Wilkinson's shift, each sweep's rotations applied to the rows of z (n x n,
 * row-major, given as the basis to rotate; row i ends as the eigenvector of d[i]).  Rows,
 * not columns: a rotation then reads and writes two contiguous rows.  Returns -1 if some eigenvalue takes
 * more than 60 sweeps (not seen for symmetric input). */
static int tridiagonal_ql(double *d, double *e, int n, double *z) {
    if (n > 1) e[n - 1] = 0;
    /* an off-diagonal is negligible beside its diagonal neighbours, or below the matrix's
     * size / SAFE_SCALE: rounding's residue under a block of zero rows, where a sweep's
     * products underflow to 0 and it would chase nothing up to the block's top for ever */
    double size = 0;
    for (int i = 0; i < n; i++) size = fmax(size, fabs(d[i]) + fabs(e[i]));
    const double tiny = size / SAFE_SCALE;
    for (int l = 0; l < n; l++) {
        for (int sweeps = 0;; sweeps++) {
            int m = l; /* the first negligible off-diagonal from l: the block l..m splits off */
            while (m + 1 < n && fabs(e[m]) > DBL_EPSILON * (fabs(d[m]) + fabs(d[m + 1])) && fabs(e[m]) > tiny) m++;
            if (m == l) break;
            if (sweeps == 60) return -1;
            /* Wilkinson's shift from the leading 2 x 2, in a form that avoids cancellation */
            double g = (d[l + 1] - d[l]) / (2 * e[l]);
            double r = hypot(g, 1);
            g = d[m] - d[l] + e[l] / (g + copysign(r, g));
            double s = 1, c = 1, p = 0;
            int i = m - 1;
            for (; i >= l; i--) { /* chase the bulge from m up to l */
                const double f = s * e[i], b = c * e[i];
                r = hypot(f, g);
                e[i + 1] = r;
                if (r == 0) { /* the matrix split here: drop the shift and sweep again */
                    d[i + 1] -= p;
                    e[m] = 0;
                    break;
                }
                s = f / r, c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                double *zi = z + (size_t)i * n, *zi1 = zi + n;
                for (int k = 0; k < n; k++) {
                    const double a = zi[k], b1 = zi1[k];
                    zi1[k] = s * a + c * b1;
                    zi[k] = c * a - s * b1;
                }
            }
            if (r == 0 && i >= l) continue;
            d[l] -= p;
            e[l] = g;
            e[m] = 0;
        }
    }
    return 0;
}

int rg_symmetric_eigen(const float *m, int n, double *values, double *vectors) {
    double *a = malloc((size_t)n * n * sizeof *a), *keep = malloc((size_t)n * n * sizeof *keep);
    double *e = malloc((size_t)n * sizeof *e), *v = malloc((size_t)n * sizeof *v);
    double *p = malloc((size_t)n * sizeof *p);
    int rc = -1;
    if (a && keep && e && v && p && n > 0) {
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = m[i];
        for (int i = 0; i < n; i++) e[i] = 0;
        tridiagonalise(a, n, values, e, v, p, keep);
        double *z = vectors; /* the tridiagonal's eigenvectors as rows, then A's: (Q z^T)^T */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) z[(size_t)i * n + j] = i == j;
        rc = tridiagonal_ql(values, e, n, z);
        /* Q = H_0 H_1 ... H_{n-3}, so each row r becomes r H_{n-3} ... H_0: the reflections
         * last first, r <- r - beta (r . v) v on entries k+1.. */
        for (int k = n - 3; k >= 0 && !rc; k--) {
            const double beta = keep[(size_t)k * n + k], *hv = keep + (size_t)k * n;
            if (beta == 0) continue;
            for (int j = 0; j < n; j++) {
                double *row = z + (size_t)j * n, dot = 0;
                for (int i = k + 1; i < n; i++) dot += row[i] * hv[i];
                dot *= beta;
                for (int i = k + 1; i < n; i++) row[i] -= dot * hv[i];
            }
        }
    }
    free(a), free(keep), free(e), free(v), free(p);
    return rc;
}
