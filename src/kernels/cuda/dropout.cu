/*
 * dropout.cu — inverted dropout on the device with the CPU's masks: each value's keep or
 * drop is the same counter-based hash of (key, index) that op_dropout.c draws
 * (../../core/hash.h), so a run on the device drops what a run on the CPU drops.
 */
#include "cuda.h"
#include "launch.h"
#include "../../core/hash.h"

#include <cuda_runtime.h>

__global__ static void drop(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key) {
    const float keep = 1.0f / (1.0f - rate);
    GRID_STRIDE(i, n) {
        mask[i] = rg_hash_draw(key, (uint64_t)i) >= rate ? keep : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

__global__ static void keep_all(const float *x, float *y, size_t n) {
    GRID_STRIDE(i, n) y[i] = x[i];
}

__global__ static void drop_back(const float *dy, const float *mask, float *dx, size_t n, bool train) {
    GRID_STRIDE(i, n) dx[i] += train ? dy[i] * mask[i] : dy[i];
}

extern "C" void rg_cuda_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key,
                                        bool train) {
    if (train) LAUNCH(drop, n, x, y, mask, n, rate, key);
    else if (x != y) LAUNCH(keep_all, n, x, y, n);
}

extern "C" void rg_cuda_dropout_backward(const float *dy, const float *mask, float *dx, size_t n, bool train) {
    LAUNCH(drop_back, n, dy, mask, dx, n, train);
}
