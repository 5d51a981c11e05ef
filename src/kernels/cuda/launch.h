/*
 * launch.h — what the kernels share (.cu files only): the element-wise launch shape (256
 * threads a block, enough blocks to cover n up to a cap, each thread striding over the
 * rest), the per-channel sum of a block (batch norm's statistics, a bias's gradient), and
 * (divide.h) the index arithmetic without the device's integer division.
 */
#ifndef RG_CUDA_LAUNCH_H
#define RG_CUDA_LAUNCH_H

#include <stddef.h>

#include "divide.h" /* a value's plane, row and column, or channel: rg_cell_of */

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

/* The sums in double of f(i) (two at once: f gives a double2) over values from..to-1 of
 * channel c (counting samples, then positions) of a batch x C x hw tensor, by the
 * RG_CUDA_THREADS threads of one block, every thread receiving them: thread t adds values
 * from + t, from + t + THREADS, ... and a tree adds the threads' parts, so the bits do not
 * change between runs.  (b, p) steps without a division. */
template <typename F>
__device__ static double2 rg_cuda_channel_sums(int C, size_t hw, int c, size_t from, size_t to, F f) {
    __shared__ double part[2][RG_CUDA_THREADS];
    const size_t step_b = RG_CUDA_THREADS / hw, step_p = RG_CUDA_THREADS % hw;
    size_t t = from + threadIdx.x, b = t / hw, p = t % hw;
    double2 s = {0, 0};
#define RG_NEXT_VALUE(at)                      \
    const size_t at = (b * C + c) * hw + p;    \
    b += step_b, p += step_p;                  \
    if (p >= hw) p -= hw, b++;
    /* four values' loads in flight at once (one at a time leaves the memory idle), added in
     * the order the one-at-a-time loop adds them */
    for (; t + 3 * RG_CUDA_THREADS < to; t += 4 * RG_CUDA_THREADS) {
        RG_NEXT_VALUE(i0) RG_NEXT_VALUE(i1) RG_NEXT_VALUE(i2) RG_NEXT_VALUE(i3)
        const double2 v0 = f(i0), v1 = f(i1), v2 = f(i2), v3 = f(i3);
        s.x += v0.x, s.y += v0.y, s.x += v1.x, s.y += v1.y;
        s.x += v2.x, s.y += v2.y, s.x += v3.x, s.y += v3.y;
    }
    for (; t < to; t += RG_CUDA_THREADS) {
        RG_NEXT_VALUE(i)
        const double2 v = f(i);
        s.x += v.x, s.y += v.y;
    }
#undef RG_NEXT_VALUE
    part[0][threadIdx.x] = s.x, part[1][threadIdx.x] = s.y;
    __syncthreads();
    for (int half = RG_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            part[0][threadIdx.x] += part[0][threadIdx.x + half], part[1][threadIdx.x] += part[1][threadIdx.x + half];
        __syncthreads();
    }
    const double2 total = {part[0][0], part[1][0]};
    __syncthreads(); /* part is reused by the next sum */
    return total;
}

/* f for rg_cuda_channel_sums: the values themselves (and nothing) */
struct rg_cuda_values {
    const float *x;
    __device__ double2 operator()(size_t i) const { return {x[i], 0.0}; }
};

#endif
