/*
 * reduce.cu — reductions over device buffers in a fixed order (no atomics): each of a fixed
 * number of blocks folds a fixed stride of the values and then its threads as a tree; the
 * host folds the blocks' results in order.  Fewer values than the blocks' threads take only
 * the blocks they fill: the blocks left out would each give the fold's identity, so the
 * bits are the same.  The same input gives the same bits on every run and every device of
 * the same kind.  The sums of squares are in double (each square of a
 * float is exact there); counts and the first non-finite index are exact in any order.
 * Sums of squares of many pieces at once (GRA's guards) take one launch, each piece's
 * blocks its own reduction's, and their results arrive through the flush's queue.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <pthread.h>

#define BLOCKS 256
#define THREADS RG_CUDA_THREADS

/* What each value contributes (map) and how two contributions fold (join). */
struct square {
    __device__ double operator()(float v, size_t) const { return (double)v * v; }
};
struct is_zero {
    __device__ unsigned long long operator()(float v, size_t) const { return v == 0.0f; }
};
struct is_nonfinite {
    __device__ unsigned long long operator()(float v, size_t) const { return !isfinite(v); }
};
struct nonfinite_index { /* the index of a non-finite value, else n (past every index) */
    size_t n;
    __device__ unsigned long long operator()(float v, size_t i) const { return isfinite(v) ? n : i; }
};
struct least {
    template <typename T> __host__ __device__ T operator()(T a, T b) const { return b < a ? b : a; }
};

/* Block `block` of `blocks` over x's n values: its stride folded, then its threads as a
 * tree; every thread gets the block's result. */
template <typename T, typename Map, typename Join>
__device__ static T block_part(const float *x, size_t n, size_t block, size_t blocks, T zero, Map map, Join join) {
    __shared__ T part[THREADS];
    T s = zero;
    for (size_t i = block * THREADS + threadIdx.x; i < n; i += blocks * THREADS) s = join(s, map(x[i], i));
    return rg_cuda_block_fold(s, part, join);
}

template <typename T, typename Map, typename Join>
__global__ static void block_reduce(const float *x, size_t n, T zero, Map map, Join join, T *out) {
    const T s = block_part(x, n, blockIdx.x, gridDim.x, zero, map, join);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

/* The blocks' results: 8 bytes each, allocated once. */
static void *block_results;
static pthread_once_t results_once = PTHREAD_ONCE_INIT;
static void allocate_results(void) {
    if (cudaMalloc(&block_results, BLOCKS * 8) != cudaSuccess) block_results = NULL;
}

/* The blocks a reduction of n values launches: those its values fill, up to BLOCKS. */
static int blocks_for(size_t n) { return n < (size_t)BLOCKS * THREADS ? (int)((n + THREADS - 1) / THREADS) : BLOCKS; }

/* Whether the device gave the result; when it fails, each caller returns what reads as
 * trouble (NaN, a non-finite value at 0), and the next synchronising call reports why. */
template <typename T, typename Map, typename Join>
static bool reduce(const float *x, size_t n, T zero, Map map, Join join, T *result) {
    static_assert(sizeof(T) == 8, "block results are 8 bytes");
    pthread_once(&results_once, allocate_results);
    T h[BLOCKS];
    *result = zero;
    if (n == 0) return true;
    if (!block_results) return false;
    const int blocks = blocks_for(n);
    const auto reduce = block_reduce<T, Map, Join>;
    RG_KERNEL(reduce, blocks, THREADS)(x, n, zero, map, join, (T *)block_results);
    if (cudaMemcpy(h, block_results, blocks * sizeof *h, cudaMemcpyDeviceToHost) != cudaSuccess) return false;
    for (int b = 0; b < blocks; b++) *result = join(*result, h[b]);
    return true;
}

extern "C" double rg_cuda_sum_squares(const float *x, size_t n) {
    double s;
    return reduce<double>(x, n, 0.0, square(), rg_cuda_plus(), &s) ? s : NAN;
}

/* Up to PIECES pieces' sums of squares in one launch, each piece's blocks doing what its
 * own reduce's would (the same values, strides and tree: the same bits), piece i's blocks
 * numbered from first[i]; passed by value, as the launch's argument. */
#define PIECES 32
struct pieces {
    size_t n, first[PIECES + 1], len[PIECES];
    const float *x[PIECES];
};

__global__ static void piece_squares(pieces p, double *out) {
    int i = 0;
    while (i + 1 < (int)p.n && p.first[i + 1] <= blockIdx.x) i++;
    const double s = block_part(p.x[i], p.len[i], blockIdx.x - p.first[i], p.first[i + 1] - p.first[i], 0.0,
                                square(), rg_cuda_plus());
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

/* The blocks' results go to the flush's queue (health.cu), which adds each piece's in the
 * order the host would: rg_cuda_sum_squares's bits, without a wait a piece. */
extern "C" void rg_cuda_sums_of_squares(const float *const *x, const size_t *len, double *const *out, int n) {
    for (int at = 0; at < n; at += PIECES) {
        pieces p = {};
        size_t parts[PIECES];
        double *outs[PIECES];
        size_t m = 0;
        for (int i = at; i < n && i < at + PIECES; i++) {
            if (len[i] == 0) { /* no blocks: the sum is 0 at once */
                *out[i] = 0;
                continue;
            }
            p.x[m] = x[i], p.len[m] = len[i], outs[m] = out[i];
            parts[m] = (size_t)blocks_for(len[i]), p.first[m + 1] = p.first[m] + parts[m];
            m++;
        }
        p.n = m;
        double *slots = m ? rg_cuda_sums_slots(m, parts, outs) : NULL;
        if (slots) RG_KERNEL(piece_squares, (unsigned)p.first[m], THREADS)(p, slots);
    }
}

extern "C" size_t rg_cuda_count_zeros(const float *x, size_t n) {
    unsigned long long c;
    return reduce<unsigned long long>(x, n, 0, is_zero(), rg_cuda_plus(), &c) ? (size_t)c : 0;
}

extern "C" long rg_cuda_count_nonfinite(const float *x, size_t n) {
    unsigned long long c;
    return reduce<unsigned long long>(x, n, 0, is_nonfinite(), rg_cuda_plus(), &c) ? (long)c : (long)n;
}

extern "C" size_t rg_cuda_first_nonfinite(const float *x, size_t n) {
    unsigned long long i;
    return reduce<unsigned long long>(x, n, n, nonfinite_index{n}, least(), &i) ? (size_t)i : 0;
}
