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
    GRID_STRIDE(j, (size_t)out) {
        float s = db[j];
        for (int i = 0; i < batch; i++) s += rg_load(dy, (size_t)i * out + j);
        db[j] = s;
    }
}

/* The layer's work over the activations' type T (RG_STORED picks it): W and a weight
 * direction dW go into products as T (launch.h's rg_weights_as). */
template <typename T>
static rg_status forward(const float *x, const float *w, const float *b, float *y, int batch, int in, int out) {
    LAUNCH(broadcast_rows<T>, (size_t)batch * out, b, rg_as<T>(y), batch, out);
    const T *wt = rg_weights_as<T>(w, (size_t)out * in);
    if (!wt) return RG_ERR_MEMORY;
    return rg_product(false, true, batch, out, in, rg_as<T>(x), in, wt, in, 1.0f, rg_as<T>(y), out);
}

template <typename T>
static rg_status backward(const float *x, const float *dy, const float *w, float *dw, float *db, float *dx,
                          bool fresh, int batch, int in, int out) {
    rg_status s = rg_product(true, false, out, in, batch, rg_as<T>(dy), out, rg_as<T>(x), in, 1.0f, dw, in);
    if (!s && db) LAUNCH(add_column_sums<T>, (size_t)out, rg_as<T>(dy), db, batch, out);
    if (s || !dx) return s;
    const T *wt = rg_weights_as<T>(w, (size_t)out * in);
    if (!wt) return RG_ERR_MEMORY;
    return rg_product(false, false, batch, in, out, rg_as<T>(dy), out, wt, in, fresh ? 0.0f : 1.0f, rg_as<T>(dx),
                      in);
}

template <typename T>
static rg_status tangent(const float *x, const float *t_in, const float *w, const float *dw, const float *db,
                         float *t, int batch, int in, int out) {
    if (db) LAUNCH(broadcast_rows<T>, (size_t)batch * out, db, rg_as<T>(t), batch, out);
    else rg_cuda_fill(t, (size_t)batch * out, 0.0f); /* zeros: a float's room a value holds them either way */
    const T *wt = rg_weights_as<T>(w, (size_t)out * in);
    rg_status s = wt ? rg_product(false, true, batch, out, in, rg_as<T>(t_in), in, wt, in, 1.0f, rg_as<T>(t), out)
                     : RG_ERR_MEMORY;
    if (s || !dw) return s;
    const T *dwt = rg_weights_as<T>(dw, (size_t)out * in);
    if (!dwt) return RG_ERR_MEMORY;
    return rg_product(false, true, batch, out, in, rg_as<T>(x), in, dwt, in, 1.0f, rg_as<T>(t), out);
}

extern "C" rg_status rg_cuda_dense_forward(const float *x, const float *w, const float *b, float *y,
                                           int batch, int in, int out) {
    return batch <= 0 ? RG_OK : RG_STORED(forward, x, w, b, y, batch, in, out);
}

extern "C" rg_status rg_cuda_dense_backward(const float *x, const float *dy, const float *w, float *dw,
                                            float *db, float *dx, bool fresh, int batch, int in, int out) {
    return batch <= 0 ? RG_OK : RG_STORED(backward, x, dy, w, dw, db, dx, fresh, batch, in, out);
}

extern "C" rg_status rg_cuda_dense_tangent(const float *x, const float *t_in, const float *w, const float *dw,
                                           const float *db, float *t, int batch, int in, int out) {
    return batch <= 0 ? RG_OK : RG_STORED(tangent, x, t_in, w, dw, db, t, batch, in, out);
}
