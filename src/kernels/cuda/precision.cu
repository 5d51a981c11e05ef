/*
 * precision.cu — the precision a graph runs in on the device: whether its activations
 * and their gradients are stored as bf16 (--precision bf16; launch.h's kernels follow
 * rg_cuda_activations_bf16) and whether fp32 products take TF32 tensor cores; the casts
 * bf16 needs, of an input's uploaded floats to the activations' bf16 and of fp32 weights
 * to the bf16 copies a pass's products share; and whether the device has bf16 at all.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <stdlib.h>

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

/* The bf16 copies of weights for the products of one pass: each made at its first product
 * in the pass and read by the rest (backward's products take forward's copies), since
 * nothing moves the weights inside a pass; a new pass (rg_cuda_begin_pass: every forward
 * and every tangent pass) makes them again.  A copy is found by its weights' address and
 * length; one from an earlier pass is free to hold another. */
typedef struct {
    const float *src;
    size_t n, room;
    void *copy;
    unsigned long pass;
} weights_copy;
static weights_copy *copies;
static int n_copies, copies_room;
static unsigned long pass = 1;

static bool current(const weights_copy *c, const float *src, size_t n) {
    return c->pass == pass && c->src == src && c->n == n;
}

extern "C" void rg_cuda_begin_pass(void) { pass++; }

/* this pass's copy of src, or room for it: a free one large enough, else a free one to
 * grow, else a new one (NULL when the host has no memory for its entry) */
static weights_copy *copy_for(const float *src, size_t n) {
    weights_copy *fits = NULL, *free_one = NULL;
    for (int i = 0; i < n_copies; i++) {
        weights_copy *c = &copies[i];
        if (current(c, src, n)) return c;
        if (c->pass == pass) continue;
        if (c->room >= n * sizeof(rg_bf16) && !fits) fits = c;
        if (!free_one) free_one = c;
    }
    if (fits || free_one) return fits ? fits : free_one;
    if (n_copies == copies_room) {
        const int room = copies_room ? 2 * copies_room : 64;
        weights_copy *more = (weights_copy *)realloc(copies, (size_t)room * sizeof *more);
        if (!more) return NULL;
        copies = more, copies_room = room;
    }
    copies[n_copies] = weights_copy{NULL, 0, 0, NULL, 0};
    return &copies[n_copies++];
}

extern "C" const void *rg_cuda_bf16_copy(const float *src, size_t n) {
    weights_copy *c = copy_for(src, n);
    if (c && current(c, src, n)) return c->copy;
    if (!c || !rg_cuda_grow(&c->copy, &c->room, (n ? n : 1) * sizeof(rg_bf16))) {
        rg_cuda_note_failure("a bf16 copy of the weights", "out of device memory");
        return NULL;
    }
    LAUNCH(to_bf16, n, (rg_bf16 *)c->copy, src, n);
    c->src = src, c->n = n, c->pass = pass;
    return c->copy;
}
