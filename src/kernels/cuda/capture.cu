/*
 * capture.cu — a pass's device work recorded once as a CUDA graph and replayed as one
 * launch (REGRAD_GRAPHS=1; src/graph/replay.c decides which passes).  Every launch, product
 * and copy of a pass goes on the work stream (rg_cuda_work_stream): the default stream,
 * or while a pass is captured a stream of the capture's own.  That stream is a blocking
 * one, so work put on the default stream by mistake during a capture breaks the capture
 * (CUDA refuses the implicit dependency) instead of running once outside the graph; so does
 * any call that waits for the device or allocates.  A capture that breaks is said why and
 * the failures it caused are dropped: the caller runs the pass again without it.
 *
 * A replay runs the pass's host side again with its device work dropped (rg_cuda_dry),
 * so what the host keeps of a pass (the monitor's queued sums, each node's buffers) is
 * made as on any pass, and launches the graph only if that host side asked for the work
 * the capture recorded: while capturing and while dry, every launch, product and copy
 * adds the kernel or call and its arguments to a fingerprint (rg_cuda_note), and the two
 * fingerprints must match.  A scratch buffer of the backend that moves (rg_cuda_grow)
 * moves under a graph that holds its old address: rg_cuda_memory_moves counts the moves,
 * and a graph captured before one is not replayed.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static thread_local cudaStream_t work;       /* where launches go now: 0, or capturing */
static thread_local cudaStream_t capturing;  /* made at the first capture */
static thread_local rg_status failed_before; /* rg_cuda_status's state when the capture began */
static thread_local bool dry, noting;        /* the device work dropped; the fingerprint taken */
static thread_local uint64_t print;          /* the fingerprint of the work asked so far */
static unsigned long moves;                  /* scratch buffers moved so far */

/* a captured pass: its graph, and the fingerprint of the work the capture recorded */
struct replay {
    cudaGraphExec_t exec;
    uint64_t print;
};

extern "C" cudaStream_t rg_cuda_work_stream(void) { return work; }

extern "C" bool rg_cuda_dry(void) { return dry; }
extern "C" bool rg_cuda_noting(void) { return noting; }
extern "C" void rg_cuda_note(const void *p, size_t bytes) {
    const unsigned char *c = (const unsigned char *)p;
    for (; bytes; c += bytes < 8 ? bytes : 8, bytes -= bytes < 8 ? bytes : 8) { /* eight bytes a word */
        uint64_t w = 0;
        memcpy(&w, c, bytes < 8 ? bytes : 8);
        print = (print ^ w) * 0x9e3779b97f4a7c15ull;
        print ^= print >> 29;
    }
}
static void start_noting(void) { noting = true, print = 0xcbf29ce484222325ull; }

extern "C" void rg_cuda_memory_moved(void) { moves++; }
extern "C" unsigned long rg_cuda_memory_moves(void) { return moves; }

/* the launches, products and copies from here on recorded on the capture's stream */
static void work_on(cudaStream_t s) {
    work = s;
    rg_cuda_blas_stream(s);
    rg_cudnn_stream(s);
}

extern "C" rg_status rg_cuda_capture_begin(char *why, size_t len) {
    cudaError_t e = cudaSuccess;
    if (!capturing) e = cudaStreamCreateWithFlags(&capturing, cudaStreamDefault);
    if (e == cudaSuccess) e = cudaStreamBeginCapture(capturing, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, len, "%s", cudaGetErrorString(e));
        return RG_ERR_STATE;
    }
    failed_before = rg_cuda_failure_state();
    work_on(capturing);
    start_noting();
    return RG_OK;
}

extern "C" void *rg_cuda_capture_end(char *why, size_t len) {
    work_on(0);
    noting = false;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(capturing, &graph);
    if (e == cudaSuccess && rg_cuda_failure_state() != failed_before) e = cudaErrorStreamCaptureInvalidated;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    replay *r = e == cudaSuccess ? (replay *)malloc(sizeof *r) : NULL;
    if (r) {
        *r = (replay){exec, print};
        return r;
    }
    if (e == cudaSuccess) e = cudaErrorMemoryAllocation, cudaGraphExecDestroy(exec);
    snprintf(why, len, "%s%s", cudaGetErrorString(e),
             rg_cuda_failure_state() != failed_before ? " (a call inside the pass failed while captured)" : "");
    cudaGetLastError();
    rg_cuda_restore_failure_state(failed_before); /* the pass runs again, uncaptured */
    return NULL;
}

extern "C" void rg_cuda_replay_begin(void) {
    dry = true;
    start_noting();
}

extern "C" rg_status rg_cuda_replay(void *graph, bool *changed) {
    replay *r = (replay *)graph;
    *changed = !r || (dry && print != r->print); /* no graph: the dry host side failed */
    dry = noting = false;
    if (*changed) return RG_OK;
    const cudaError_t e = cudaGraphLaunch(r->exec, 0);
    if (e == cudaSuccess) return RG_OK;
    rg_cuda_note_failure("a captured pass's replay", cudaGetErrorString(e));
    return rg_cuda_status(false);
}

extern "C" void rg_cuda_replay_free(void *graph) {
    if (!graph) return;
    cudaGraphExecDestroy(((replay *)graph)->exec);
    free(graph);
}
