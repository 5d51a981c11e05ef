/*
 * cuda_runtime.h (tests/cuda_emulation/) — what the CUDA backend's kernels need of CUDA, on
 * the host, so that the .cu files of src/kernels/cuda/ build with g++ as plain C++ and run: found in place
 * of the toolkit's header (the emulation's objects are compiled with -I of this folder).
 * The keywords are dropped (__shared__ becomes static: a block's threads run one block at a
 * time, so they share it), the vector types and the rounded intrinsics are plain C++, the
 * runtime's calls are host memory and copies (cuda_emulation.cpp), and a launch through
 * RG_KERNEL (RG_LAUNCH_NOW) runs every thread of every block, each thread a fiber that __syncthreads
 * suspends until the whole block has reached it.  bf16 is cuda_bf16.h's.  cuDNN's
 * convolutions are cudnn_emulation.cpp's, with REGRAD_EMULATION_CUDNN=1 (else conv.cu's own
 * path takes them).  Not emulated: cuBLAS (the products are the CPU's rg_sgemm, bf16's over
 * its operands widened to float and its output rounded back), streams (every copy and
 * launch completes in order, at once, but for a stream
 * capturing: see cudaStreamBeginCapture), warp-level behaviour (the kernels use none).
 */
#ifndef RG_CUDA_EMULATION_RUNTIME_H
#define RG_CUDA_EMULATION_RUNTIME_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <math.h>
#include <tuple>

/* LAUNCH's grid (launch.h): a few blocks, each thread many items of its grid stride */
#define RG_CUDA_MAX_BLOCKS 4

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

/* the calling thread's place in the launch that runs it: of a type without a constructor,
 * so a kernel reads each as a plain thread-local value, not through a call that first
 * checks the file defining it has initialised its thread-local values */
struct rg_emulated_index {
    unsigned x, y, z;
};
extern thread_local rg_emulated_index threadIdx, blockIdx, blockDim, gridDim;
void __syncthreads(void);

/* each operation rounded on its own: the emulation is compiled with -ffp-contract=off */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline uint32_t __umulhi(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a * b) >> 32); }

/* blocks run one after another here: a fence and an atomic as the host's */
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline double __ldcg(const double *p) { return *p; }

/* the runtime: host memory, copies done at once, one device */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
} cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
typedef struct rg_emulated_stream *cudaStream_t;
typedef struct rg_emulated_event *cudaEvent_t;
typedef struct rg_emulated_graph *cudaGraph_t; /* the work a capture recorded, in order */
typedef struct rg_emulated_graph *cudaGraphExec_t;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
};
#define cudaStreamDefault 0u
#define cudaStreamNonBlocking 1u
#define cudaEventDisableTiming 2u
#define cudaHostRegisterDefault 0u

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int index);
cudaError_t cudaGetDevice(int *index);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int index);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostRegister(void *p, size_t bytes, unsigned flags);
cudaError_t cudaHostUnregister(void *p);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
/* Capture: the calling thread's launches, products and copies on the capturing stream are
 * recorded, not run, and a graph runs them in order; work on any other stream, and a call
 * that waits for the device or allocates, breaks the capture (as CUDA's blocking capture
 * stream and thread-local mode do): that call fails and so does the capture's end.  With
 * REGRAD_EMULATION_BREAK_CAPTURE=1 every capture breaks at its first work. */
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
/* the stream the backend puts a pass's work on (capture.cu) */
extern "C" cudaStream_t rg_cuda_work_stream(void);

namespace rg_emulation {
/* Runs body once for every thread of a grid x block launch, block after block (kernel: its
 * name as the launch spells it, for REGRAD_EMULATION_COUNT=kernels). */
void run(dim3 grid, dim3 block, const std::function<void()> &body, const char *kernel);
/* work queued on stream s: run now, or recorded by the capture on s (false: it broke the
 * capture of another stream, and did not run) */
bool submit(cudaStream_t s, std::function<void()> work);

template <typename... P>
struct launch {
    dim3 grid, block;
    void (*kernel)(P...);
    const char *name;
    cudaStream_t stream;
    template <typename... A>
    void operator()(A &&...a) const {
        const std::tuple<P...> args(std::forward<A>(a)...); /* converted as a launch converts them */
        const launch self = *this;
        submit(stream, [self, args] {
            run(self.grid, self.block, [&] { std::apply(self.kernel, args); }, self.name); /* each thread its copy */
        });
    }
};
template <typename... P>
launch<P...> launch_of(dim3 grid, dim3 block, void (*kernel)(P...), const char *name, cudaStream_t stream) {
    return {grid, block, kernel, name, stream};
}
} // namespace rg_emulation

#define RG_LAUNCH_NOW(kernel, grid, block, name, ...) \
    rg_emulation::launch_of(grid, block, kernel, name, rg_cuda_work_stream())(__VA_ARGS__)

#endif
