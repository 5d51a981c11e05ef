/*
 * vector.cu — the backend's passes over n floats on the device, each written as the CPU's
 * vector.c writes it (nvcc's -fmad=false keeps x0 + f d two roundings, as there), so each
 * gives the CPU's bits: x = v, x *= f, dst = src, out = a - b, x = x0 + f d, x *= m, and x
 * clamped to [-v, v].
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

__global__ static void fill(float *x, size_t n, float v) {
    GRID_STRIDE(i, n) x[i] = v;
}

__global__ static void scale(float *x, size_t n, float f) {
    GRID_STRIDE(i, n) x[i] *= f;
}

__global__ static void subtract(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] - b[i];
}

__global__ static void step_along(float *x, const float *x0, const float *d, size_t n, float f) {
    GRID_STRIDE(i, n) x[i] = x0[i] + f * (d ? d[i] : x[i] - x0[i]);
}

__global__ static void multiply(float *x, const float *m, size_t n) {
    GRID_STRIDE(i, n) x[i] *= m[i];
}

__global__ static void clamp(float *x, size_t n, float v) {
    GRID_STRIDE(i, n) x[i] = x[i] > v ? v : x[i] < -v ? -v : x[i];
}

extern "C" void rg_cuda_fill(float *x, size_t n, float v) { LAUNCH(fill, n, x, n, v); }
extern "C" void rg_cuda_scale(float *x, size_t n, float f) { LAUNCH(scale, n, x, n, f); }
extern "C" void rg_cuda_subtract(float *out, const float *a, const float *b, size_t n) {
    LAUNCH(subtract, n, out, a, b, n);
}
extern "C" void rg_cuda_step_along(float *x, const float *x0, const float *d, size_t n, float f) {
    LAUNCH(step_along, n, x, x0, d, n, f);
}
extern "C" void rg_cuda_multiply(float *x, const float *m, size_t n) { LAUNCH(multiply, n, x, m, n); }
extern "C" void rg_cuda_clamp(float *x, size_t n, float v) { LAUNCH(clamp, n, x, n, v); }
extern "C" void rg_cuda_copy(float *dst, const float *src, size_t n) {
    if (n) rg_cuda_copy_async(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice);
}
