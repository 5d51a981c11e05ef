/*
 * gra.cu — GRA's per-step arithmetic on layers' device buffers (the CPU's kernels/cpu/gra.c
 * for the rest): centred layers' gradients and steps (their exact float and double
 * operations in the CPU's order, no contraction into fused multiply-adds: the CPU's bits),
 * layers' steps w - w0 with their rows' products with the input mean, their squares and
 * shifts, each of these for many layers in one launch, and the trust region's figures from
 * a step's products with the input's moments, split or samples (cuBLAS; each row's sums in
 * double, one block a row in a fixed order, the rows added in order on the host, most
 * through the flush's queue: health.cu).
 * The monitor's moment is a host array: the exact figure from it copies it up, and its
 * mean too.  The mean the centred gradient and the layer's step read at every step, the
 * covariance split's rows the bound reads, the samples the exact figure reads, and the
 * whitening matrix, are GRA's own device copies.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>

/* Device scratch, grown to the largest layer's need. */
enum { MEAN, MATRIX, PRODUCT, SCRATCH };
static void *scratch[SCRATCH];
static size_t room[SCRATCH];

static void *scratch_for(int which, size_t bytes) {
    return rg_cuda_grow(&scratch[which], &room[which], bytes) ? scratch[which] : NULL;
}

/* n floats of host memory copied into scratch `which`, behind the work queued so far
 * (whatever read the scratch before has read it) and without waiting for it */
static const float *up(int which, const float *host, size_t n) {
    float *d = (float *)scratch_for(which, n * sizeof(float));
    if (d) rg_cuda_upload_later(d, host, n * sizeof(float));
    return d;
}

/* Up to BATCH layers handed to one launch by value, as its argument: the items a launch
 * works through (blocks, or values) numbered through the layers in turn, layer i's from
 * first[i] to first[i + 1].  Without device memory of their own, nothing is copied up. */
#define BATCH 16
struct layer_batch {
    size_t n, first[BATCH + 1];
    rg_gra_layer l[BATCH];
};

/* the layer that item k of a batch belongs to */
__device__ static int layer_of(const layer_batch &b, size_t k) {
    int lo = 0, hi = (int)b.n - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (b.first[mid] <= k) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Each of a batch's layers' units (unit_items) or weights (weight_items) an item. */
static size_t unit_items(const rg_gra_layer &l) { return (size_t)l.units; }
static size_t weight_items(const rg_gra_layer &l) { return (size_t)l.units * l.f; }

/* The n layers in launches of BATCH: launch(batch) for each, with items(layer) numbered
 * through it. */
template <typename Launch>
static void in_batches(const rg_gra_layer *l, int n, size_t (*items)(const rg_gra_layer &), Launch launch) {
    for (int at = 0; at < n; at += BATCH) {
        layer_batch b = {};
        b.n = (size_t)(n - at < BATCH ? n - at : BATCH);
        for (size_t i = 0; i < b.n; i++) b.l[i] = l[at + i], b.first[i + 1] = b.first[i] + items(l[at + i]);
        if (b.first[b.n]) launch(b);
    }
}

/* The figures of a batch's layers queued for the flush (health.cu), a layer's items' sums
 * added in order into its *out: the device's doubles for them, item k's at k, or NULL. */
static double *slots_for(const layer_batch &b, double *rg_gra_layer::*out) {
    size_t parts[BATCH];
    double *outs[BATCH];
    for (size_t i = 0; i < b.n; i++) parts[i] = b.first[i + 1] - b.first[i], outs[i] = b.l[i].*out;
    return rg_cuda_sums_slots(b.n, parts, outs);
}

/* gw -= gb mu^T, as the CPU rounds it (a product, then a difference): a weight an item */
__global__ static void centre_rows(layer_batch b) {
    GRID_STRIDE(e, b.first[b.n]) {
        const int i = layer_of(b, e);
        const rg_gra_layer &l = b.l[i];
        const size_t k = e - b.first[i];
        l.gw[k] = __fsub_rn(l.gw[k], __fmul_rn(l.gb[k / l.f], l.mean[k % l.f]));
    }
}

/* one row's values for rg_cuda_channel_sums (a channel of one row): the step's value, its
 * products with the mean and its square */
struct step_values {
    const float *w, *w0, *mean;
    __device__ double2 operator()(size_t k) const {
        const float d = w[k] - w0[k];
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

/* one block a unit: pm = its step's product with the mean, sums[unit] = its squares */
__global__ static void step_rows(layer_batch b, double *sums) {
    const int i = layer_of(b, blockIdx.x);
    const rg_gra_layer &l = b.l[i];
    const size_t u = blockIdx.x - b.first[i], at = u * l.f;
    const double2 s = rg_cuda_channel_sums(1, (size_t)l.f, 0, 0, (size_t)l.f, step_values{l.w + at, l.w0 + at, l.mean});
    if (threadIdx.x == 0) l.pm[u] = (float)s.x, sums[blockIdx.x] = s.y;
}

/* b -= pm: a unit an item */
__global__ static void uncentre_units(layer_batch b) {
    GRID_STRIDE(k, b.first[b.n]) {
        const int i = layer_of(b, k);
        const rg_gra_layer &l = b.l[i];
        const size_t u = k - b.first[i];
        l.b[u] = l.b[u] - l.pm[u];
    }
}

/* db = b - b0 and terms[unit] = (pm + db)^2 in double, as the CPU forms each: a unit an item */
__global__ static void shift_units(layer_batch b, double *terms) {
    GRID_STRIDE(k, b.first[b.n]) {
        const int i = layer_of(b, k);
        const rg_gra_layer &l = b.l[i];
        const size_t u = k - b.first[i];
        float d = 0.0f;
        if (l.b) d = l.db[u] = l.b[u] - l.b0[u];
        const double z = (double)l.pm[u] + d;
        terms[k] = z * z;
    }
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

/* The sums of `rows` rows that launch(sums) writes, queued for the flush to add in order
 * into *total (NaN without room for them). */
template <typename Launch>
static void rows_total(size_t rows, double *total, Launch launch) {
    double *sums = rows ? rg_cuda_sums_slots(1, &rows, &total) : NULL;
    if (sums) launch(sums);
    else *total = NAN;
}

extern "C" void rg_cuda_centre_gradients(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++)
        if (!l[i].mean) return rg_cuda_note_failure("GRA's centred gradient", "no device memory for the input mean");
    in_batches(l, n, weight_items, [](const layer_batch &b) { LAUNCH(centre_rows, b.first[b.n], b); });
}

extern "C" void rg_cuda_times_matrix(float *out, const float *x, int units, int f, const float *p) {
    if (rg_cuda_sgemm(false, false, units, f, f, 1.0f, x, f, p, f, 0.0f, out, f))
        rg_cuda_note_failure("GRA's whitened coordinates", "the product failed");
}

extern "C" void rg_cuda_layer_steps(const rg_gra_layer *l, int n) {
    for (int i = 0; i < n; i++)
        if (!l[i].mean) {
            for (int j = 0; j < n; j++) *l[j].squares = NAN;
            return rg_cuda_note_failure("GRA's layer step", "no device memory for the input mean");
        }
    in_batches(l, n, unit_items, [](const layer_batch &b) {
        double *sums = slots_for(b, &rg_gra_layer::squares); /* a unit's squares, added in order */
        if (sums) RG_KERNEL(step_rows, (unsigned)b.first[b.n], RG_CUDA_THREADS)(b, sums);
    });
}

extern "C" void rg_cuda_uncentre_steps(const rg_gra_layer *l, int n) {
    in_batches(l, n, unit_items, [](const layer_batch &b) { LAUNCH(uncentre_units, b.first[b.n], b); });
}

extern "C" void rg_cuda_step_shifts(const rg_gra_layer *l, int n) {
    in_batches(l, n, unit_items, [](const layer_batch &b) {
        double *terms = slots_for(b, &rg_gra_layer::shift); /* added in the CPU's order */
        if (terms) LAUNCH(shift_units, b.first[b.n], b, terms);
    });
}

extern "C" void rg_cuda_function_change(const float *dw, const float *db, int units, int f, const float *moment,
                                        const float *mean, double *sum) {
    const float *mm = up(MATRIX, moment, (size_t)f * f), *m = up(MEAN, mean, (size_t)f);
    float *t = (float *)scratch_for(PRODUCT, (size_t)units * f * sizeof(float));
    if (!mm || !m || !t || units <= 0 || rg_cuda_sgemm(false, false, units, f, f, 1.0f, dw, f, mm, f, 0.0f, t, f)) {
        *sum = NAN;
        return;
    }
    rows_total((size_t)units, sum, [&](double *sums) {
        RG_KERNEL(change_rows, units, RG_CUDA_THREADS)(t, dw, db, m, f, sums);
    });
}

extern "C" void rg_cuda_function_change_rows(const float *dw, const float *db, int units, int f, const float *rows,
                                             int n, double *sum) {
    float *t = (float *)scratch_for(PRODUCT, (size_t)n * units * sizeof(float));
    if (!rows || !t || n <= 0 || units <= 0 ||
        rg_cuda_sgemm(false, true, n, units, f, 1.0f, rows, f, dw, f, 0.0f, t, units)) {
        *sum = NAN;
        return;
    }
    rows_total((size_t)n, sum, [&](double *sums) {
        RG_KERNEL(change_samples, n, RG_CUDA_THREADS)(t, db, units, sums);
    });
}

/* one thread a unit: its terms of the bound from the step's products p (units x (k + 1)),
 * each term's run of units after the last: (p[k] + db)^2, then p[i] p[i2] for i <= i2 < k,
 * in double as the CPU forms them */
__global__ static void bound_terms(const float *p, const float *db, int units, int k, double *terms) {
    GRID_STRIDE(j, (size_t)units) {
        const float *q = p + j * (size_t)(k + 1);
        const double l = (double)q[k] + (db ? db[j] : 0.0f);
        terms[j] = l * l;
        size_t run = 1;
        for (int i = 0; i < k; i++)
            for (int i2 = i; i2 < k; i2++) terms[run++ * units + j] = (double)q[i] * q[i2];
    }
}

extern "C" bool rg_cuda_bound_sums(const float *dw, const float *db, int units, int f, const float *qm, int k,
                                   rg_bound_sums *sums) {
    float *p = (float *)scratch_for(PRODUCT, (size_t)units * (k + 1) * sizeof(float));
    if (!qm || !p || units <= 0 || k > 8 || rg_cuda_sgemm(false, true, units, k + 1, f, 1.0f, dw, f, qm, f, 0.0f, p, k + 1))
        return false;
    size_t parts[1 + 8 * 9 / 2], n = 0;
    double *outs[1 + 8 * 9 / 2];
    outs[n] = &sums->shift, parts[n++] = (size_t)units;
    for (int i = 0; i < k; i++)
        for (int i2 = i; i2 < k; i2++) outs[n] = &sums->gram[i * 8 + i2], parts[n++] = (size_t)units;
    double *terms = rg_cuda_sums_slots(n, parts, outs);
    if (!terms) return false;
    LAUNCH(bound_terms, (size_t)units, p, db, units, k, terms);
    const size_t len = (size_t)units * f;
    double *squares = &sums->squares;
    rg_cuda_sums_of_squares(&dw, &len, &squares, 1); /* sum_squares's bits */
    return true;
}
