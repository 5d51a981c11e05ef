/*
 * combine.cu — the ops that move or add values without weights, on the device, each as the
 * CPU's op_combine.c and op_pool.c compute it (the same sums in the same order: the CPU's
 * bits): add, a weighted sum, a gradient passed on (= or +=), zero padding, concat, global
 * average pooling and the channels-last flatten, forward and backward.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

__global__ static void add(float *y, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__device__ static float4 plus(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }

__global__ static void add_quads(float4 *y, const float4 *a, const float4 *b, size_t quads) {
    GRID_STRIDE(q, quads) y[q] = plus(a[q], b[q]);
}

/* y = sum_k w_k x_k, the inputs in order */
__global__ static void weighted_sum(float *y, rg_cuda_terms t, size_t n) {
    GRID_STRIDE(i, n) {
        float s = 0;
        for (int k = 0; k < t.n; k++) s += t.w[k] * t.x[k][i];
        y[i] = s;
    }
}

__global__ static void add_scaled(float *dx, const float *dy, float w, size_t n) {
    GRID_STRIDE(i, n) dx[i] += w * dy[i];
}

__global__ static void pass_on(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n) {
    GRID_STRIDE(i, n) {
        const float g = dy[i];
        dx0[i] = fresh0 ? g : dx0[i] + g;
        if (dx1) dx1[i] = fresh1 ? g : dx1[i] + g;
    }
}

__global__ static void pass_on_quads(float4 *dx0, bool fresh0, float4 *dx1, bool fresh1, const float4 *dy,
                                     size_t quads) {
    GRID_STRIDE(q, quads) {
        const float4 g = dy[q];
        dx0[q] = fresh0 ? g : plus(dx0[q], g);
        if (dx1) dx1[q] = fresh1 ? g : plus(dx1[q], g);
    }
}

/* one thread an output value: the input's value, or 0 in the border */
__global__ static void pad(const float *x, float *y, size_t planes, int h, int w, rg_planes out, int top, int left) {
    GRID_STRIDE(i, planes * out.rows.d * out.cols.d) {
        const rg_cell o = rg_cell_of(i, out);
        const int r = o.y - top, c = o.x - left;
        y[i] = r >= 0 && r < h && c >= 0 && c < w ? x[(o.plane * h + r) * w + c] : 0.0f;
    }
}

__global__ static void unpad(const float *dy, float *dx, size_t planes, rg_planes in, int oh, int ow, int top,
                             int left) {
    GRID_STRIDE(i, planes * in.rows.d * in.cols.d) {
        const rg_cell at = rg_cell_of(i, in);
        dx[i] += dy[(at.plane * oh + at.y + top) * ow + at.x + left];
    }
}

/* where value i of a concat's input, `part` values a sample, sits in its output: at `at`
 * within each sample's `size` */
__device__ static size_t concat_at(size_t i, rg_divider part, size_t size, size_t at) {
    const size_t s = rg_divide(part, i);
    return s * size + at + (i - s * part.d);
}

__global__ static void concat_in(const float *x, float *y, int batch, rg_divider part, size_t size, size_t at) {
    GRID_STRIDE(i, (size_t)batch * part.d) y[concat_at(i, part, size, at)] = x[i];
}

__global__ static void concat_back(const float *dy, float *dx, int batch, rg_divider part, size_t size, size_t at) {
    GRID_STRIDE(i, (size_t)batch * part.d) dx[i] += dy[concat_at(i, part, size, at)];
}

/* one thread a plane, its values added in order in float */
__global__ static void plane_means(const float *x, float *y, size_t planes, size_t hw) {
    GRID_STRIDE(p, planes) {
        float s = 0;
        for (size_t i = 0; i < hw; i++) s += x[p * hw + i];
        y[p] = s / (float)hw;
    }
}

__global__ static void plane_spread(const float *dy, float *dx, size_t planes, rg_divider hw) {
    GRID_STRIDE(i, planes * hw.d) dx[i] += dy[rg_divide(hw, i)] / (float)hw.d;
}

/* where value i of a batch x c x hw tensor goes when each sample's values are laid out
 * channels last: x[c][h][w] to y[(h W + w) C + c] */
__device__ static size_t channels_last(size_t i, rg_planes channels) {
    const rg_cell at = rg_cell_of(i, channels); /* (sample, channel, position) */
    const size_t c = channels.rows.d;
    return at.plane * c * channels.cols.d + (size_t)at.x * c + at.y;
}

__global__ static void to_channels_last(const float *x, float *y, int batch, rg_planes channels) {
    GRID_STRIDE(i, (size_t)batch * channels.rows.d * channels.cols.d) y[channels_last(i, channels)] = x[i];
}

__global__ static void from_channels_last(const float *dy, float *dx, int batch, rg_planes channels) {
    GRID_STRIDE(i, (size_t)batch * channels.rows.d * channels.cols.d) dx[i] += dy[channels_last(i, channels)];
}

extern "C" void rg_cuda_add(float *y, const float *a, const float *b, size_t n) {
    if (n % 4 == 0 && rg_cuda_aligned16(y, a, b))
        LAUNCH(add_quads, n / 4, (float4 *)y, (const float4 *)a, (const float4 *)b, n / 4);
    else LAUNCH(add, n, y, a, b, n);
}

extern "C" void rg_cuda_weighted_sum(float *y, const rg_cuda_terms *t, size_t n) { LAUNCH(weighted_sum, n, y, *t, n); }

extern "C" void rg_cuda_add_scaled(float *dx, const float *dy, float w, size_t n) { LAUNCH(add_scaled, n, dx, dy, w, n); }

extern "C" void rg_cuda_pass_on(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n) {
    if (n % 4 == 0 && rg_cuda_aligned16(dx0, dx1, dy))
        LAUNCH(pass_on_quads, n / 4, (float4 *)dx0, fresh0, (float4 *)dx1, fresh1, (const float4 *)dy, n / 4);
    else LAUNCH(pass_on, n, dx0, fresh0, dx1, fresh1, dy, n);
}

extern "C" void rg_cuda_zero_pad_forward(const float *x, float *y, size_t planes, int h, int w, int oh, int ow,
                                         int top, int left) {
    LAUNCH(pad, planes * oh * ow, x, y, planes, h, w, rg_planes_of(oh, ow), top, left);
}

extern "C" void rg_cuda_zero_pad_backward(const float *dy, float *dx, size_t planes, int h, int w, int oh, int ow,
                                          int top, int left) {
    LAUNCH(unpad, planes * h * w, dy, dx, planes, rg_planes_of(h, w), oh, ow, top, left);
}

extern "C" void rg_cuda_concat_forward(const float *x, float *y, int batch, size_t part, size_t size, size_t at) {
    LAUNCH(concat_in, (size_t)batch * part, x, y, batch, rg_divider_of(part), size, at);
}

extern "C" void rg_cuda_concat_backward(const float *dy, float *dx, int batch, size_t part, size_t size, size_t at) {
    LAUNCH(concat_back, (size_t)batch * part, dy, dx, batch, rg_divider_of(part), size, at);
}

extern "C" void rg_cuda_global_avg_pool_forward(const float *x, float *y, size_t planes, size_t hw) {
    LAUNCH(plane_means, planes, x, y, planes, hw);
}

extern "C" void rg_cuda_global_avg_pool_backward(const float *dy, float *dx, size_t planes, size_t hw) {
    LAUNCH(plane_spread, planes * hw, dy, dx, planes, rg_divider_of(hw));
}

extern "C" void rg_cuda_flatten_hwc_forward(const float *x, float *y, int batch, size_t c, size_t hw) {
    LAUNCH(to_channels_last, (size_t)batch * c * hw, x, y, batch, rg_planes_of(c, hw));
}

extern "C" void rg_cuda_flatten_hwc_backward(const float *dy, float *dx, int batch, size_t c, size_t hw) {
    LAUNCH(from_channels_last, (size_t)batch * c * hw, dy, dx, batch, rg_planes_of(c, hw));
}
