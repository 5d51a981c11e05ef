/*
 * prox.cu — LassoNet's hierarchical proximal step (models/lassonet.c) on the device's
 * weights, so that a step leaves them there: one block a feature, its first hidden layer's
 * column of |u| sorted largest first by the block (a bitonic sort in device scratch), then
 * the feature's bound w found by one thread in the CPU's order of operations (kernels/cpu/
 * prox.c; nvcc's -fmad=false), so that the two give the same bits.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>

/* Feature j's of each block's in turn: a[0, pow2) its slots (|u| of the h weights from j,
 * padded with -1, which sorts last). */
__global__ static void hier_prox(float *theta, float *w1, int k, int d, int h, int pow2, double M, double lambda,
                                 float *scratch) {
    float *a = scratch + (size_t)blockIdx.x * pow2;
    __shared__ double bound, norm;
    for (int j = blockIdx.x; j < d; j += gridDim.x) {
        for (int i = threadIdx.x; i < pow2; i += blockDim.x) a[i] = i < h ? fabsf(w1[(size_t)i * d + j]) : -1.0f;
        __syncthreads();
        /* bitonic: runs of `size` merged, the run holding slot i largest first where
         * (i & size) == 0 (the last run: all of them) */
        for (int size = 2; size <= pow2; size *= 2)
            for (int stride = size / 2; stride > 0; stride /= 2) {
                for (int i = threadIdx.x; i < pow2; i += blockDim.x) {
                    const int l = i ^ stride;
                    if (l < i) continue;
                    const float x = a[i], y = a[l];
                    if ((i & size) == 0 ? x < y : x > y) a[i] = y, a[l] = x;
                }
                __syncthreads();
            }
        if (threadIdx.x == 0) {
            double vn = 0;
            for (int c = 0; c < k; c++) vn += (double)theta[(size_t)c * d + j] * theta[(size_t)c * d + j];
            vn = sqrt(vn);
            double w = 0, cum = 0;
            for (int m = 0; m <= h; m++) {
                if (m > 0) cum += a[m - 1];
                const double wm = M / (1 + m * M * M) * fmax(vn + M * cum - lambda, 0.0);
                const double upper = m == 0 ? INFINITY : a[m - 1];
                const double lower = m == h ? 0 : a[m];
                if (lower <= wm && wm <= upper) {
                    w = wm;
                    break;
                }
            }
            bound = w, norm = vn;
        }
        __syncthreads();
        const double w = bound, vn = norm;
        for (int c = threadIdx.x; c < k; c += blockDim.x) {
            float *t = &theta[(size_t)c * d + j];
            *t = vn > 0 ? (float)(w / M * *t / vn) : 0.0f;
        }
        for (int i = threadIdx.x; i < h; i += blockDim.x) {
            float *x = &w1[(size_t)i * d + j];
            const float v = fminf((float)w, fabsf(*x));
            *x = *x < 0 ? -v : v;
        }
        __syncthreads(); /* the slots and the bound are the next feature's */
    }
}

/* Blocks enough for every feature at once where the scratch stays within 64 MiB. */
extern "C" rg_status rg_cuda_hier_prox(float *theta, float *w1, int k, int d, int h, double M, double lambda) {
    static void *scratch;
    static size_t room;
    if (d <= 0 || h <= 0) return RG_OK;
    int pow2 = 2;
    while (pow2 < h) pow2 *= 2;
    const size_t most = ((size_t)16 << 20) / pow2;
    const unsigned blocks = (unsigned)((size_t)d < most ? (size_t)d : most > 0 ? most : 1);
    const unsigned threads = pow2 / 2 < RG_CUDA_THREADS ? pow2 / 2 : RG_CUDA_THREADS;
    if (!rg_cuda_grow(&scratch, &room, (size_t)blocks * pow2 * sizeof(float))) {
        rg_cuda_note_failure("lassonet's proximal step", "out of device memory");
        return rg_cuda_status(false);
    }
    RG_KERNEL(hier_prox, dim3(blocks), dim3(threads))(theta, w1, k, d, h, pow2, M, lambda, (float *)scratch);
    return RG_OK;
}
