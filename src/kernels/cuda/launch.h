/*
 * launch.h — the launch shape the element-wise kernels share (.cu files only): 256 threads a
 * block, enough blocks to cover n up to a cap, each thread striding over the rest.
 */
#ifndef RG_CUDA_LAUNCH_H
#define RG_CUDA_LAUNCH_H

#include <stddef.h>

#define RG_CUDA_THREADS 256

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* blocks for n items: one item a thread up to 16 x 65535 blocks, then a stride */
static inline unsigned rg_cuda_grid(size_t n) {
    const size_t b = (n + RG_CUDA_THREADS - 1) / RG_CUDA_THREADS;
    return (unsigned)(b < 65535 * 16 ? b : 65535 * 16);
}

/* kernel<<<...>>>(args) over n items, nothing when n is 0 */
#define LAUNCH(kernel, n, ...) \
    do { \
        if (n) kernel<<<rg_cuda_grid(n), RG_CUDA_THREADS>>>(__VA_ARGS__); \
    } while (0)

#endif
