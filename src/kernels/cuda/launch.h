/*
 * launch.h — what the kernels share (.cu files only): the element-wise launch shape (256
 * threads a block, enough blocks to cover n up to a cap, each thread striding over the
 * rest), a map over a tensor's values that knows each one's channel (four values a thread
 * where the tensor allows), the per-channel sum of a block (batch norm's statistics, a
 * bias's gradient), the activations' two storage types (loads and stores of one value or
 * four, the weights as a product's operand, the products over either), and (divide.h) the
 * index arithmetic without the device's integer division.
 */
#ifndef RG_CUDA_LAUNCH_H
#define RG_CUDA_LAUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <type_traits>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda.h"
#include "divide.h" /* a value's plane, row and column, or channel: rg_cell_of */

#define RG_CUDA_THREADS 256

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* The most blocks LAUNCH gives a kernel: its GRID_STRIDE loop takes the items past them.
 * The host's emulation sets fewer (its cuda_runtime.h): its time goes with the threads it
 * runs, so each runs many items, and every kernel's stride runs in the tests. */
#ifndef RG_CUDA_MAX_BLOCKS
#define RG_CUDA_MAX_BLOCKS (65535 * 16)
#endif

/* blocks for n items: one item a thread up to RG_CUDA_MAX_BLOCKS blocks, then a stride */
static inline unsigned rg_cuda_grid(size_t n) {
    const size_t b = (n + RG_CUDA_THREADS - 1) / RG_CUDA_THREADS;
    return (unsigned)(b < RG_CUDA_MAX_BLOCKS ? b : RG_CUDA_MAX_BLOCKS);
}

/* The graph's activations and their gradients are stored as float, or as bf16 under
 * --precision bf16 (rg_cuda_activations_bf16): a kernel that reads or writes them is a
 * template over their type T, loading each value as float, computing in float and storing
 * it as T (bf16: rounded to the nearest, ties to even).  For float both are plain accesses,
 * so fp32's bits are those of the untemplated kernels. */
typedef __nv_bfloat16 rg_bf16;
__device__ static inline float rg_load(const float *p, size_t i) { return p[i]; }
__device__ static inline float rg_load(const rg_bf16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ static inline void rg_store(float *p, size_t i, float v) { p[i] = v; }
__device__ static inline void rg_store(rg_bf16 *p, size_t i, float v) { p[i] = __float2bfloat16(v); }

/* A buffer of the C side's (float *) as what it stores: T. */
template <typename T> __host__ __device__ static inline T *rg_as(float *p) { return reinterpret_cast<T *>(p); }
template <typename T> __host__ __device__ static inline const T *rg_as(const float *p) {
    return reinterpret_cast<const T *>(p);
}

/* Weights (fp32) as the operand of a product over T: themselves, or a bf16 copy (NULL when
 * the device has no room for it). */
template <typename T> static inline const T *rg_weights_as(const float *w, size_t n);
template <> inline const float *rg_weights_as<float>(const float *w, size_t) { return w; }
template <> inline const rg_bf16 *rg_weights_as<rg_bf16>(const float *w, size_t n) {
    return (const rg_bf16 *)rg_cuda_bf16_copy(w, n);
}

/* The products over the activations' type (rg_cuda_sgemm's arguments with alpha 1, and
 * rg_cuda_sgemm_batched's with strides in values): fp32's, or bf16 operands summed in fp32
 * into a C of bf16 or of float (cublasGemmEx). */
static inline rg_status rg_product(bool ta, bool tb, int m, int n, int k, const float *a, int lda, const float *b,
                                   int ldb, float beta, float *c, int ldc) {
    return rg_cuda_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
static inline rg_status rg_product(bool ta, bool tb, int m, int n, int k, const rg_bf16 *a, int lda,
                                   const rg_bf16 *b, int ldb, float beta, rg_bf16 *c, int ldc) {
    return rg_cuda_gemm_bf16(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, true, ldc);
}
static inline rg_status rg_product(bool ta, bool tb, int m, int n, int k, const rg_bf16 *a, int lda,
                                   const rg_bf16 *b, int ldb, float beta, float *c, int ldc) {
    return rg_cuda_gemm_bf16(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, false, ldc);
}
static inline rg_status rg_products(bool ta, bool tb, int m, int n, int k, const float *a, int lda, size_t sa,
                                    const float *b, int ldb, size_t sb, float beta, float *c, int ldc, size_t sc,
                                    int count) {
    return rg_cuda_sgemm_batched(ta, tb, m, n, k, 1.0f, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, count);
}
static inline rg_status rg_products(bool ta, bool tb, int m, int n, int k, const rg_bf16 *a, int lda, size_t sa,
                                    const rg_bf16 *b, int ldb, size_t sb, float beta, rg_bf16 *c, int ldc,
                                    size_t sc, int count) {
    return rg_cuda_gemm_bf16_batched(ta, tb, m, n, k, 1.0f, a, lda, sa, b, ldb, sb, beta, c, true, ldc, sc, count);
}
static inline rg_status rg_products(bool ta, bool tb, int m, int n, int k, const rg_bf16 *a, int lda, size_t sa,
                                    const rg_bf16 *b, int ldb, size_t sb, float beta, float *c, int ldc, size_t sc,
                                    int count) {
    return rg_cuda_gemm_bf16_batched(ta, tb, m, n, k, 1.0f, a, lda, sa, b, ldb, sb, beta, c, false, ldc, sc, count);
}

/* f<T>(...) for the activations' type now: rg_bf16 under --precision bf16, else float */
#define RG_STORED(f, ...) (rg_cuda_activations_bf16 ? f<rg_bf16>(__VA_ARGS__) : f<float>(__VA_ARGS__))

/* The stream every launch, product and copy of a pass goes on: the default stream, or a
 * capture's (capture.cu); cuBLAS and cuDNN are told when it changes.  The state of
 * rg_cuda_status's failure, and its return after a capture that broke; a scratch buffer
 * moved (rg_cuda_grow: graphs holding its old address are not replayed). */
extern "C" cudaStream_t rg_cuda_work_stream(void);
extern "C" void rg_cuda_blas_stream(cudaStream_t s);
extern "C" void rg_cudnn_stream(cudaStream_t s);
extern "C" rg_status rg_cuda_failure_state(void);
extern "C" void rg_cuda_restore_failure_state(rg_status s);
extern "C" void rg_cuda_memory_moved(void);

/* While a pass is captured, and while a replayed pass's host side runs again with its
 * device work dropped (rg_cuda_dry), every launch, product and copy notes the kernel or
 * call and its arguments (rg_cuda_note): a replay goes ahead only if the host side asked
 * for the work the capture recorded (capture.cu).  An argument is noted by its bytes
 * where those are its whole value (a pointer, a number, a struct without padding); a
 * struct with padding, whose bytes there are not its value, by its members through an
 * rg_note_members(const V &) beside it, and one without either does not compile. */
extern "C" bool rg_cuda_dry(void);
extern "C" bool rg_cuda_noting(void);
extern "C" void rg_cuda_note(const void *p, size_t bytes);
template <typename V, typename = void> struct rg_notes_members : std::false_type {};
template <typename V>
struct rg_notes_members<V, std::void_t<decltype(rg_note_members(std::declval<const V &>()))>> : std::true_type {};
template <typename V> static inline void rg_cuda_note_value(const V &v) {
    if constexpr (std::has_unique_object_representations_v<V> || std::is_floating_point_v<V>) rg_cuda_note(&v, sizeof v);
    else if constexpr (rg_notes_members<V>::value) rg_note_members(v);
    else static_assert(std::is_empty_v<V>, "a kernel's argument with padding: give it an rg_note_members(const V &)");
}
template <typename... V> static inline void rg_cuda_note_all(const V &...v) {
    if (rg_cuda_noting()) (rg_cuda_note_value(v), ...);
}

/* an async copy on the work stream, noted, dropped while dry */
static inline cudaError_t rg_cuda_copy_async(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    rg_cuda_note_all(dst, src, bytes, kind);
    return rg_cuda_dry() ? cudaSuccess : cudaMemcpyAsync(dst, src, bytes, kind, rg_cuda_work_stream());
}

/* RG_KERNEL(kernel, grid, block)(args): kernel<<<grid, block, 0, work stream>>>(args), its
 * arguments as the kernel takes them noted, dropped while dry.  Every launch is written
 * through it, so that the kernels also build as plain C++ and run on the host
 * (tests/cuda_emulation/, which defines RG_LAUNCH_NOW first). */
#ifndef RG_LAUNCH_NOW
#define RG_LAUNCH_NOW(kernel, grid, block, name, ...) kernel<<<grid, block, 0, rg_cuda_work_stream()>>>(__VA_ARGS__)
#endif
template <typename... P> struct rg_launch {
    void (*kernel)(P...);
    dim3 grid, block;
    const char *name;
    template <typename... A> void operator()(A &&...a) const {
        if (rg_cuda_noting()) {
            rg_cuda_note_all(kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z);
            (rg_cuda_note_value(static_cast<P>(a)), ...);
        }
        if (!rg_cuda_dry()) RG_LAUNCH_NOW(kernel, grid, block, name, std::forward<A>(a)...);
    }
};
template <typename... P>
static inline rg_launch<P...> rg_launch_of(void (*kernel)(P...), dim3 grid, dim3 block, const char *name) {
    return {kernel, grid, block, name};
}
#define RG_KERNEL(kernel, grid, block) rg_launch_of(kernel, grid, block, #kernel)

/* kernel<<<...>>>(args) over n items, nothing when n is 0 */
#define LAUNCH(kernel, n, ...) \
    do { \
        if ((n) != 0) RG_KERNEL(kernel, rg_cuda_grid(n), RG_CUDA_THREADS)(__VA_ARGS__); \
    } while (0)

/* Four values of a buffer of T at once, as floats: quad q holds values 4q..4q+3, loaded
 * and stored as one float4 for float, as one 8-byte word of four for bf16 (each rounded
 * as rg_store rounds it), where the buffers allow: rg_cuda_quads_fit. */
struct rg_floats4 {
    float v[4];
};
struct alignas(8) rg_bf16x4 {
    rg_bf16 v[4];
};
__device__ static inline rg_floats4 rg_load4(const float *p, size_t q) {
    const float4 u = reinterpret_cast<const float4 *>(p)[q];
    return {{u.x, u.y, u.z, u.w}};
}
__device__ static inline rg_floats4 rg_load4(const rg_bf16 *p, size_t q) {
    const rg_bf16x4 u = reinterpret_cast<const rg_bf16x4 *>(p)[q];
    return {{__bfloat162float(u.v[0]), __bfloat162float(u.v[1]), __bfloat162float(u.v[2]), __bfloat162float(u.v[3])}};
}
__device__ static inline void rg_store4(float *p, size_t q, rg_floats4 v) {
    reinterpret_cast<float4 *>(p)[q] = make_float4(v.v[0], v.v[1], v.v[2], v.v[3]);
}
__device__ static inline void rg_store4(rg_bf16 *p, size_t q, rg_floats4 v) {
    rg_bf16x4 u;
    for (int k = 0; k < 4; k++) u.v[k] = __float2bfloat16(v.v[k]);
    reinterpret_cast<rg_bf16x4 *>(p)[q] = u;
}
__device__ static inline rg_floats4 rg_plus4(rg_floats4 a, rg_floats4 b) {
    return {{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2], a.v[3] + b.v[3]}};
}

/* whether n values of buffers a, b, c of T (NULL: none) go as quads: n a multiple of 4,
 * each buffer aligned to a quad */
template <typename T>
static inline bool rg_cuda_quads_fit(size_t n, const void *a, const void *b, const void *c) {
    return n % 4 == 0 && ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % (4 * sizeof(T)) == 0;
}

/* out[i] = f(c, a[i], b[i]), or out[i] + that when add, for every value i of a batch x C x hw
 * tensor of the activations' type T, c its channel (a or b NULL: f sees 0 for it): four
 * values a thread, one channel found for them, where hw is a multiple of 4 and the buffers
 * allow quads; else one. */
template <typename T, typename F>
__global__ static void rg_cuda_channel_values(const T *a, const T *b, T *out, bool add, size_t n, rg_planes channels,
                                              F f) {
    GRID_STRIDE(i, n) {
        const float v = f(rg_channel_of(i, channels), a ? rg_load(a, i) : 0.0f, b ? rg_load(b, i) : 0.0f);
        rg_store(out, i, add ? rg_load(out, i) + v : v);
    }
}

template <typename T, typename F>
__global__ static void rg_cuda_channel_quads(const T *a, const T *b, T *out, bool add, size_t quads,
                                             rg_planes channels, F f) {
    GRID_STRIDE(q, quads) {
        const int c = rg_channel_of(q, channels);
        const rg_floats4 u = a ? rg_load4(a, q) : rg_floats4{}, w = b ? rg_load4(b, q) : rg_floats4{};
        rg_floats4 v;
        for (int k = 0; k < 4; k++) v.v[k] = f(c, u.v[k], w.v[k]);
        rg_store4(out, q, add ? rg_plus4(rg_load4(out, q), v) : v);
    }
}

template <typename T, typename F>
static void rg_cuda_channel_map(const T *a, const T *b, T *out, bool add, size_t n, int C, size_t hw, F f) {
    if (hw % 4 == 0 && rg_cuda_quads_fit<T>(n, a, b, out)) {
        const auto channel_quads = rg_cuda_channel_quads<T, F>;
        LAUNCH(channel_quads, n / 4, a, b, out, add, n / 4, rg_planes_of(C, hw / 4), f);
    } else {
        const auto channel_values = rg_cuda_channel_values<T, F>;
        LAUNCH(channel_values, n, a, b, out, add, n, rg_planes_of(C, hw), f);
    }
}

/* The fold by join of one value from each of the block's RG_CUDA_THREADS threads, a fixed
 * tree (the same bits every run), every thread receiving it; part: the block's shared
 * scratch of RG_CUDA_THREADS values. */
template <typename T, typename Join>
__device__ static T rg_cuda_block_fold(T v, T *part, Join join) {
    part[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = RG_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] = join(part[threadIdx.x], part[threadIdx.x + half]);
        __syncthreads();
    }
    const T total = part[0];
    __syncthreads(); /* part is reused by the next fold */
    return total;
}

struct rg_cuda_plus {
    template <typename T> __host__ __device__ T operator()(T a, T b) const { return a + b; }
    __host__ __device__ double2 operator()(double2 a, double2 b) const { return {a.x + b.x, a.y + b.y}; }
};

/* The sums in double of f(i) (two at once: f gives a double2) over values from..to-1 of
 * channel c (counting samples, then positions) of a batch x C x hw tensor, by the
 * RG_CUDA_THREADS threads of one block, every thread receiving them: thread t adds values
 * from + t, from + t + THREADS, ... and a tree adds the threads' parts, so the bits do not
 * change between runs.  (b, p) steps without a division. */
template <typename F>
__device__ static double2 rg_cuda_channel_sums(int C, size_t hw, int c, size_t from, size_t to, F f) {
    __shared__ double2 part[RG_CUDA_THREADS];
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
    return rg_cuda_block_fold(s, part, rg_cuda_plus{});
}

/* f for rg_cuda_channel_sums from a per-value term over one or two buffers of T: term(a's
 * value, b's (0 when b is NULL)) gives a value's two terms, term.of_channel(c) channel c's
 * term.  One value an index (rg_cuda_each), or four (rg_cuda_in_quads: quad q the values
 * 4q..4q+3 of one plane, loaded in one word a buffer, their terms added in index order). */
template <typename T, typename F>
struct rg_cuda_each {
    const T *a, *b;
    F term;
    __device__ double2 operator()(size_t i) const { return term(rg_load(a, i), b ? rg_load(b, i) : 0.0f); }
    __device__ rg_cuda_each of_channel(int c) const { return {a, b, term.of_channel(c)}; }
};
template <typename T, typename F> static inline void rg_note_members(const rg_cuda_each<T, F> &v) {
    rg_cuda_note_all(v.a, v.b, v.term);
}
template <typename T, typename F>
struct rg_cuda_in_quads {
    const T *a, *b;
    F term;
    __device__ double2 operator()(size_t q) const {
        const rg_floats4 u = rg_load4(a, q), v = b ? rg_load4(b, q) : rg_floats4{};
        double2 s = {0, 0};
        for (int k = 0; k < 4; k++) {
            const double2 t = term(u.v[k], v.v[k]);
            s.x += t.x, s.y += t.y;
        }
        return s;
    }
    __device__ rg_cuda_in_quads of_channel(int c) const { return {a, b, term.of_channel(c)}; }
};
template <typename T, typename F> static inline void rg_note_members(const rg_cuda_in_quads<T, F> &v) {
    rg_cuda_note_all(v.a, v.b, v.term);
}

/* the term of the values themselves (and nothing) */
struct rg_cuda_value {
    __device__ double2 operator()(float x, float) const { return {x, 0.0}; }
    __device__ rg_cuda_value of_channel(int) const { return *this; }
};

/* Per-channel sums cut into runs, so that a tensor of few channels still fills the device:
 * a C x runs grid of blocks, block (c, r) summing run r of channel c's m values (samples,
 * then positions) into part[c][r][0, 1]; the last of channel c's blocks to finish adds its
 * runs' sums in order and finishes the channel (done) in the same launch.  Which block is
 * last is counted on the device (tickets: one a channel, zero between launches, the last
 * block puts it back); it decides only who adds the sums, never what they are or their
 * order.  How many runs: enough blocks for the device when the channels are few, none
 * shorter than 2,048 values. */
static inline int rg_cuda_runs(int C, size_t m) {
    const size_t most = C < 512 ? 1024 / (size_t)C : 1, by_length = (m + 2047) / 2048;
    return (int)(by_length < most ? (by_length ? by_length : 1) : most);
}

/* the sums k (0, 1) of channel c's runs, added in order (read past the SM's cache: other
 * blocks wrote them) */
__device__ static inline double rg_cuda_runs_total(const double *part, int c, int runs, int k) {
    double s = 0;
    for (int r = 0; r < runs; r++) s += __ldcg(part + 2 * ((size_t)c * runs + r) + k);
    return s;
}

/* f.of_channel(c) gives channel c's f for rg_cuda_channel_sums; done(c, part, runs) finishes
 * channel c from its runs' sums (rg_cuda_runs_total) */
template <typename F, typename D>
__global__ static void rg_cuda_run_sums(int C, size_t hw, size_t m, F f, D done, double *part, unsigned *tickets) {
    const size_t len = (m + gridDim.y - 1) / gridDim.y, from = blockIdx.y * len, to = from + len < m ? from + len : m;
    const double2 s = rg_cuda_channel_sums(C, hw, blockIdx.x, from, to, f.of_channel(blockIdx.x));
    if (threadIdx.x) return;
    double *p = part + 2 * ((size_t)blockIdx.x * gridDim.y + blockIdx.y);
    p[0] = s.x, p[1] = s.y;
    if (gridDim.y > 1) {
        __threadfence(); /* this run's sums seen before its ticket */
        if (atomicAdd(&tickets[blockIdx.x], 1u) != gridDim.y - 1) return;
        tickets[blockIdx.x] = 0;
        __threadfence(); /* every other run's sums, seen before their tickets, read after */
    }
    done((int)blockIdx.x, part, (int)gridDim.y);
}

template <typename F, typename D>
static void rg_cuda_launch_run_sums(int C, size_t hw, size_t m, int runs, F f, D done, rg_cuda_runs_scratch s) {
    const auto run_sums = rg_cuda_run_sums<F, D>;
    RG_KERNEL(run_sums, dim3((unsigned)C, (unsigned)runs), RG_CUDA_THREADS)(C, hw, m, f, done, s.part, s.tickets);
}

/* rg_cuda_launch_run_sums of term over a batch x C x hw tensor a (and b, NULL: none) of T,
 * four values a load where hw is a multiple of 4 and the buffers allow quads, else one. */
template <typename T, typename F, typename D>
static void rg_cuda_launch_run_sums4(int C, size_t hw, size_t m, int runs, const T *a, const T *b, F term, D done,
                                     rg_cuda_runs_scratch s) {
    if (hw % 4 == 0 && rg_cuda_quads_fit<T>(m * C, a, b, NULL))
        rg_cuda_launch_run_sums(C, hw / 4, m / 4, runs, rg_cuda_in_quads<T, F>{a, b, term}, done, s);
    else
        rg_cuda_launch_run_sums(C, hw, m, runs, rg_cuda_each<T, F>{a, b, term}, done, s);
}

#endif
