/*
 * dense.cu — the fully connected layer on the device, as the CPU's op_dense.c computes it:
 * y = b + x W^T (W: out x in, row-major) through cuBLAS; backward dW += dy^T x, db += the
 * sum of dy over the batch (one thread a unit adding the rows in order, the CPU's order and
 * bits), dx = or += dy W; its tangent t = db + t_in W^T + x dW^T (curvature.c).  Under
 * bf16 (launch.h) x, y, dy and dx are bf16 and the products bf16's, over a bf16 copy of W;
 * dW and db stay float.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

template <typename T>
__global__ static void broadcast_rows(const float *b, T *y, int batch, int out) {
    GRID_STRIDE(i, (size_t)batch * out) rg_store(y, i, b[i % out]);
}

template <typename T>
__global__ static void add_column_sums(const T *dy, float *db, int batch, int out) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= out) return;
    float s = db[j];
    for (int i = 0; i < batch; i++) s += rg_load(dy, (size_t)i * out + j);
    db[j] = s;
}

/* a product of the layer's (rg_sgemm's arguments) in the activations' type: W, the second
 * operand, is fp32 and goes in as a bf16 copy under bf16; the dW product has a float C */
static rg_status product(bool trans_a, bool trans_b, int m, int n, int k, const float *a, int lda, const float *b,
                         bool b_is_w, int ldb, float beta, float *c, bool c_stored, int ldc) {
    if (!rg_cuda_activations_bf16) return rg_cuda_sgemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    const void *bb = b_is_w ? rg_cuda_bf16_copy(b, (size_t)(trans_b ? n : k) * ldb) : b;
    if (!bb) return RG_ERR_MEMORY;
    return rg_cuda_gemm_bf16(trans_a, trans_b, m, n, k, 1.0f, a, lda, bb, ldb, beta, c, c_stored, ldc);
}

/* the bias into every row of y, and db += dy's column sums, over the activations' type */
template <typename T>
static void bias_rows(const float *b, float *y, int batch, int out) {
    LAUNCH(broadcast_rows<T>, (size_t)batch * out, b, rg_as<T>(y), batch, out);
}
template <typename T>
static void bias_gradient(const float *dy, float *db, int batch, int out) {
    LAUNCH(add_column_sums<T>, (size_t)out, rg_as<T>(dy), db, batch, out);
}

extern "C" rg_status rg_cuda_dense_forward(const float *x, const float *w, const float *b, float *y,
                                           int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    RG_STORED(bias_rows, b, y, batch, out);
    return product(false, true, batch, out, in, x, in, w, true, in, 1.0f, y, true, out);
}

extern "C" rg_status rg_cuda_dense_backward(const float *x, const float *dy, const float *w, float *dw,
                                            float *db, float *dx, bool fresh, int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    rg_status s = product(true, false, out, in, batch, dy, out, x, false, in, 1.0f, dw, false, in);
    if (!s && db) RG_STORED(bias_gradient, dy, db, batch, out);
    if (!s && dx) s = product(false, false, batch, in, out, dy, out, w, true, in, fresh ? 0.0f : 1.0f, dx, true, in);
    return s;
}

extern "C" rg_status rg_cuda_dense_tangent(const float *x, const float *t_in, const float *w, const float *dw,
                                           const float *db, float *t, int batch, int in, int out) {
    if (batch <= 0) return RG_OK;
    if (db) RG_STORED(bias_rows, db, t, batch, out);
    else rg_cuda_fill(t, (size_t)batch * out, 0.0f); /* zeros: a float's room a value holds them either way */
    rg_status s = product(false, true, batch, out, in, t_in, in, w, true, in, 1.0f, t, true, out);
    if (!s && dw) s = product(false, true, batch, out, in, x, in, dw, true, in, 1.0f, t, true, out);
    return s;
}
