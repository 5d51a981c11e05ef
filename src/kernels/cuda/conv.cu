/*
 * conv.cu — 2-D convolution on the device as the CPU's im2col path computes it: per sample
 * and group, y = W col(x) + b through cuBLAS (col(x) the input under every window tap, zero
 * in the padding, straight from x for a 1x1 stride-1 unpadded convolution); backward dW +=
 * dY col(x)^T, db += dY summed over samples and positions (one thread a filter, in a fixed
 * order), dx (+)= the scatter of W^T dY, gathered per input value (no atomics: the same
 * bits every run).  One sample at a time, with the column buffer in the graph's workspace;
 * cuDNN's kernels are the next step (docs/cuda.md).
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

/* col[(c kh + i) kw + j][oy ow + ox] = x[c][oy s - pad_t + i d][ox s - pad_l + j d], 0 outside */
__global__ static void im2col(const float *x, rg_conv_geom q, float *col) {
    const size_t ohw = (size_t)q.oh * q.ow;
    GRID_STRIDE(e, (size_t)q.c * q.kh * q.kw * ohw) {
        const size_t row = e / ohw, p = e % ohw;
        const int c = (int)(row / (q.kh * q.kw)), i = (int)(row / q.kw % q.kh), j = (int)(row % q.kw);
        const int iy = (int)(p / q.ow) * q.stride - q.pad_t + i * q.dilation;
        const int ix = (int)(p % q.ow) * q.stride - q.pad_l + j * q.dilation;
        col[e] = iy >= 0 && iy < q.h && ix >= 0 && ix < q.w ? x[((size_t)c * q.h + iy) * q.w + ix] : 0.0f;
    }
}

/* dx[c][iy][ix] (= or +=) the sum over the taps that read it of dcol, taps in order */
__global__ static void col2im(const float *dcol, rg_conv_geom q, float *dx, bool fresh) {
    const size_t ohw = (size_t)q.oh * q.ow;
    GRID_STRIDE(e, (size_t)q.c * q.h * q.w) {
        const int c = (int)(e / ((size_t)q.h * q.w)), iy = (int)(e / q.w % q.h), ix = (int)(e % q.w);
        float s = 0;
        for (int i = 0; i < q.kh; i++) {
            const int ty = iy + q.pad_t - i * q.dilation; /* oy * stride */
            if (ty < 0 || ty % q.stride || ty / q.stride >= q.oh) continue;
            for (int j = 0; j < q.kw; j++) {
                const int tx = ix + q.pad_l - j * q.dilation;
                if (tx < 0 || tx % q.stride || tx / q.stride >= q.ow) continue;
                s += dcol[((size_t)(c * q.kh + i) * q.kw + j) * ohw + (size_t)(ty / q.stride) * q.ow + tx / q.stride];
            }
        }
        dx[e] = fresh ? s : dx[e] + s;
    }
}

/* every plane of y (batch x filters planes of ohw) starts at its filter's bias */
__global__ static void bias_planes(const float *bias, float *y, size_t planes, int filters, size_t ohw) {
    GRID_STRIDE(e, planes * ohw) y[e] = bias[e / ohw % filters];
}

/* db[o] += dY[b][o][p] over samples, then positions, in float */
__global__ static void bias_grad(const float *dy, float *db, int batch, int filters, size_t ohw) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= filters) return;
    float s = db[o];
    for (int b = 0; b < batch; b++)
        for (size_t p = 0; p < ohw; p++) s += dy[((size_t)b * filters + o) * ohw + p];
    db[o] = s;
}

/* whether x itself is the column matrix: a 1x1 window at stride 1 without padding */
static bool direct(const rg_conv_geom *q) {
    return q->kh == 1 && q->kw == 1 && q->stride == 1 && q->pad_t == 0 && q->pad_l == 0 && q->oh == q->h &&
           q->ow == q->w;
}

extern "C" size_t rg_cuda_conv2d_workspace(const rg_conv_geom *q) {
    return direct(q) ? 0 : (size_t)q->c * q->kh * q->kw * q->oh * q->ow;
}

extern "C" rg_status rg_cuda_conv2d_forward(const float *x, const float *w, const float *bias, float *y, int batch,
                                            const rg_conv_geom *q, int filters, int groups, float *col) {
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * ohw;
    if (bias) LAUNCH(bias_planes, (size_t)batch * out_size, bias, y, (size_t)batch * filters, filters, (size_t)ohw);
    rg_status s = RG_OK;
    for (int b = 0; b < batch && !s; b++) {
        const float *cols = x + b * in_size;
        if (!direct(q)) {
            LAUNCH(im2col, (size_t)q->c * q->kh * q->kw * ohw, x + b * in_size, *q, col);
            cols = col;
        }
        for (int gi = 0; gi < groups && !s; gi++)
            s = rg_cuda_sgemm(false, false, og, ohw, kg, 1.0f, w + (size_t)gi * og * kg, kg, cols + (size_t)gi * kg * ohw,
                              ohw, bias ? 1.0f : 0.0f, y + b * out_size + (size_t)gi * og * ohw, ohw);
    }
    return s;
}

extern "C" rg_status rg_cuda_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                             float *dx, bool fresh, int batch, const rg_conv_geom *q, int filters,
                                             int groups, float *col) {
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * ohw;
    if (db) bias_grad<<<(filters + RG_CUDA_THREADS - 1) / RG_CUDA_THREADS, RG_CUDA_THREADS>>>(dy, db, batch, filters,
                                                                                             (size_t)ohw);
    rg_status s = RG_OK;
    for (int b = 0; b < batch && !s; b++) {
        const float *dyb = dy + b * out_size, *cols = x + b * in_size;
        if (!direct(q)) {
            LAUNCH(im2col, (size_t)q->c * q->kh * q->kw * ohw, x + b * in_size, *q, col);
            cols = col;
        }
        for (int gi = 0; gi < groups && !s; gi++)
            s = rg_cuda_sgemm(false, true, og, kg, ohw, 1.0f, dyb + (size_t)gi * og * ohw, ohw, cols + (size_t)gi * kg * ohw,
                              ohw, 1.0f, dw + (size_t)gi * og * kg, kg);
        if (!dx || s) continue;
        /* W^T dY: into dx itself for a direct convolution, else into the columns, scattered back */
        float *dcol = direct(q) ? dx + b * in_size : col;
        const float beta = direct(q) && !fresh ? 1.0f : 0.0f;
        for (int gi = 0; gi < groups && !s; gi++)
            s = rg_cuda_sgemm(true, false, kg, ohw, og, 1.0f, w + (size_t)gi * og * kg, kg, dyb + (size_t)gi * og * ohw, ohw,
                              beta, dcol + (size_t)gi * kg * ohw, ohw);
        if (!direct(q)) LAUNCH(col2im, in_size, col, *q, dx + b * in_size, fresh);
    }
    return s;
}
