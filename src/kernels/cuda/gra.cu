/*
 * gra.cu — GRA's per-step arithmetic on a layer's device buffers (the CPU's kernels/cpu/gra.c
 * for the rest): a centred layer's gradient and step (its exact float and double operations
 * in the CPU's order, no contraction into fused multiply-adds: the CPU's bits), a layer's
 * step w - w0 with its rows' products with the input mean and its squares, and the trust
 * region's figures from the step's products with the input's moments or samples (cuBLAS;
 * each row's sums in double, one block a row in a fixed order, the rows added in order on
 * the host).
 * The monitor's moments, samples and covariance split are host arrays: each call copies
 * what it reads of them up, and the trust region's exact figure its mean too.  The mean the
 * centred gradient and the layer's step read at every step, and the whitening matrix, are
 * GRA's own device copies.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>

/* Device scratch, grown to the largest layer's need. */
enum { MEAN, MATRIX, PRODUCT, SUMS, SCRATCH };
static void *scratch[SCRATCH];
static size_t room[SCRATCH];

static void *scratch_for(int which, size_t bytes) {
    return rg_cuda_grow(&scratch[which], &room[which], bytes) ? scratch[which] : NULL;
}

/* n floats of host memory copied into scratch `which` */
static const float *up(int which, const float *host, size_t n) {
    float *d = (float *)scratch_for(which, n * sizeof(float));
    return d && !rg_cuda_upload(d, host, n) ? d : NULL;
}

/* gw -= gb mu^T, as the CPU rounds it (a product, then a difference) */
__global__ static void centre_rows(float *gw, const float *gb, const float *mean, int f, size_t n) {
    GRID_STRIDE(e, n) gw[e] = __fsub_rn(gw[e], __fmul_rn(gb[e / f], mean[e % f]));
}


/* one row's values for rg_cuda_channel_sums (a channel of one row): the step's value
 * (written to dw as it goes, unless dw is NULL), its products with the mean and its square */
struct step_values {
    const float *w, *w0, *mean;
    float *dw;
    __device__ double2 operator()(size_t k) const {
        const float d = w[k] - w0[k];
        if (dw) dw[k] = d;
        return {(double)d * mean[k], (double)d * d};
    }
};
struct shifted_squares { /* (t + db)^2 over one sample's units */
    const float *t, *db;
    __device__ double2 operator()(size_t u) const {
        const double z = (double)t[u] + (db ? db[u] : 0.0f);
        return {z * z, 0.0};
    }
};
struct quadratic_and_linear { /* t . dw and dw . mean */
    const float *t, *dw, *mean;
    __device__ double2 operator()(size_t k) const { return {(double)t[k] * dw[k], (double)dw[k] * mean[k]}; }
};

/* one block a unit: its step, pm = its product with the mean, sums[u] = its squares */
__global__ static void step_rows(float *dw, const float *w, const float *w0, const float *mean, int f, float *pm,
                                 double *sums) {
    const size_t at = blockIdx.x * (size_t)f;
    const double2 s =
        rg_cuda_channel_sums(1, (size_t)f, 0, 0, (size_t)f, step_values{w + at, w0 + at, mean, dw ? dw + at : NULL});
    if (threadIdx.x == 0) pm[blockIdx.x] = (float)s.x, sums[blockIdx.x] = s.y;
}

/* one block a unit: t dw^T + 2 db (dw mu) + db^2, t = dW M's row */
__global__ static void change_rows(const float *t, const float *dw, const float *db, const float *mean, int f,
                                   double *sums) {
    const size_t at = blockIdx.x * (size_t)f;
    const double2 s = rg_cuda_channel_sums(1, (size_t)f, 0, 0, (size_t)f, quadratic_and_linear{t + at, dw + at, mean});
    const double b = db ? db[blockIdx.x] : 0;
    if (threadIdx.x == 0) sums[blockIdx.x] = s.x + 2 * b * s.y + b * b;
}

/* one block a sample: sums[s] = |t_s + db|^2, t = X dW^T's row */
__global__ static void change_samples(const float *t, const float *db, int units, double *sums) {
    const size_t at = blockIdx.x * (size_t)units;
    const double2 s = rg_cuda_channel_sums(1, (size_t)units, 0, 0, (size_t)units, shifted_squares{t + at, db});
    if (threadIdx.x == 0) sums[blockIdx.x] = s.x;
}

/* the rows' sums, read back and added in order; NaN when the device failed */
static double rows_total(const double *sums, int units) {
    double *h = (double *)malloc((size_t)units * sizeof *h), total = NAN;
    if (h && cudaMemcpy(h, sums, (size_t)units * sizeof *h, cudaMemcpyDeviceToHost) == cudaSuccess) {
        total = 0;
        for (int u = 0; u < units; u++) total += h[u];
    }
    free(h);
    return total;
}

extern "C" void rg_cuda_centre_gradient(float *gw, const float *gb, int units, int f, const float *mean) {
    if (!mean) return rg_cuda_note_failure("GRA's centred gradient", "no device memory for the input mean");
    LAUNCH(centre_rows, (size_t)units * f, gw, gb, mean, f, (size_t)units * f);
}

extern "C" void rg_cuda_times_matrix(float *out, const float *x, int units, int f, const float *p) {
    if (rg_cuda_sgemm(false, false, units, f, f, 1.0f, x, f, p, f, 0.0f, out, f))
        rg_cuda_note_failure("GRA's whitened coordinates", "the product failed");
}

extern "C" void rg_cuda_layer_step(float *dw, const float *w, const float *w0, int units, int f, const float *mean,
                                   float *pm, double *squares) {
    if (!mean || units <= 0) return (void)(*squares = NAN);
    double *sums = rg_cuda_sums_slot((size_t)units, squares); /* the rows' sums, added in order */
    if (sums) RG_KERNEL(step_rows, units, RG_CUDA_THREADS)(dw, w, w0, mean, f, pm, sums); /* dw NULL: not kept */
}

/* one thread a unit: (pm + db)^2 in double, as the CPU forms each term */
__global__ static void shift_terms(const float *pm, const float *db, int units, double *terms) {
    GRID_STRIDE(u, (size_t)units) {
        const double l = (double)pm[u] + (db ? db[u] : 0.0f);
        terms[u] = l * l;
    }
}

extern "C" void rg_cuda_step_shift(const float *pm, const float *db, int units, double *shift) {
    if (units <= 0) return (void)(*shift = 0);
    double *terms = rg_cuda_sums_slot((size_t)units, shift); /* added in the CPU's order */
    if (terms) LAUNCH(shift_terms, (size_t)units, pm, db, units, terms);
}

extern "C" double rg_cuda_function_change(const float *dw, const float *db, int units, int f, const float *moment,
                                          const float *mean) {
    const float *mm = up(MATRIX, moment, (size_t)f * f), *m = up(MEAN, mean, (size_t)f);
    float *t = (float *)scratch_for(PRODUCT, (size_t)units * f * sizeof(float));
    double *sums = (double *)scratch_for(SUMS, (size_t)units * sizeof(double));
    if (!mm || !m || !t || !sums || units <= 0 ||
        rg_cuda_sgemm(false, false, units, f, f, 1.0f, dw, f, mm, f, 0.0f, t, f))
        return NAN;
    RG_KERNEL(change_rows, units, RG_CUDA_THREADS)(t, dw, db, m, f, sums);
    return rows_total(sums, units) / units;
}

extern "C" double rg_cuda_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows,
                                               int n) {
    const float *x = up(MATRIX, rows, (size_t)n * f);
    float *t = (float *)scratch_for(PRODUCT, (size_t)n * units * sizeof(float));
    double *sums = (double *)scratch_for(SUMS, (size_t)n * sizeof(double));
    if (!x || !t || !sums || n <= 0 || units <= 0 ||
        rg_cuda_sgemm(false, true, n, units, f, 1.0f, x, f, dw, f, 0.0f, t, units))
        return NAN;
    RG_KERNEL(change_samples, n, RG_CUDA_THREADS)(t, db, units, sums);
    return rows_total(sums, n) / n / units;
}

extern "C" double rg_cuda_step_products(const float *dw, int units, int f, const float *qm, int rows,
                                        float *products) {
    const float *q = up(MATRIX, qm, (size_t)rows * f);
    float *p = (float *)scratch_for(PRODUCT, (size_t)units * rows * sizeof(float));
    if (!q || !p || units <= 0 || rg_cuda_sgemm(false, true, units, rows, f, 1.0f, dw, f, q, f, 0.0f, p, rows) ||
        rg_cuda_download(products, p, (size_t)units * rows))
        return NAN;
    return rg_cuda_sum_squares(dw, (size_t)units * f); /* in a fixed order */
}
