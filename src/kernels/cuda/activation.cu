/*
 * activation.cu — the element-wise activations on the device, forward and backward (= or
 * +=), from the rules the CPU uses (../act_rules.h).  The device's expf, erff, tanhf and
 * log1pf may differ from glibc's by an ulp or two: the tests compare within 1e-5.  Each
 * kernel is over the activations' type (launch.h): float, or bf16; the element-wise ones
 * four values a thread where the buffers allow.
 */
#include "cuda.h"
#include "../act_rules.h"
#include "launch.h"

#include <cuda_runtime.h>

template <typename T>
__global__ static void forward(rg_act act, const T *x, T *y, size_t n) {
    GRID_STRIDE(i, n) rg_store(y, i, act_f(act, rg_load(x, i)));
}

template <typename T>
__global__ static void backward(rg_act act, const T *x, const T *y, const T *dy, T *dx, size_t n, bool fresh) {
    GRID_STRIDE(i, n) {
        const float d = act_dx(act, rg_load(x, i), rg_load(y, i), rg_load(dy, i));
        rg_store(dx, i, fresh ? d : rg_load(dx, i) + d);
    }
}

/* the same four values a thread (launch.h's quads; y may be x, dx dy: each quad is read
 * before it is written) */
template <typename T>
__global__ static void forward_quads(rg_act act, const T *x, T *y, size_t quads) {
    GRID_STRIDE(q, quads) {
        rg_floats4 v = rg_load4(x, q);
        for (int k = 0; k < 4; k++) v.v[k] = act_f(act, v.v[k]);
        rg_store4(y, q, v);
    }
}

template <typename T>
__global__ static void backward_quads(rg_act act, const T *x, const T *y, const T *dy, T *dx, size_t quads,
                                      bool fresh) {
    GRID_STRIDE(q, quads) {
        const rg_floats4 a = rg_load4(x, q), b = rg_load4(y, q), g = rg_load4(dy, q);
        rg_floats4 d;
        for (int k = 0; k < 4; k++) d.v[k] = act_dx(act, a.v[k], b.v[k], g.v[k]);
        rg_store4(dx, q, fresh ? d : rg_plus4(rg_load4(dx, q), d));
    }
}

template <typename T>
static void launch_forward(rg_act act, const float *x, float *y, size_t n) {
    if (rg_cuda_quads_fit<T>(n, x, y, NULL)) LAUNCH(forward_quads<T>, n / 4, act, rg_as<T>(x), rg_as<T>(y), n / 4);
    else LAUNCH(forward<T>, n, act, rg_as<T>(x), rg_as<T>(y), n);
}

template <typename T>
static void launch_backward(rg_act act, const float *x, const float *y, const float *dy, float *dx, size_t n,
                            bool fresh) {
    if (rg_cuda_quads_fit<T>(n, x, y, dy) && rg_cuda_quads_fit<T>(n, dx, NULL, NULL))
        LAUNCH(backward_quads<T>, n / 4, act, rg_as<T>(x), rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), n / 4, fresh);
    else LAUNCH(backward<T>, n, act, rg_as<T>(x), rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), n, fresh);
}

extern "C" void rg_cuda_activation_forward(rg_act act, const float *x, float *y, size_t n) {
    RG_STORED(launch_forward, act, x, y, n);
}

extern "C" void rg_cuda_activation_backward(rg_act act, const float *x, const float *y, const float *dy,
                                            float *dx, size_t n, bool fresh) {
    RG_STORED(launch_backward, act, x, y, dy, dx, n, fresh);
}

/* softmax over each row of k values, one thread a row, as the CPU's op_activation.c: the
 * row's maximum, the sum of exp in float in order, each divided by it */
template <typename T>
__global__ static void softmax_rows(const T *x, T *y, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const T *xr = x + r * k;
        T *yr = y + r * k;
        float m = rg_load(xr, 0), sum = 0;
        for (int j = 1; j < k; j++) m = rg_load(xr, j) > m ? rg_load(xr, j) : m;
        for (int j = 0; j < k; j++) { /* x may be y: each x read before its y is written */
            const float e = expf(rg_load(xr, j) - m);
            rg_store(yr, j, e), sum += e;
        }
        for (int j = 0; j < k; j++) rg_store(yr, j, rg_load(yr, j) / sum);
    }
}

template <typename T>
__global__ static void softmax_rows_back(const T *y, const T *dy, T *dx, size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const T *yr = y + r * k, *dyr = dy + r * k;
        T *dxr = dx + r * k;
        float dot = 0;
        for (int j = 0; j < k; j++) dot += rg_load(dyr, j) * rg_load(yr, j);
        for (int j = 0; j < k; j++) rg_store(dxr, j, rg_load(dxr, j) + rg_load(yr, j) * (rg_load(dyr, j) - dot));
    }
}

template <typename T>
static void launch_softmax(const float *x, float *y, size_t rows, int k) {
    LAUNCH(softmax_rows<T>, rows, rg_as<T>(x), rg_as<T>(y), rows, k);
}

template <typename T>
static void launch_softmax_back(const float *y, const float *dy, float *dx, size_t rows, int k) {
    LAUNCH(softmax_rows_back<T>, rows, rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), rows, k);
}

extern "C" void rg_cuda_softmax_forward(const float *x, float *y, size_t rows, int k) {
    RG_STORED(launch_softmax, x, y, rows, k);
}

extern "C" void rg_cuda_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, int k) {
    RG_STORED(launch_softmax_back, y, dy, dx, rows, k);
}

/* The backward tangents (fp32: the exact Hessian's products are refused in bf16) */
__global__ static void backward_tangent(rg_act act, const float *x, const float *y, const float *t,
                                        const float *dy, float *dx, size_t n) {
    GRID_STRIDE(i, n) dx[i] += act_d2f(act, x[i], y[i]) * t[i] * dy[i];
}

__global__ static void softmax_rows_back_tangent(const float *y, const float *t, const float *dy, float *dx,
                                                 size_t rows, int k) {
    GRID_STRIDE(r, rows) {
        const float *yr = y + r * k, *dyr = dy + r * k, *tr = t + r * k;
        float *dxr = dx + r * k;
        float dot = 0, dot_t = 0;
        for (int j = 0; j < k; j++) dot += dyr[j] * yr[j], dot_t += dyr[j] * tr[j];
        for (int j = 0; j < k; j++) dxr[j] += tr[j] * (dyr[j] - dot) - yr[j] * dot_t;
    }
}

extern "C" void rg_cuda_activation_backward_tangent(rg_act act, const float *x, const float *y, const float *t,
                                                    const float *dy, float *dx, size_t n) {
    LAUNCH(backward_tangent, n, act, x, y, t, dy, dx, n);
}

extern "C" void rg_cuda_softmax_backward_tangent(const float *y, const float *t, const float *dy, float *dx,
                                                 size_t rows, int k) {
    LAUNCH(softmax_rows_back_tangent, rows, y, t, dy, dx, rows, k);
}
