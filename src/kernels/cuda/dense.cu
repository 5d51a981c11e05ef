/*
 * dense.cu — the fully connected layer on the device, as the CPU's op_dense.c computes it:
 * y = b + x W^T (W: out x in, row-major) through cuBLAS; backward dW += dy^T x, db += the
 * sum of dy over the batch (one thread a unit adding the rows in order, the CPU's order and
 * bits), dx = or += dy W; its tangent t = db + t_in W^T + x dW^T (curvature.c).
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

__global__ static void broadcast_rows(const float *b, float *y, int batch, int out) {
    GRID_STRIDE(i, (size_t)batch * out) y[i] = b[i % out];
}

__global__ static void add_column_sums(const float *dy, float *db, int batch, int out) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= out) return;
    float s = db[j];
    for (int i = 0; i < batch; i++) s += dy[(size_t)i * out + j];
    db[j] = s;
}

extern "C" rg_status rg_cuda_dense_forward(const float *x, const float *w, const float *b, float *y,
                                           int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    RG_KERNEL(broadcast_rows, rg_cuda_grid((size_t)batch * out), RG_CUDA_THREADS)(b, y, batch, out);
    return rg_cuda_sgemm(false, true, batch, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

extern "C" rg_status rg_cuda_dense_backward(const float *x, const float *dy, const float *w, float *dw,
                                            float *db, float *dx, bool fresh, int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    rg_status s = rg_cuda_sgemm(true, false, out, in, batch, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (!s && db) RG_KERNEL(add_column_sums, rg_cuda_grid((size_t)out), RG_CUDA_THREADS)(dy, db, batch, out);
    if (!s && dx) s = rg_cuda_sgemm(false, false, batch, in, out, 1.0f, dy, out, w, in, fresh ? 0.0f : 1.0f, dx, in);
    return s;
}

extern "C" rg_status rg_cuda_dense_tangent(const float *x, const float *t_in, const float *w, const float *dw,
                                           const float *db, float *t, int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    if (db) RG_KERNEL(broadcast_rows, rg_cuda_grid((size_t)batch * out), RG_CUDA_THREADS)(db, t, batch, out);
    else rg_cuda_fill(t, (size_t)batch * out, 0.0f);
    rg_status s = rg_cuda_sgemm(false, true, batch, out, in, 1.0f, t_in, in, w, in, 1.0f, t, out);
    if (!s && dw) s = rg_cuda_sgemm(false, true, batch, out, in, 1.0f, x, in, dw, in, 1.0f, t, out);
    return s;
}
