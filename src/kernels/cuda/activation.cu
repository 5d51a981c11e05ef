/*
 * activation.cu — the element-wise activations on the device, forward and backward (= or
 * +=), from the rules the CPU uses (../act_rules.h).  The device's expf, erff, tanhf and
 * log1pf may differ from glibc's by an ulp or two: the tests compare within 1e-5.  Each
 * kernel is over the activations' type (launch.h): float, or bf16.
 */
#include "cuda.h"
#include "../act_rules.h"
#include "launch.h"

#include <cuda_runtime.h>

template <typename T>
__global__ static void forward(rg_act act, const T *x, T *y, size_t n) {
    GRID_STRIDE(i, n) rg_store(y, i, act_f(act, rg_load(x, i)));
}

template <typename T>
__global__ static void backward(rg_act act, const T *x, const T *y, const T *dy, T *dx, size_t n, bool fresh) {
    GRID_STRIDE(i, n) {
        const float d = act_dx(act, rg_load(x, i), rg_load(y, i), rg_load(dy, i));
        rg_store(dx, i, fresh ? d : rg_load(dx, i) + d);
    }
}

template <typename T>
static void launch_forward(rg_act act, const float *x, float *y, size_t n) {
    LAUNCH(forward<T>, n, act, rg_as<T>(x), rg_as<T>(y), n);
}

template <typename T>
static void launch_backward(rg_act act, const float *x, const float *y, const float *dy, float *dx, size_t n,
                            bool fresh) {
    LAUNCH(backward<T>, n, act, rg_as<T>(x), rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), n, fresh);
}

extern "C" void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n) {
    RG_STORED(launch_forward, act, x, y, n);
}

extern "C" void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                            float *dx, size_t n, bool fresh) {
    RG_STORED(launch_backward, act, x, y, dy, dx, n, fresh);
}

/* softmax over each row of k values, one thread a row, as the CPU's op_activation.c: the
 * row's maximum, the sum of exp in float in order, each divided by it */
template <typename T>
__global__ static void softmax_rows(const T *x, T *y, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const T *xr = x + r * k;
        T *yr = y + r * k;
        float m = rg_load(xr, 0), sum = 0;
        for (int j = 1; j < k; j++) m = rg_load(xr, j) > m ? rg_load(xr, j) : m;
        for (int j = 0; j < k; j++) { /* x may be y: each x read before its y is written */
            const float e = expf(rg_load(xr, j) - m);
            rg_store(yr, j, e), sum += e;
        }
        for (int j = 0; j < k; j++) rg_store(yr, j, rg_load(yr, j) / sum);
    }
}

template <typename T>
__global__ static void softmax_rows_back(const T *y, const T *dy, T *dx, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const T *yr = y + r * k, *dyr = dy + r * k;
        T *dxr = dx + r * k;
        float dot = 0;
        for (int j = 0; j < k; j++) dot += rg_load(dyr, j) * rg_load(yr, j);
        for (int j = 0; j < k; j++) rg_store(dxr, j, rg_load(dxr, j) + rg_load(yr, j) * (rg_load(dyr, j) - dot));
    }
}

template <typename T>
static void launch_softmax(const float *x, float *y, size_t rows, int k) {
    LAUNCH(softmax_rows<T>, rows, rg_as<T>(x), rg_as<T>(y), rows, k);
}

template <typename T>
static void launch_softmax_back(const float *y, const float *dy, float *dx, size_t rows, int k) {
    LAUNCH(softmax_rows_back<T>, rows, rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), rows, k);
}

extern "C" void rg_cuda_softmax_forward(const float *x, float *y, size_t rows, int k) {
    RG_STORED(launch_softmax, x, y, rows, k);
}

extern "C" void rg_cuda_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, int k) {
    RG_STORED(launch_softmax_back, y, dy, dx, rows, k);
}
