/*
 * dropout.cu — inverted dropout on the device with the CPU's masks: each value's keep or
 * drop is the same counter-based hash of (key, index) that op_dropout.c draws
 * (../../core/hash.h), so a run on the device drops what a run on the CPU drops.  The
 * values are the activations' type (launch.h), the mask float.
 */
#include "cuda.h"
#include "launch.h"
#include "../../core/hash.h"

#include <cuda_runtime.h>

template <typename T>
__global__ static void drop(const T *x, T *y, float *mask, size_t n, float rate, uint64_t key) {
    const float keep = 1.0f / (1.0f - rate);
    GRID_STRIDE(i, n) {
        mask[i] = rg_hash_draw(key, (uint64_t)i) >= rate ? keep : 0.0f;
        rg_store(y, i, rg_load(x, i) * mask[i]);
    }
}

template <typename T>
__global__ static void keep_all(const T *x, T *y, size_t n) {
    GRID_STRIDE(i, n) y[i] = x[i];
}

template <typename T>
__global__ static void drop_back(const T *dy, const float *mask, T *dx, size_t n, bool train) {
    GRID_STRIDE(i, n) rg_store(dx, i, rg_load(dx, i) + (train ? rg_load(dy, i) * mask[i] : rg_load(dy, i)));
}

template <typename T>
static void forward(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key, bool train) {
    if (train) LAUNCH(drop<T>, n, rg_as<T>(x), rg_as<T>(y), mask, n, rate, key);
    else if (x != y) LAUNCH(keep_all<T>, n, rg_as<T>(x), rg_as<T>(y), n);
}

template <typename T>
static void backward(const float *dy, const float *mask, float *dx, size_t n, bool train) {
    LAUNCH(drop_back<T>, n, rg_as<T>(dy), mask, rg_as<T>(dx), n, train);
}

extern "C" void rg_cuda_dropout_forward(const float *x, float *y, float *mask, size_t n, float rate, uint64_t key,
                                        bool train) {
    RG_STORED(forward, x, y, mask, n, rate, key, train);
}

extern "C" void rg_cuda_dropout_backward(const float *dy, const float *mask, float *dx, size_t n, bool train) {
    RG_STORED(backward, dy, mask, dx, n, train);
}
