/*
 * cuda.h — the CUDA backend's entry points for the C side (the .cu files beside it, built when
 * CMake finds nvcc: REGRAD_CUDA=AUTO|ON|OFF, RG_HAVE_CUDA defined).  What there is so far:
 * the device probe, device buffers and copies, the optimizers' update rules (the same bits
 * as the CPU's: every operation rounded as the C source rounds it, no contraction), the
 * activations forward and backward, and a sum of squares in a fixed order.  Each launch
 * goes on the calling thread's default stream; the copies wait for it.  A graph does not
 * run on the device yet (see docs/cuda.md for what is left).
 */
#ifndef RG_CUDA_H
#define RG_CUDA_H

#include <regrad.h>
#include <stddef.h>

#include "../../optim/step.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether device `index` can be used: RG_OK with its name, memory and compute capability
 * in desc; else RG_ERR_STATE with the reason (no driver, no device), or RG_ERR_ARG for an
 * index past the devices there are. */
rg_status rg_cuda_probe(int index, char *desc, size_t len);
/* Makes device `index` the calling thread's (after a successful probe). */
rg_status rg_cuda_use(int index);

/* Device memory: zeroed floats (NULL when out of memory), released; copies of n floats. */
float *rg_cuda_alloc(size_t floats);
void rg_cuda_release(float *p);
rg_status rg_cuda_upload(float *device, const float *host, size_t n);
rg_status rg_cuda_download(float *host, const float *device, size_t n);

/* One optimizer step of kind over w[0, n) (device buffers; m0, m1 NULL where the kind keeps
 * fewer moments), with the constants of rg_optim_consts: bit for bit the CPU's update. */
void rg_cuda_optim_update(rg_optim_kind kind, const step_consts *k, size_t n, float *w,
                          const float *g, float *m0, float *m1);

/* y = act(x) over n values; dx += act'(x) dy (y the forward's output). */
void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n);
void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                 float *dx, size_t n);

/* sum x^2 over n values: a fixed split into blocks summed in double, the blocks in order,
 * so the same input gives the same bits on every run. */
double rg_cuda_sum_squares(const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
