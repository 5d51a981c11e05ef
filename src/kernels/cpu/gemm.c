/*
 * gemm.c — matrix multiplication through the CBLAS interface (OpenBLAS by default; any
 * CBLAS links).  Every dense FLOP goes through here, and the convolutions' that the
 * direct kernels (conv_direct.c) do not take.
 *
 * Threads: regrad keeps one thread pool, OpenMP's.  The BLAS runs single-threaded and each
 * product is split into row (or column) panels, one per thread.  Letting OpenBLAS's own
 * pthreads run beside OpenMP's made both pools spin against each other on every switch:
 * measured on the MLP benchmark, 17.8k images/s with two pools against 54k with one.  The
 * BLAS is made single-threaded before its first call here, whether or not the program ever
 * set regrad's threads (rg_set_threads).
 */
#include "../kernels.h"

#include "regrad.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef RG_HAVE_OPENBLAS_THREADS
#include <pthread.h>

void openblas_set_num_threads(int n);
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) { openblas_set_num_threads(1); }
static void blas_single(void) { pthread_once(&blas_once, blas_one_thread); }
#else
static void blas_single(void) {}
#endif

/* Below this many multiply-adds a product stays on one thread. */
#define GEMM_PARALLEL_MIN (1L << 18)

static void gemm_serial(bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                        int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void rg_sgemm_then(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc,
                   void (*then)(void *ctx, int lo, int hi), void *ctx) {
    blas_single();
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    if (threads > 1 && (long)m * n * k >= GEMM_PARALLEL_MIN && !omp_in_parallel()) {
        const bool split_rows = m >= n;
        const int len = split_rows ? m : n;
#pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            /* Panels rounded to 8 rows/columns so kernels see aligned, full tiles. */
            int chunk = ((len + nt - 1) / nt + 7) / 8 * 8;
            int lo = t * chunk, hi = lo + chunk < len ? lo + chunk : len;
            if (lo < hi) {
                if (split_rows)
                    gemm_serial(trans_a, trans_b, hi - lo, n, k, alpha,
                                trans_a ? a + lo : a + (long)lo * lda, lda, b, ldb, beta,
                                c + (long)lo * ldc, ldc);
                else
                    gemm_serial(trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                                trans_b ? b + (long)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
                if (then && !split_rows) then(ctx, lo, hi); /* its columns, in its cache */
            }
        }
        if (then && split_rows) then(ctx, 0, n);
        return;
    }
#endif
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (then) then(ctx, 0, n);
}

void rg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    rg_sgemm_then(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, NULL);
}

#define GRAM_BLOCK 128

/* Block (bi, bj), bi <= bj, of the Gram matrix: a rank-k update on the diagonal, else a product. */
static void gram_block(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c,
                       int ldc, int bi, int bj) {
    const int i0 = bi * GRAM_BLOCK, j0 = bj * GRAM_BLOCK;
    const int ni = n - i0 < GRAM_BLOCK ? n - i0 : GRAM_BLOCK, nj = n - j0 < GRAM_BLOCK ? n - j0 : GRAM_BLOCK;
    const float *ai = trans ? a + i0 : a + (size_t)i0 * lda, *aj = trans ? a + j0 : a + (size_t)j0 * lda;
    float *cij = c + (size_t)i0 * ldc + j0;
    if (bi == bj)
        cblas_ssyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, ni, k, alpha, ai, lda, beta,
                    cij, ldc);
    else
        gemm_serial(trans, !trans, ni, nj, k, alpha, ai, lda, aj, lda, beta, cij, ldc);
}

void rg_sgram(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c, int ldc) {
    blas_single();
    const int blocks = (n + GRAM_BLOCK - 1) / GRAM_BLOCK, tasks = blocks * (blocks + 1) / 2;
#ifdef _OPENMP
    const bool parallel = tasks > 1 && omp_get_max_threads() > 1 && (long)n * n * k >= 2 * GEMM_PARALLEL_MIN &&
                          !omp_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
#endif
    for (int t = 0; t < tasks; t++) { /* task t: row bi of the upper triangle, column bj >= bi */
        int bi = 0, rest = t;
        while (rest >= blocks - bi) rest -= blocks - bi, bi++;
        gram_block(trans, n, k, alpha, a, lda, beta, c, ldc, bi, bi + rest);
    }
    for (int i0 = 0; i0 < n; i0 += 32) /* the lower triangle from the upper, in 32 x 32 tiles */
        for (int j0 = 0; j0 <= i0; j0 += 32)
            for (int i = i0; i < n && i < i0 + 32; i++)
                for (int j = j0; j < i && j < j0 + 32; j++) c[(size_t)i * ldc + j] = c[(size_t)j * ldc + i];
}

double rg_sgemm_gflops(int n, int repeats) {
    if (n < 1 || repeats < 1) return 0;
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
          *c = malloc((size_t)n * n * sizeof *c);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 13) * 0.01f;
        for (int r = 0; r < repeats; r++) {
            const double t0 = rg_seconds();
            rg_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            const double s = rg_seconds() - t0;
            double rate = 2.0 * n * (double)n * n / s / 1e9;
            if (rate > best) best = rate;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

double rg_sum_squares(const float *x, size_t n) {
    const double fast = rg_dot(x, x, n);
    if (fast > 1e-30 && fast < 1e30) return fast;
    /* Tiny or huge (or non-finite): float squares lose tiny values (a 1e-26 gradient
     * squares to 0) and overflow huge ones, so redo it in double, scaled by the largest
     * magnitude.  NaN and Inf stay non-finite. */
    double big = 0;
    for (size_t i = 0; i < n; i++) {
        const double a = fabs((double)x[i]);
        if (!(a <= big)) big = a; /* NaN too */
    }
    if (big == 0 || !isfinite(big)) return big == 0 ? 0 : big * big;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i] / big;
        s += v * v;
    }
    return s * big * big;
}

double rg_dot(const float *x, const float *y, size_t n) {
    blas_single();
    double s = 0;
    for (size_t done = 0; done < n;) {
        const int chunk = n - done > (1u << 30) ? (1 << 30) : (int)(n - done);
        s += cblas_sdot(chunk, x + done, 1, y + done, 1);
        done += (size_t)chunk;
    }
    return s;
}
