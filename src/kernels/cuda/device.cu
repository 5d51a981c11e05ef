/*
 * device.cu — the CUDA device: the probe that says whether a device can be used and why
 * not (a host without a driver reports cudaErrorInsufficientDriver, not zero devices),
 * device buffers and host copies.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" rg_status rg_fail(rg_status status, const char *fmt, ...);

extern "C" rg_status rg_cuda_probe(int index, char *desc, size_t len) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
        return rg_fail(RG_ERR_STATE, "cuda: no CUDA device here (%s): run on a machine "
                       "with an NVIDIA GPU and its driver, or use --device cpu",
                       e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    if (e != cudaSuccess)
        return rg_fail(RG_ERR_STATE, "cuda: the CUDA runtime fails (%s): check the driver",
                       cudaGetErrorString(e));
    if (index < 0 || index >= count)
        return rg_fail(RG_ERR_ARG, "cuda:%d: no such device: this machine has %d, cuda:0 to cuda:%d",
                       index, count, count - 1);
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, index) != cudaSuccess)
        return rg_fail(RG_ERR_STATE, "cuda:%d: cannot read the device's properties", index);
    snprintf(desc, len, "cuda:%d %s, %.1f GiB, compute %d.%d", index, p.name,
             (double)p.totalGlobalMem / (1 << 30), p.major, p.minor);
    return RG_OK;
}

extern "C" rg_status rg_cuda_use(int index) {
    const cudaError_t e = cudaSetDevice(index);
    return e == cudaSuccess ? RG_OK
                            : rg_fail(RG_ERR_STATE, "cuda:%d: %s", index, cudaGetErrorString(e));
}

extern "C" float *rg_cuda_alloc(size_t floats) {
    void *p = NULL;
    if (cudaMalloc(&p, (floats ? floats : 1) * sizeof(float)) != cudaSuccess) return NULL;
    if (cudaMemset(p, 0, (floats ? floats : 1) * sizeof(float)) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return (float *)p;
}

extern "C" void rg_cuda_release(float *p) {
    if (p) cudaFree(p);
}

/* The first failure since rg_cuda_status last reported one. */
static rg_status failed = RG_OK;
static char failure[240];

extern "C" void rg_cuda_note_failure(const char *what, const char *why) {
    if (failed) return;
    failed = RG_ERR_STATE;
    snprintf(failure, sizeof failure, "cuda: %s failed: %s", what, why);
}

extern "C" rg_status rg_cuda_failure_state(void) { return failed; }
extern "C" void rg_cuda_restore_failure_state(rg_status s) { failed = s; }

extern "C" rg_status rg_cuda_status(bool wait) {
    const cudaError_t e = wait ? cudaDeviceSynchronize() : cudaGetLastError();
    if (e != cudaSuccess) rg_cuda_note_failure("a kernel", cudaGetErrorString(e));
    const rg_status s = failed;
    failed = RG_OK;
    return s ? rg_fail(s, "%s", failure) : RG_OK;
}

static rg_status copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    static_assert(sizeof(int) == sizeof(float), "ints travel as floats do");
    const cudaError_t e = cudaMemcpy(dst, src, n * sizeof(float), kind);
    if (e == cudaSuccess) return RG_OK;
    rg_cuda_note_failure("a copy", cudaGetErrorString(e));
    return rg_fail(RG_ERR_IO, "cuda: a copy of %zu values failed: %s", n, cudaGetErrorString(e));
}

extern "C" rg_status rg_cuda_upload(float *device, const float *host, size_t n) {
    return copy(device, host, n, cudaMemcpyHostToDevice);
}

extern "C" rg_status rg_cuda_download(float *host, const float *device, size_t n) {
    return copy(host, device, n, cudaMemcpyDeviceToHost);
}

/* Copies down that do not wait: each goes from the device into pinned staging on the work
 * stream, behind what is queued there, and an event follows the last; the host waits on
 * that event alone and moves each copy to its destination.  Where the staging cannot grow
 * (pinned memory refused), and under REGRAD_OVERLAP=0 (below), a copy is made at once. */
static bool overlap(void);
struct later_copy {
    float *host;
    size_t at, n; /* its floats in the staging */
};
static thread_local float *staging;
static thread_local size_t staging_room, staging_used;
static thread_local later_copy *laters;
static thread_local size_t n_laters, laters_room;
static thread_local cudaEvent_t landed;

static bool room_for_later(size_t n) {
    if (n_laters == laters_room) {
        const size_t want = laters_room ? 2 * laters_room : 8;
        later_copy *l = (later_copy *)realloc(laters, want * sizeof *l);
        if (!l) return false;
        laters = l, laters_room = want;
    }
    if (staging_used + n <= staging_room) return true;
    if (n_laters) rg_cuda_downloads_done(); /* the staging moves: what is in it lands first */
    size_t want = staging_room ? 2 * staging_room : (size_t)1 << 16;
    while (want < n) want *= 2;
    if (staging) cudaFreeHost(staging);
    staging = NULL, staging_room = 0;
    if (cudaMallocHost((void **)&staging, want * sizeof *staging) != cudaSuccess) {
        cudaGetLastError();
        staging = NULL;
        return false;
    }
    staging_room = want;
    return true;
}

extern "C" void rg_cuda_download_later(float *host, const float *device, size_t n) {
    if (!landed && cudaEventCreateWithFlags(&landed, cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        landed = NULL;
    }
    if (!landed || !overlap() || !room_for_later(n)) {
        if (rg_cuda_download(host, device, n) != RG_OK)
            for (size_t i = 0; i < n; i++) host[i] = NAN;
        return;
    }
    cudaError_t e = rg_cuda_copy_async(staging + staging_used, device, n * sizeof *staging, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) e = cudaEventRecord(landed, rg_cuda_work_stream());
    if (e != cudaSuccess) { /* the failure comes out at the next status */
        rg_cuda_note_failure("a copy down", cudaGetErrorString(e));
        for (size_t i = 0; i < n; i++) host[i] = NAN;
        return;
    }
    laters[n_laters++] = later_copy{host, staging_used, n};
    staging_used += n;
}

extern "C" rg_status rg_cuda_downloads_done(void) {
    if (!n_laters) return RG_OK;
    const cudaError_t e = cudaEventSynchronize(landed);
    for (size_t i = 0; i < n_laters; i++) {
        const later_copy *l = &laters[i];
        if (e == cudaSuccess) memcpy(l->host, staging + l->at, l->n * sizeof *l->host);
        else
            for (size_t j = 0; j < l->n; j++) l->host[j] = NAN;
    }
    n_laters = 0, staging_used = 0;
    if (e == cudaSuccess) return RG_OK;
    rg_cuda_note_failure("a copy down", cudaGetErrorString(e));
    return rg_fail(RG_ERR_IO, "cuda: a copy down failed: %s", cudaGetErrorString(e));
}

/* Copies up that do not wait: the host's bytes into pinned staging, copied from there on
 * the work stream.  The staging fills from its start and starts again once the device has
 * taken all of it (an event after the last copy, waited for only when it is full).  A copy
 * past UP_LATER_MOST bytes (a network's weights when placed or loaded, once) goes in line:
 * the staging stays small. */
#define UP_LATER_MOST ((size_t)4 << 20)
static thread_local char *up_staging;
static thread_local size_t up_room, up_used;
static thread_local cudaEvent_t up_taken;

extern "C" void rg_cuda_upload_later(void *device, const void *host, size_t bytes) {
    if (!bytes) return;
    if (!up_taken && cudaEventCreateWithFlags(&up_taken, cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        up_taken = NULL;
    }
    const size_t span = (bytes + 255) / 256 * 256; /* each copy's start aligned */
    if (up_taken && bytes <= UP_LATER_MOST && up_used + span > up_room) {
        if (up_used && cudaEventSynchronize(up_taken) != cudaSuccess) cudaGetLastError();
        up_used = 0;
        if (span > up_room) {
            size_t want = up_room ? 2 * up_room : (size_t)1 << 20;
            while (want < span) want *= 2;
            if (up_staging) cudaFreeHost(up_staging);
            up_staging = NULL, up_room = 0;
            if (cudaMallocHost((void **)&up_staging, want) == cudaSuccess) up_room = want;
            else cudaGetLastError(), up_staging = NULL;
        }
    }
    if (!up_taken || !up_staging || bytes > UP_LATER_MOST) { /* in line, as a copy that waits */
        const cudaError_t e = cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) rg_cuda_note_failure("a copy up", cudaGetErrorString(e));
        return;
    }
    memcpy(up_staging + up_used, host, bytes);
    if (rg_cuda_copy_async(device, up_staging + up_used, bytes, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaEventRecord(up_taken, rg_cuda_work_stream()) != cudaSuccess)
        rg_cuda_note_failure("a copy up", cudaGetErrorString(cudaGetLastError()));
    up_used += span;
}

extern "C" bool rg_cuda_grow(void **p, size_t *have, size_t bytes) {
    if (bytes <= *have) return true;
    rg_cuda_memory_moved(); /* a captured pass holding the old address is not replayed */
    cudaFree(*p);           /* waits for the work that used it */
    *p = NULL, *have = 0;
    if (cudaMalloc(p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    *have = bytes;
    return true;
}

extern "C" void rg_cuda_pin(void *p, size_t bytes, bool on) {
    if (!p || !bytes) return;
    if ((on ? cudaHostRegister(p, bytes, cudaHostRegisterDefault) : cudaHostUnregister(p)) != cudaSuccess)
        cudaGetLastError(); /* not pinned: pageable copies still work */
}

/* A batch's copies go on a stream of their own (non-blocking: the default stream does not
 * wait for it, nor it for the default stream), after the work the default stream had
 * queued before the last batch's copies (`queued`): what may still run then reads the last
 * batch's buffers, not these.  The default stream's next work waits for them (`copied`),
 * and so does the host, which may then rewrite its buffers.  REGRAD_OVERLAP=0 copies each
 * batch in line instead, and each read down at once (measuring what the overlaps gain). */
static thread_local cudaStream_t copies; /* a thread's own, as its graphs' batches */
static thread_local cudaEvent_t copied, queued;
static thread_local enum { UNTRIED, OVERLAP, IN_LINE } copy_mode = UNTRIED;

static bool overlap(void) {
    if (copy_mode == UNTRIED) {
        const char *e = getenv("REGRAD_OVERLAP");
        copy_mode = (e && strcmp(e, "0") == 0) ||
                            cudaStreamCreateWithFlags(&copies, cudaStreamNonBlocking) != cudaSuccess ||
                            cudaEventCreateWithFlags(&copied, cudaEventDisableTiming) != cudaSuccess ||
                            cudaEventCreateWithFlags(&queued, cudaEventDisableTiming) != cudaSuccess
                        ? IN_LINE : OVERLAP;
        cudaGetLastError(); /* a stream refused: the copies go in line */
    }
    return copy_mode == OVERLAP;
}

extern "C" void rg_cuda_upload_batch_begin(void) {
    if (overlap() && cudaStreamWaitEvent(copies, queued, 0) != cudaSuccess)
        rg_cuda_note_failure("a batch's upload", cudaGetErrorString(cudaGetLastError()));
}

extern "C" void rg_cuda_upload_async(void *device, const void *host, size_t bytes) {
    const cudaError_t e = overlap() ? cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, copies)
                                    : cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) rg_cuda_note_failure("a batch's upload", cudaGetErrorString(e));
}

extern "C" void rg_cuda_upload_batch_end(void) {
    if (!overlap()) return;
    if (cudaEventRecord(copied, copies) != cudaSuccess || cudaStreamWaitEvent(0, copied, 0) != cudaSuccess ||
        cudaEventRecord(queued, 0) != cudaSuccess || cudaEventSynchronize(copied) != cudaSuccess)
        rg_cuda_note_failure("a batch's upload", cudaGetErrorString(cudaGetLastError()));
}

extern "C" rg_status rg_cuda_memory(size_t *free_bytes, size_t *total) {
    const cudaError_t e = cudaMemGetInfo(free_bytes, total);
    return e == cudaSuccess ? RG_OK : rg_fail(RG_ERR_STATE, "cuda: cannot read the device's free memory: %s",
                                              cudaGetErrorString(e));
}
