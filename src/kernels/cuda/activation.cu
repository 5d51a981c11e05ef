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
    if (n) forward<<<rg_cuda_grid(n), RG_CUDA_THREADS>>>(act, x, y, n);
}

extern "C" void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                            float *dx, size_t n, bool fresh) {
    if (n) backward<<<rg_cuda_grid(n), RG_CUDA_THREADS>>>(act, x, y, dy, dx, n, fresh);
}
