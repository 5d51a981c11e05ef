/*
 * activation.cu — the element-wise activations on the device, forward and backward (= or
 * +=), from the rules the CPU uses (../act_rules.h).  The device's expf, erff, tanhf and
 * log1pf may differ from glibc's by an ulp or two: the tests compare within 1e-5.
 */
#include "cuda.h"
#include "../act_rules.h"
#include "launch.h"

#include <cuda_runtime.h>

__global__ static void forward(rg_act act, const float *x, float *y, size_t n) {
    GRID_STRIDE(i, n) y[i] = act_f(act, x[i]);
}

__global__ static void backward(rg_act act, const float *x, const float *y, const float *dy, float *dx,
                                size_t n, bool fresh) {
    GRID_STRIDE(i, n) dx[i] = fresh ? act_dx(act, x[i], y[i], dy[i]) : dx[i] + act_dx(act, x[i], y[i], dy[i]);
}

extern "C" void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n) {
    if (n) RG_KERNEL(forward, rg_cuda_grid(n), RG_CUDA_THREADS)(act, x, y, n);
}

extern "C" void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                            float *dx, size_t n, bool fresh) {
    if (n) RG_KERNEL(backward, rg_cuda_grid(n), RG_CUDA_THREADS)(act, x, y, dy, dx, n, fresh);
}

/* softmax over each row of k values, one thread a row, as the CPU's op_activation.c: the
 * row's maximum, the sum of exp in float in order, each divided by it */
__global__ static void softmax_rows(const float *x, float *y, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const float *xr = x + r * k;
        float *yr = y + r * k, m = xr[0], sum = 0;
        for (int j = 1; j < k; j++) m = xr[j] > m ? xr[j] : m;
        for (int j = 0; j < k; j++) sum += (yr[j] = expf(xr[j] - m));
        for (int j = 0; j < k; j++) yr[j] /= sum;
    }
}

__global__ static void softmax_rows_back(const float *y, const float *dy, float *dx, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const float *yr = y + r * k, *dyr = dy + r * k;
        float *dxr = dx + r * k, dot = 0;
        for (int j = 0; j < k; j++) dot += dyr[j] * yr[j];
        for (int j = 0; j < k; j++) dxr[j] += yr[j] * (dyr[j] - dot);
    }
}

extern "C" void rg_cuda_softmax_forward(const float *x, float *y, size_t rows, int k) {
    LAUNCH(softmax_rows, rows, x, y, rows, k);
}

extern "C" void rg_cuda_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, int k) {
    LAUNCH(softmax_rows_back, rows, y, dy, dx, rows, k);
}
