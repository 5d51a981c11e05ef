/*
 * activation.cu — the element-wise activations on the device, forward and backward (+=),
 * from the rules the CPU uses (../act_rules.h).  The device's expf, erff, tanhf and
 * log1pf may differ from glibc's by an ulp or two: the tests compare within 1e-5.
 */
#include "cuda.h"
#include "../act_rules.h"

#include <cuda_runtime.h>

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__global__ static void forward(rg_act act, const float *x, float *y, size_t n) {
    GRID_STRIDE(i, n) y[i] = act_f(act, x[i]);
}

__global__ static void backward(rg_act act, const float *x, const float *y, const float *dy, float *dx,
                                size_t n) {
    GRID_STRIDE(i, n) dx[i] += act_dx(act, x[i], y[i], dy[i]);
}

static unsigned blocks(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 * 16 ? b : 65535 * 16);
}

extern "C" void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n) {
    if (n) forward<<<blocks(n), 256>>>(act, x, y, n);
}

extern "C" void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                            float *dx, size_t n) {
    if (n) backward<<<blocks(n), 256>>>(act, x, y, dy, dx, n);
}
