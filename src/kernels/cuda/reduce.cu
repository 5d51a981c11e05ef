/*
 * reduce.cu — sums over device buffers in a fixed order (no atomics): each of a fixed
 * number of blocks sums a fixed stride of the values in double and folds its threads as a
 * tree; the host adds the blocks' sums in order.  The same input gives the same bits on
 * every run and every device of the same kind.
 */
#include "cuda.h"

#include <cuda_runtime.h>

#define BLOCKS 256
#define THREADS 256

__global__ static void block_squares(const float *x, size_t n, double *out) {
    __shared__ double part[THREADS];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)THREADS + threadIdx.x; i < n; i += (size_t)BLOCKS * THREADS)
        s += (double)x[i] * x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

extern "C" double rg_cuda_sum_squares(const float *x, size_t n) {
    double *d = NULL, h[BLOCKS], sum = 0;
    if (n == 0 || cudaMalloc(&d, sizeof h) != cudaSuccess) return n ? NAN : 0.0;
    block_squares<<<BLOCKS, THREADS>>>(x, n, d);
    const bool ok = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(d);
    if (!ok) return NAN;
    for (int b = 0; b < BLOCKS; b++) sum += h[b];
    return sum;
}
