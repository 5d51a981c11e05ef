/*
 * vector.cu — the backend's passes over n floats on the device, each written as the CPU's
 * vector.c writes it (nvcc's -fmad=false keeps x0 + f d two roundings, as there), so each
 * gives the CPU's bits: x = v, x *= f, dst = src, out = a - b, x = x0 + f d, x *= m, and x
 * clamped to [-v, v].
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

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

/* Piece p of n, x[at[p] .. at[p] + len[p]), scaled by f[p]: a block a piece. */
__global__ static void scale_pieces(float *x, const size_t *at, const size_t *len, const float *f, size_t n) {
    for (size_t p = blockIdx.x; p < n; p += gridDim.x)
        for (size_t i = threadIdx.x; i < len[p]; i += blockDim.x) x[at[p] + i] *= f[p];
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

/* The pieces' places and factors go up in one copy that does not wait, packed as at, len,
 * then f, into device scratch (grown, never shrunk; each call's copy lands after the last
 * call's kernel has read it, both on the work stream). */
extern "C" void rg_cuda_scale_pieces(float *x, const size_t *at, const size_t *len, size_t n, const float *f) {
    static void *packed_dev;
    static size_t packed_room;
    static char *packed;
    static size_t packed_host_room;
    if (!n) return;
    const size_t bytes = 2 * n * sizeof(size_t) + n * sizeof(float);
    if (bytes > packed_host_room) {
        char *p = (char *)realloc(packed, bytes);
        if (!p) return rg_cuda_note_failure("scaling the remedies' pieces", "out of host memory");
        packed = p, packed_host_room = bytes;
    }
    if (!rg_cuda_grow(&packed_dev, &packed_room, bytes))
        return rg_cuda_note_failure("scaling the remedies' pieces", "out of device memory");
    memcpy(packed, at, n * sizeof(size_t));
    memcpy(packed + n * sizeof(size_t), len, n * sizeof(size_t));
    memcpy(packed + 2 * n * sizeof(size_t), f, n * sizeof(float));
    rg_cuda_upload_later(packed_dev, packed, bytes);
    const size_t *at_dev = (const size_t *)packed_dev, *len_dev = at_dev + n;
    const float *f_dev = (const float *)(len_dev + n);
    RG_KERNEL(scale_pieces, dim3((unsigned)(n < 65535 ? n : 65535)), RG_CUDA_THREADS)(x, at_dev, len_dev, f_dev, n);
}
