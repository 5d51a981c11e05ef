/*
 * cuda_emulation.cpp — the host side of the CUDA emulation (cuda_runtime.h beside it): the
 * launches, each block's threads as fibers that __syncthreads switches between (x86-64),
 * so a block's threads all reach a barrier before any goes past it, as on the device; the
 * runtime's memory and copies in host memory; the products of blas.cu by the CPU's
 * rg_sgemm (cuDNN's convolutions: cudnn_emulation.cpp).  Linked with the real kernels
 * compiled by g++, it lets the CPU's tests run the CUDA backend's own kernel code
 * (test_device_emulated, test_cuda_emulated, and regrad_emulated_device, which
 * test_device_cli_emulated.sh runs).  REGRAD_EMULATION_COUNT=1 prints at exit what a GPU
 * would have been asked: the kernels launched, the products (cuBLAS calls), the copies
 * (those down to the host apart) and the waits for all the work queued (a synchronous
 * copy to or from the host, a device synchronize: the device runs dry at each), for the
 * cost of small steps,
 * which their launches bound; REGRAD_EMULATION_COUNT=kernels adds each kernel's launches,
 * most first, and the threads they ran (what the emulation's time goes with).
 */
#include "cuda_runtime.h"
#include "cuda_bf16.h"

#include <regrad.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "../../src/kernels/kernels.h" /* rg_sgemm, rg_conv_geom */
}
#include "../../src/kernels/cuda/launch.h" /* rg_cuda_note_all, rg_cuda_dry */

thread_local rg_emulated_index threadIdx, blockIdx, blockDim, gridDim;

namespace {
struct counts {
    std::atomic<long> kernels{0}, products{0}, copies{0}, downloads{0}, drains{0}, graphs{0};
    std::mutex lock;
    std::map<std::string, std::pair<long, long long>> by_kernel; /* =kernels: launches, threads */
    ~counts() {
        const char *how = getenv("REGRAD_EMULATION_COUNT");
        if (!how || !strcmp(how, "0")) return;
        fprintf(stderr, "cuda emulation: %ld kernels, %ld products, %ld copies (%ld to the host), %ld waits for all "
                        "the work queued, %ld graphs\n",
                kernels.load(), products.load(), copies.load(), downloads.load(), drains.load(), graphs.load());
        if (strcmp(how, "kernels") != 0) return;
        std::vector<std::pair<std::pair<long, long long>, std::string>> most;
        for (const auto &k : by_kernel) most.push_back({{-k.second.first, k.second.second}, k.first});
        std::sort(most.begin(), most.end());
        fprintf(stderr, "  launches     threads  kernel\n");
        for (const auto &k : most)
            fprintf(stderr, "%10ld  %10lld  %s\n", -k.first.first, k.first.second, k.second.c_str());
    }
} counted;
} // namespace

/* Switching between fibers: each fiber has its own stack, and a switch saves the registers a
 * call must keep (x86-64's rbx, rbp, r12-r15) on the stack it leaves, its stack pointer
 * where the caller says, and takes the other's (a few instructions: swapcontext would also
 * set the signal mask, a system call at every switch).  A fiber outlives its block: at the
 * end of the kernel's body it goes back to the scheduler and, resumed, starts the body
 * again for its thread of the next block. */
extern "C" void rg_emulation_switch(void **save_sp, void *to_sp);
asm(R"(
    .text
    .globl rg_emulation_switch
    .type rg_emulation_switch, @function
rg_emulation_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rg_emulation_switch, .-rg_emulation_switch
)");

namespace {

constexpr size_t STACK_BYTES = 64 << 10;

struct fiber {
    void *sp; /* where it is suspended */
    std::unique_ptr<char[]> stack{new char[STACK_BYTES]};
    unsigned nth; /* the thread's fiber it is, which staggers where its stack starts */
    bool started, done, waiting;
};
/* the calling thread's, kept between launches (a pointer: a thread-local value with a
 * destructor is reached through a check on every use; the fibers of a thread that ends
 * are not freed, as the emulation's threads live as long as the process) */
thread_local std::vector<std::unique_ptr<fiber>> *fibers;
thread_local void *scheduler; /* the scheduler's stack, while a fiber runs */

struct launch_state {
    const std::function<void()> *body;
    const std::unique_ptr<fiber> *fibers; /* the calling thread's */
    unsigned current;                     /* the thread running */
    bool direct;                          /* its threads one after another, not as fibers */
};
thread_local launch_state *running;

/* from the fiber running back to the scheduler */
void suspend(fiber &f) { rg_emulation_switch(&f.sp, scheduler); }

[[noreturn]] void fiber_entry() {
    for (;;) {
        (*running->body)();
        fiber &f = *running->fibers[running->current];
        f.done = true;
        suspend(f);
    }
}

/* a new fiber's stack as a switch leaves it: six registers' slots over fiber_entry's
 * address, which the switch returns to with the stack aligned as at a call.  Each fiber's
 * stack starts a cache line further from its end than the last one's (up to 63): stacks
 * 64 KiB apart would otherwise have their tops in the same cache sets, and a block's
 * switches would evict one another's. */
void *first_stack(fiber &f) {
    const uintptr_t top = ((uintptr_t)f.stack.get() + STACK_BYTES - 64 * (f.nth % 64)) & ~(uintptr_t)15;
    void **sp = (void **)(top - 16);
    sp[1] = nullptr; /* fiber_entry's return address: it never returns */
    sp[0] = (void *)fiber_entry;
    sp -= 6;
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    return sp;
}

/* index t of a block or grid of this shape, set field by field (a struct returned and
 * copied whole makes every resume wait on a store forwarded in two halves) */
void set_index(rg_emulated_index &at, unsigned t, dim3 shape) {
    if (shape.y == 1 && shape.z == 1) { /* most launches: no division */
        at.x = t, at.y = 0, at.z = 0;
        return;
    }
    at.x = t % shape.x, at.y = t / shape.x % shape.y, at.z = t / (shape.x * shape.y);
}

/* thread t of the block runs to its next barrier (true) or its end */
bool resume(launch_state &r, unsigned t, dim3 block) {
    fiber &f = *r.fibers[t];
    set_index(threadIdx, t, block);
    r.current = t;
    f.waiting = false;
    if (!f.started) f.sp = first_stack(f), f.started = true;
    rg_emulation_switch(&scheduler, f.sp);
    return f.waiting;
}

} // namespace

void __syncthreads(void) {
    launch_state *r = running;
    if (!r || r->direct) {
        fprintf(stderr, "cuda emulation: thread %u reached a __syncthreads that thread 0 of its block did not\n",
                r ? r->current : 0);
        abort();
    }
    fiber &f = *r->fibers[r->current];
    f.waiting = true;
    suspend(f);
}

/* Each block's first thread runs first, as a fiber.  When it ends without a barrier, the
 * kernel has none (a barrier some threads skip is a bug: the check below), and the block's
 * other threads run one after another; else every thread is a fiber, and each phase runs
 * every live thread to the next barrier or its end.  Blocks and threads go in index order,
 * or with REGRAD_EMULATION_ORDER=reverse in the reverse order, which changes what a kernel
 * computes only if its result depends on the order its blocks or threads run in (a race
 * on a GPU): test_cuda_emulated and test_device_cli_emulated.sh run both ways. */
static bool counts_kernels() {
    static const bool k = getenv("REGRAD_EMULATION_COUNT") && !strcmp(getenv("REGRAD_EMULATION_COUNT"), "kernels");
    return k;
}

static bool reversed() {
    static const bool r = getenv("REGRAD_EMULATION_ORDER") && !strcmp(getenv("REGRAD_EMULATION_ORDER"), "reverse");
    return r;
}

/* whether a GPU would take a launch of this shape (compute capability 9.0's limits: a
 * launch past them fails there with an invalid configuration, and here at once) */
static bool launchable(dim3 grid, dim3 block) {
    return (unsigned long long)block.x * block.y * block.z <= 1024 && block.z <= 64 && grid.x <= 0x7fffffffu &&
           grid.y <= 65535 && grid.z <= 65535;
}

void rg_emulation::run(dim3 grid, dim3 block, const std::function<void()> &body, const char *kernel) {
    if (!launchable(grid, block)) {
        fprintf(stderr, "cuda emulation: %s launched as %u x %u x %u blocks of %u x %u x %u threads, past a GPU's limits "
                        "(1,024 threads a block, 64 in z; 65,535 blocks in y and z)\n",
                kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z);
        abort();
    }
    const unsigned threads = block.x * block.y * block.z, blocks = grid.x * grid.y * grid.z;
    if (!threads || !blocks) return;
    if (running) {
        fprintf(stderr, "cuda emulation: a launch from inside a kernel\n");
        abort();
    }
    counted.kernels++;
    if (counts_kernels()) {
        std::lock_guard<std::mutex> hold(counted.lock);
        auto &k = counted.by_kernel[kernel];
        k.first++;
        k.second += (long long)threads * blocks;
    }
    if (!fibers) fibers = new std::vector<std::unique_ptr<fiber>>;
    while (fibers->size() < threads) {
        fibers->emplace_back(new fiber());
        fibers->back()->nth = (unsigned)fibers->size() - 1;
    }
    launch_state r{&body, fibers->data(), 0, false};
    running = &r;
    gridDim = {grid.x, grid.y, grid.z}, blockDim = {block.x, block.y, block.z};
    const bool back = reversed();
    auto nth = [back](unsigned i, unsigned n) { return back ? n - 1 - i : i; };
    for (unsigned b = 0; b < blocks; b++) {
        set_index(blockIdx, nth(b, blocks), grid);
        r.direct = false;
        for (unsigned t = 0; t < threads; t++) r.fibers[t]->done = false;
        const unsigned first = nth(0, threads);
        if (!resume(r, first, block)) {
            r.direct = true;
            for (unsigned i = 1; i < threads; i++) {
                const unsigned t = nth(i, threads);
                set_index(threadIdx, t, block);
                r.current = t;
                body();
            }
            continue;
        }
        for (unsigned live = threads, phase = 0; live; phase++) {
            unsigned at_barrier = 0;
            for (unsigned i = 0; i < threads; i++) {
                const unsigned t = nth(i, threads);
                if (!r.fibers[t]->done) at_barrier += phase == 0 && t == first ? 1 : resume(r, t, block);
            }
            if (at_barrier && at_barrier != live) {
                /* threads that ended count as arrived on the device since Volta, but a
                 * barrier some threads skip is still a bug in these kernels */
                fprintf(stderr, "cuda emulation: %u of a block's %u live threads skipped a __syncthreads\n",
                        live - at_barrier, live);
                abort();
            }
            live = at_barrier;
        }
    }
    running = nullptr;
}

/* The runtime: one device of host memory, its buffers' sizes counted for cudaMemGetInfo.
 * Each buffer ends (to within its size rounded up to 256 bytes) where an inaccessible page
 * begins, and is unmapped when freed, so a kernel that reads or writes past a buffer's end,
 * or a buffer once freed, faults at once (on a GPU it would read or spoil a neighbour). */
namespace {
constexpr size_t DEVICE_BYTES = (size_t)16 << 30;
struct mapping {
    void *base;
    size_t span, bytes;
};
std::mutex memory_lock;
std::map<void *, mapping> buffers;
size_t in_use;
} // namespace

/* Capture, the calling thread's (cuda_runtime.h): the work recorded, and whether a call
 * broke it. */
struct rg_emulated_graph {
    std::vector<std::function<void()>> work;
};
struct rg_emulated_stream {
    unsigned flags;
};
namespace {
struct capture_state {
    cudaStream_t stream = nullptr;
    rg_emulated_graph *graph = nullptr; /* non-null while capturing */
    bool broken = false;
};
thread_local capture_state capture;

/* a call that waits for the device or allocates, made while this thread captures: true,
 * and the capture is broken */
bool refused_in_capture() {
    if (!capture.graph) return false;
    capture.broken = true;
    return true;
}
} // namespace

/* REGRAD_EMULATION_BREAK_CAPTURE=1: every capture breaks at its first work, as one would
 * at a call CUDA refuses (the path where a pass runs again uncaptured) */
static bool breaks_captures() {
    static const char *const e = getenv("REGRAD_EMULATION_BREAK_CAPTURE");
    static const bool b = e && !strcmp(e, "1");
    return b;
}

bool rg_emulation::submit(cudaStream_t s, std::function<void()> work) {
    if (!capture.graph) {
        work();
        return true;
    }
    if (s != capture.stream || breaks_captures()) { /* another stream: CUDA refuses the dependency */
        capture.broken = true;
        return false;
    }
    capture.graph->work.push_back(std::move(work));
    return true;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (capture.graph || !s) return cudaErrorStreamCaptureUnsupported; /* nested, or the default stream */
    capture.stream = s, capture.graph = new rg_emulated_graph(), capture.broken = false;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    *graph = nullptr;
    if (!capture.graph || s != capture.stream) return cudaErrorInvalidValue;
    rg_emulated_graph *g = capture.graph;
    capture.graph = nullptr;
    if (capture.broken) {
        delete g;
        return cudaErrorStreamCaptureInvalidated;
    }
    *graph = g;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    *exec = new rg_emulated_graph(*graph);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    counted.graphs++;
    return rg_emulation::submit(s, [exec] {
               for (const auto &w : exec->work) w();
           })
               ? cudaSuccess
               : cudaErrorStreamCaptureImplicit;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { return delete graph, cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { return delete exec, cudaSuccess; }

cudaError_t cudaGetDeviceCount(int *count) { return *count = 1, cudaSuccess; }
cudaError_t cudaSetDevice(int index) { return index == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *index) { return *index = 0, cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int index) {
    if (index != 0) return cudaErrorInvalidValue;
    snprintf(p->name, sizeof p->name, "host emulation (tests/cuda_emulation)");
    p->totalGlobalMem = DEVICE_BYTES, p->major = 9, p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    std::lock_guard<std::mutex> hold(memory_lock);
    *total = DEVICE_BYTES, *free_bytes = DEVICE_BYTES - in_use;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    std::lock_guard<std::mutex> hold(memory_lock);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded = bytes ? (bytes + 255) / 256 * 256 : 256;
    const size_t span = (rounded + page - 1) / page * page + page;
    *p = nullptr;
    if (rounded > DEVICE_BYTES - in_use) return cudaErrorMemoryAllocation;
    void *base = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return cudaErrorMemoryAllocation;
    char *guard = (char *)base + span - page;
    mprotect(guard, page, PROT_NONE);
    *p = guard - rounded;
    memset(*p, 0xFF, rounded); /* NaN as floats and doubles: a read before a write shows */
    buffers[*p] = {base, span, rounded}, in_use += rounded;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> hold(memory_lock);
    const auto at = buffers.find(p);
    if (at == buffers.end()) return cudaErrorInvalidValue;
    in_use -= at->second.bytes;
    munmap(at->second.base, at->second.span);
    buffers.erase(at);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    return (*p = aligned_alloc(256, (bytes + 255) / 256 * 256)) ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaHostRegister(void *, size_t, unsigned) { return cudaSuccess; }
cudaError_t cudaHostUnregister(void *) { return cudaSuccess; }
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    if (refused_in_capture()) return cudaErrorStreamCaptureImplicit; /* the default stream's */
    return memset(p, value, bytes), cudaSuccess;
}
static void copy_now(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    counted.copies++, counted.downloads += kind == cudaMemcpyDeviceToHost;
    if (bytes) memmove(dst, src, bytes);
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (refused_in_capture()) return cudaErrorStreamCaptureImplicit; /* the default stream's */
    /* a copy to or from the host waits for all queued before it (CUDA's synchronous
     * copies: a stream sync before one from pageable memory, and the copy completes
     * before the call returns from pinned); one within the device does not */
    counted.drains += kind != cudaMemcpyDeviceToDevice;
    return copy_now(dst, src, bytes, kind), cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    return rg_emulation::submit(s, [=] { copy_now(dst, src, bytes, kind); }) ? cudaSuccess
                                                                             : cudaErrorStreamCaptureImplicit;
}
/* streams: each its own handle (a capture knows its own); events only order work, which
 * runs at once */
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    return *s = new rg_emulated_stream{flags}, cudaSuccess;
}
static char an_event;
static cudaError_t ordering(cudaStream_t s) {
    return rg_emulation::submit(s, [] {}) ? cudaSuccess : cudaErrorStreamCaptureImplicit;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t, unsigned) { return ordering(s); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return *e = (cudaEvent_t)&an_event, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t s) { return ordering(s); }
cudaError_t cudaEventSynchronize(cudaEvent_t) {
    return refused_in_capture() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    if (refused_in_capture()) return cudaErrorStreamCaptureUnsupported;
    counted.drains++;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnsupported:
    case cudaErrorStreamCaptureImplicit: return "operation not permitted when stream is capturing";
    default: return "emulated failure";
    }
}

/* blas.cu's products by the CPU's GEMM (cudnn.cu's convolutions: cudnn_emulation.cpp) */
extern "C" {
rg_status rg_cuda_blas_ready(void) { return RG_OK; }
void rg_cuda_set_products(bool tf32, bool) { rg_cudnn_set_tf32(tf32); }
void rg_cuda_blas_stream(cudaStream_t) {} /* each product goes on the work stream as it is asked */
}

extern "C" void rg_cuda_note_failure(const char *what, const char *why);

/* a product queued on the work stream, as cuBLAS's are (noted, and dropped while dry, as
 * blas.cu's are) */
template <typename... V> static rg_status product(std::function<void()> work, const V &...noted) {
    rg_cuda_note_all(noted...);
    if (rg_cuda_dry()) return RG_OK;
    if (rg_emulation::submit(rg_cuda_work_stream(), std::move(work))) return RG_OK;
    rg_cuda_note_failure("a product", "outside the capture");
    return RG_ERR_STATE;
}

extern "C" {
rg_status rg_cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    return product([=] {
        counted.products++;
        rg_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }, __func__, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
rg_status rg_cuda_sgemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                                size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c,
                                int ldc, size_t stride_c, int count) {
    return product([=] {
        counted.products++;
        for (int i = 0; i < count; i++)
            rg_sgemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                     c + i * stride_c, ldc);
    }, __func__, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, count);
}
}

/* a bf16 row-major matrix of rows x cols, rows `ld` apart, as floats (what lies between
 * the rows too, but not past the last one's end) */
static std::vector<float> widened(const void *m, int rows, int cols, int ld) {
    const __nv_bfloat16 *h = (const __nv_bfloat16 *)m;
    std::vector<float> f(rows ? (size_t)(rows - 1) * ld + cols : 0);
    for (size_t i = 0; i < f.size(); i++) f[i] = __bfloat162float(h[i]);
    return f;
}

/* one bf16 product, its operands widened to float and its output rounded back */
static void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a, int lda,
                      const void *b, int ldb, float beta, void *c, bool c_bf16, int ldc) {
    if (m == 0 || n == 0) return;
    const std::vector<float> fa = widened(a, trans_a ? k : m, trans_a ? m : k, lda),
                             fb = widened(b, trans_b ? n : k, trans_b ? k : n, ldb);
    if (!c_bf16) {
        rg_sgemm(trans_a, trans_b, m, n, k, alpha, fa.data(), lda, fb.data(), ldb, beta, (float *)c, ldc);
        return;
    }
    std::vector<float> fc = widened(c, m, n, ldc);
    rg_sgemm(trans_a, trans_b, m, n, k, alpha, fa.data(), lda, fb.data(), ldb, beta, fc.data(), ldc);
    __nv_bfloat16 *hc = (__nv_bfloat16 *)c;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) hc[(size_t)i * ldc + j] = __float2bfloat16(fc[(size_t)i * ldc + j]);
}

extern "C" {
rg_status rg_cuda_gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a, int lda,
                            const void *b, int ldb, float beta, void *c, bool c_bf16, int ldc) {
    return product([=] {
        counted.products++;
        gemm_bf16(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, c_bf16, ldc);
    }, __func__, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, c_bf16, ldc);
}
rg_status rg_cuda_gemm_bf16_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a,
                                    int lda, size_t stride_a, const void *b, int ldb, size_t stride_b, float beta,
                                    void *c, bool c_bf16, int ldc, size_t stride_c, int count) {
    const __nv_bfloat16 *ha = (const __nv_bfloat16 *)a, *hb = (const __nv_bfloat16 *)b;
    return product([=] {
        counted.products++;
        for (int i = 0; i < count; i++)
            gemm_bf16(trans_a, trans_b, m, n, k, alpha, ha + i * stride_a, lda, hb + i * stride_b, ldb, beta,
                      c_bf16 ? (void *)((__nv_bfloat16 *)c + i * stride_c) : (void *)((float *)c + i * stride_c),
                      c_bf16, ldc);
    }, __func__, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, c_bf16, ldc, stride_c,
       count);
}
}
