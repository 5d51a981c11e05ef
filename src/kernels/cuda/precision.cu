/*
 * precision.cu — the precision a graph runs in on the device: whether its activations
 * and their gradients are stored as bf16 (--precision bf16; launch.h's kernels follow
 * rg_cuda_activations_bf16) and whether fp32 products take TF32 tensor cores; the casts
 * bf16 needs, of an input's uploaded floats to the activations' bf16 and of fp32 weights
 * to a bf16 copy for a product; and whether the device has bf16 at all.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

extern "C" rg_status rg_fail(rg_status status, const char *fmt, ...);

bool rg_cuda_activations_bf16 = false;

extern "C" void rg_cuda_set_precision(bool tf32, bool bf16) {
    rg_cuda_activations_bf16 = bf16;
    rg_cuda_set_products(tf32, bf16);
}

extern "C" rg_status rg_cuda_bf16_ready(void) {
    int device = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&p, device) != cudaSuccess)
        return rg_fail(RG_ERR_STATE, "cuda: cannot read the device's properties for bf16");
    if (p.major < 8)
        return rg_fail(RG_ERR_STATE, "cuda:%d has compute %d.%d; bf16 needs 8.0 or later: use --precision fp32",
                       device, p.major, p.minor);
    return RG_OK;
}

__global__ static void to_bf16(rg_bf16 *dst, const float *src, size_t n) {
    GRID_STRIDE(i, n) rg_store(dst, i, src[i]);
}

extern "C" void rg_cuda_to_bf16(float *dst, const float *src, size_t n) {
    LAUNCH(to_bf16, n, rg_as<rg_bf16>(dst), src, n);
}

__global__ static void add_bf16(float *dst, const rg_bf16 *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] += rg_load(src, i);
}

extern "C" void rg_cuda_add_bf16(float *dst, const void *src, size_t n) {
    LAUNCH(add_bf16, n, dst, (const rg_bf16 *)src, n);
}

extern "C" const void *rg_cuda_bf16_copy(const float *src, size_t n) {
    static void *copy;
    static size_t room;
    if (!rg_cuda_grow(&copy, &room, (n ? n : 1) * sizeof(rg_bf16))) {
        rg_cuda_note_failure("a bf16 copy of the weights", "out of device memory");
        return NULL;
    }
    LAUNCH(to_bf16, n, (rg_bf16 *)copy, src, n);
    return copy;
}
