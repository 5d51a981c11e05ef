/*
 * health.cu — the health monitor's reductions on the device: per-unit sums of a layer's
 * output, per-sample squares of a gradient, a layer's weight and gradient squares (and the
 * copy of its weights that measures the step), and the squared change of the weights'
 * pieces.  Each segment (a unit, a sample, a piece) is cut into a fixed number of parts;
 * each part's block adds its values in a fixed order and then its threads as a tree, in
 * double, and the host adds the parts in order: the same bits every run, no atomics.  The
 * figures are the CPU's to rounding (the CPU adds float lanes, these add doubles).
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STATS 5 /* per part: sum, squares, count, sum and squares of relu(x) */

/* A block's tree over its threads' STATS doubles; thread 0 gets the totals. */
__device__ static void block_fold(double v[STATS], double (*part)[RG_CUDA_THREADS]) {
    for (int k = 0; k < STATS; k++) part[k][threadIdx.x] = v[k];
    __syncthreads();
    for (int half = RG_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            for (int k = 0; k < STATS; k++) part[k][threadIdx.x] += part[k][threadIdx.x + half];
        __syncthreads();
    }
    for (int k = 0; k < STATS; k++) v[k] = part[k][0];
}

/* What unit_sums counts: the CPU's rule (stats.c) */
__device__ static inline bool counted(float v, int want, float lo, float hi) {
    return want == RG_COUNT_NEAR_BOUND ? (v < lo) | (v > hi) : want != RG_COUNT_NONE && v > 0.0f;
}

/* Block (u, p): part p of unit u's batch x inner values (sample-major), its STATS sums. */
__global__ static void unit_parts(const float *out, size_t size, int units, size_t inner, size_t per_unit,
                                  int parts, int want, float lo, float hi, double *result) {
    __shared__ double part[STATS][RG_CUDA_THREADS];
    const int u = blockIdx.x, p = blockIdx.y;
    const size_t from = per_unit * p / parts, to = per_unit * (p + 1) / parts;
    const float *x = out + (size_t)u * inner;
    double v[STATS] = {0, 0, 0, 0, 0};
    size_t k = from + threadIdx.x, b = k / inner, j = k % inner; /* then stepped without division */
    const size_t step_b = RG_CUDA_THREADS / inner, step_j = RG_CUDA_THREADS % inner;
    for (; k < to; k += RG_CUDA_THREADS) {
        const float y = x[b * size + j];
        const double d = y, pos = y > 0.0f ? d : 0.0;
        v[0] += d, v[1] += d * d, v[2] += counted(y, want, lo, hi), v[3] += pos, v[4] += pos * pos;
        b += step_b, j += step_j;
        if (j >= inner) j -= inner, b++;
    }
    block_fold(v, part);
    if (threadIdx.x == 0)
        for (int s = 0; s < STATS; s++) result[((size_t)u * parts + p) * STATS + s] = v[s];
}

/* Block (s, p): part p of segment s (len values from at[s]; or, when at is NULL, segments
 * `stride` apart, or x itself then x1 when x1 is given), the sum of squares of x - y (x
 * alone when y is NULL). */
__global__ static void segment_squares(const float *x, const float *x1, const float *y, const size_t *at,
                                       const size_t *len, size_t stride, size_t each, int parts, double *result) {
    __shared__ double part[STATS][RG_CUDA_THREADS];
    const size_t s = blockIdx.x;
    const int p = blockIdx.y;
    const size_t start = at ? at[s] : x1 ? 0 : s * stride, n = len ? len[s] : each;
    if (x1 && s == 1) x = x1;
    double v[STATS] = {0, 0, 0, 0, 0};
    if (start != SIZE_MAX)
        for (size_t i = n * p / parts + threadIdx.x; i < n * (p + 1) / parts; i += RG_CUDA_THREADS) {
            const double d = (double)x[start + i] - (y ? y[start + i] : 0.0f);
            v[0] += d * d;
        }
    block_fold(v, part);
    if (threadIdx.x == 0) result[s * parts + p] = v[0];
}

/* The parts' results on the device and their host copy (pinned: a copy from the device
 * waits less), grown as needed. */
static void *results_dev, *indices_dev;
static size_t results_room, indices_room;
static double *results_host;
static size_t results_host_room;

/* Parts for segments of `each` values: enough blocks to fill the device, none under ~4096
 * values (fewer for small segments). */
static int parts_for(size_t segments, size_t each) {
    size_t p = (2048 + segments - 1) / segments, most = (each + 4095) / 4096;
    if (p > most) p = most;
    if (p > 65535) p = 65535;
    return p < 1 ? 1 : (int)p;
}

/* The launched kernel's `count` doubles, copied down; NULL when the device failed (the next
 * status check says why). */
static const double *results(size_t count) {
    if (cudaGetLastError() != cudaSuccess) return NULL;
    if (count > results_host_room) {
        cudaFreeHost(results_host);
        results_host = NULL, results_host_room = 0;
        if (cudaMallocHost((void **)&results_host, count * sizeof *results_host) != cudaSuccess) {
            cudaGetLastError();
            results_host = NULL;
            return NULL;
        }
        results_host_room = count;
    }
    if (cudaMemcpy(results_host, results_dev, count * sizeof(double), cudaMemcpyDeviceToHost) != cudaSuccess)
        return NULL;
    return results_host;
}

static bool room_for(size_t doubles) { return rg_cuda_grow(&results_dev, &results_room, doubles * sizeof(double)); }

extern "C" void rg_cuda_unit_sums(const float *out, size_t size, int units, int batch, rg_count_kind want,
                                  float lo, float hi, double *sum, double *sq, double *relu, long *near,
                                  int *dead) {
    const size_t inner = size / (size_t)units, per_unit = (size_t)batch * inner;
    const int parts = parts_for((size_t)units, per_unit);
    const double *r = NULL;
    if (units > 0 && room_for((size_t)units * parts * STATS)) {
        unit_parts<<<dim3((unsigned)units, (unsigned)parts), RG_CUDA_THREADS>>>(
            out, size, units, inner, per_unit, parts, (int)want, lo, hi, (double *)results_dev);
        r = results((size_t)units * parts * STATS);
    }
    *near = 0, *dead = 0;
    for (int u = 0; u < units; u++) {
        double t[STATS] = {0, 0, 0, 0, 0};
        for (int p = 0; r && p < parts; p++)
            for (int s = 0; s < STATS; s++) t[s] += r[((size_t)u * parts + p) * STATS + s];
        if (!r) t[0] = t[1] = t[3] = t[4] = NAN;
        sum[u] = t[0], sq[u] = t[1], relu[2 * u] = t[3], relu[2 * u + 1] = t[4];
        *near += (long)t[2], *dead += t[2] == 0;
    }
}

/* Sums of squares of `segments` segments (see segment_squares) into out, parts added in
 * order; NaN where the device failed. */
static void squares_of(const float *x, const float *x1, const float *y, const size_t *at, const size_t *len,
                       size_t stride, size_t each, size_t segments, double *out) {
    size_t longest = each;
    for (size_t s = 0; len && s < segments; s++)
        if (at[s] != SIZE_MAX && len[s] > longest) longest = len[s];
    const int parts = parts_for(segments, longest);
    const double *r = NULL;
    bool placed = !at;
    if (at && rg_cuda_grow(&indices_dev, &indices_room, 2 * segments * sizeof(size_t)))
        placed = cudaMemcpy(indices_dev, at, segments * sizeof(size_t), cudaMemcpyHostToDevice) == cudaSuccess &&
                 cudaMemcpy((size_t *)indices_dev + segments, len, segments * sizeof(size_t),
                            cudaMemcpyHostToDevice) == cudaSuccess;
    if (segments && placed && segments <= 0x7fffffff && room_for(segments * parts)) {
        const size_t *at_dev = at ? (const size_t *)indices_dev : NULL, *len_dev = at ? at_dev + segments : NULL;
        segment_squares<<<dim3((unsigned)segments, (unsigned)parts), RG_CUDA_THREADS>>>(
            x, x1, y, at_dev, len_dev, stride, each, parts, (double *)results_dev);
        r = results(segments * parts);
    }
    for (size_t s = 0; s < segments; s++) {
        if (at && at[s] == SIZE_MAX) continue; /* skipped: left as it was */
        double t = 0;
        for (int p = 0; p < parts; p++) t += r ? r[s * parts + p] : NAN;
        out[s] = t;
    }
}

extern "C" void rg_cuda_sample_squares(const float *x, size_t size, int batch, double *out) {
    squares_of(x, NULL, NULL, NULL, NULL, size, size, (size_t)batch, out);
}

extern "C" void rg_cuda_chunk_squares(const float *a, const float *b, const size_t *at, const size_t *len,
                                      size_t n, double *out) {
    squares_of(a, NULL, b, at, len, 0, 0, n, out);
}

extern "C" void rg_cuda_squares2(const float *a, const float *b, float *keep, size_t n, double *sa, double *sb) {
    double both[2];
    squares_of(a, b, NULL, NULL, NULL, 0, n, b ? 2 : 1, both); /* a's and b's in one launch */
    *sa = both[0];
    if (b) *sb = both[1];
    if (b && keep) rg_cuda_copy(keep, b, n);
}
