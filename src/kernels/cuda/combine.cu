/*
 * combine.cu — the ops that move or add values without weights, on the device, each as the
 * CPU's op_combine.c and op_pool.c compute it (the same sums in the same order: the CPU's
 * bits): add, a weighted sum, a gradient passed on (= or +=), zero padding, concat, global
 * average pooling and the channels-last flatten, forward and backward.  The values are
 * the activations' type (launch.h); adds and passes go four values a thread where the
 * buffers allow.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>

/* a weighted sum's terms noted (launch.h): its count, then each term's weight and input */
static inline void rg_note_members(const rg_cuda_terms &t) {
    rg_cuda_note_all(t.n);
    for (int k = 0; k < t.n; k++) rg_cuda_note_all(t.w[k], t.x[k]);
}

template <typename T>
__global__ static void add(T *y, const T *a, const T *b, size_t n) {
    GRID_STRIDE(i, n) rg_store(y, i, rg_load(a, i) + rg_load(b, i));
}

template <typename T>
__global__ static void add_quads(T *y, const T *a, const T *b, size_t quads) {
    GRID_STRIDE(q, quads) rg_store4(y, q, rg_plus4(rg_load4(a, q), rg_load4(b, q)));
}

/* y = sum_k w_k x_k, the inputs in order */
template <typename T>
__global__ static void weighted_sum(T *y, rg_cuda_terms t, size_t n) {
    GRID_STRIDE(i, n) {
        float s = 0;
        for (int k = 0; k < t.n; k++) s += t.w[k] * rg_load(rg_as<T>(t.x[k]), i);
        rg_store(y, i, s);
    }
}

template <typename T>
__global__ static void add_scaled(T *dx, const T *dy, float w, size_t n) {
    GRID_STRIDE(i, n) rg_store(dx, i, rg_load(dx, i) + w * rg_load(dy, i));
}

template <typename T>
__global__ static void pass_on(T *dx0, bool fresh0, T *dx1, bool fresh1, const T *dy, size_t n) {
    GRID_STRIDE(i, n) {
        const float g = rg_load(dy, i);
        rg_store(dx0, i, fresh0 ? g : rg_load(dx0, i) + g);
        if (dx1) rg_store(dx1, i, fresh1 ? g : rg_load(dx1, i) + g);
    }
}

template <typename T>
__global__ static void pass_on_quads(T *dx0, bool fresh0, T *dx1, bool fresh1, const T *dy, size_t quads) {
    GRID_STRIDE(q, quads) {
        const rg_floats4 g = rg_load4(dy, q);
        rg_store4(dx0, q, fresh0 ? g : rg_plus4(rg_load4(dx0, q), g));
        if (dx1) rg_store4(dx1, q, fresh1 ? g : rg_plus4(rg_load4(dx1, q), g));
    }
}

/* one thread an output value: the input's value, or 0 in the border */
template <typename T>
__global__ static void pad(const T *x, T *y, size_t planes, int h, int w, rg_planes out, int top, int left) {
    GRID_STRIDE(i, planes * out.rows.d * out.cols.d) {
        const rg_cell o = rg_cell_of(i, out);
        const int r = o.y - top, c = o.x - left;
        rg_store(y, i, r >= 0 && r < h && c >= 0 && c < w ? rg_load(x, (o.plane * h + r) * w + c) : 0.0f);
    }
}

template <typename T>
__global__ static void unpad(const T *dy, T *dx, size_t planes, rg_planes in, int oh, int ow, int top, int left) {
    GRID_STRIDE(i, planes * in.rows.d * in.cols.d) {
        const rg_cell at = rg_cell_of(i, in);
        rg_store(dx, i, rg_load(dx, i) + rg_load(dy, (at.plane * oh + at.y + top) * ow + at.x + left));
    }
}

/* where value i of a concat's input, `part` values a sample, sits in its output: at `at`
 * within each sample's `size` */
__device__ static size_t concat_at(size_t i, rg_divider part, size_t size, size_t at) {
    const size_t s = rg_divide(part, i);
    return s * size + at + (i - s * part.d);
}

template <typename T>
__global__ static void concat_in(const T *x, T *y, int batch, rg_divider part, size_t size, size_t at) {
    GRID_STRIDE(i, (size_t)batch * part.d) y[concat_at(i, part, size, at)] = x[i];
}

template <typename T>
__global__ static void concat_back(const T *dy, T *dx, int batch, rg_divider part, size_t size, size_t at) {
    GRID_STRIDE(i, (size_t)batch * part.d) rg_store(dx, i, rg_load(dx, i) + rg_load(dy, concat_at(i, part, size, at)));
}

/* one thread a plane, its values added in order in float */
template <typename T>
__global__ static void plane_means(const T *x, T *y, size_t planes, size_t hw) {
    GRID_STRIDE(p, planes) {
        float s = 0;
        for (size_t i = 0; i < hw; i++) s += rg_load(x, p * hw + i);
        rg_store(y, p, s / (float)hw);
    }
}

template <typename T>
__global__ static void plane_spread(const T *dy, T *dx, size_t planes, rg_divider hw) {
    GRID_STRIDE(i, planes * hw.d) rg_store(dx, i, rg_load(dx, i) + rg_load(dy, rg_divide(hw, i)) / (float)hw.d);
}

/* where value i of a batch x c x hw tensor goes when each sample's values are laid out
 * channels last: x[c][h][w] to y[(h W + w) C + c] */
__device__ static size_t channels_last(size_t i, rg_planes channels) {
    const rg_cell at = rg_cell_of(i, channels); /* (sample, channel, position) */
    const size_t c = channels.rows.d;
    return at.plane * c * channels.cols.d + (size_t)at.x * c + at.y;
}

template <typename T>
__global__ static void to_channels_last(const T *x, T *y, int batch, rg_planes channels) {
    GRID_STRIDE(i, (size_t)batch * channels.rows.d * channels.cols.d) y[channels_last(i, channels)] = x[i];
}

template <typename T>
__global__ static void from_channels_last(const T *dy, T *dx, int batch, rg_planes channels) {
    GRID_STRIDE(i, (size_t)batch * channels.rows.d * channels.cols.d)
        rg_store(dx, i, rg_load(dx, i) + rg_load(dy, channels_last(i, channels)));
}

/* The launches over the activations' type T (RG_STORED picks it); the add and the pass
 * four values a thread where the buffers allow. */
template <typename T>
static void add_values(float *y, const float *a, const float *b, size_t n) {
    if (rg_cuda_quads_fit<T>(n, y, a, b)) LAUNCH(add_quads<T>, n / 4, rg_as<T>(y), rg_as<T>(a), rg_as<T>(b), n / 4);
    else LAUNCH(add<T>, n, rg_as<T>(y), rg_as<T>(a), rg_as<T>(b), n);
}
template <typename T>
static void weighted_sum_values(float *y, const rg_cuda_terms *t, size_t n) {
    LAUNCH(weighted_sum<T>, n, rg_as<T>(y), *t, n);
}
template <typename T>
static void add_scaled_values(float *dx, const float *dy, float w, size_t n) {
    LAUNCH(add_scaled<T>, n, rg_as<T>(dx), rg_as<T>(dy), w, n);
}
template <typename T>
static void pass_on_values(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n) {
    if (rg_cuda_quads_fit<T>(n, dx0, dx1, dy))
        LAUNCH(pass_on_quads<T>, n / 4, rg_as<T>(dx0), fresh0, rg_as<T>(dx1), fresh1, rg_as<T>(dy), n / 4);
    else LAUNCH(pass_on<T>, n, rg_as<T>(dx0), fresh0, rg_as<T>(dx1), fresh1, rg_as<T>(dy), n);
}
template <typename T>
static void pad_values(const float *x, float *y, size_t planes, int h, int w, int oh, int ow, int top, int left) {
    LAUNCH(pad<T>, planes * oh * ow, rg_as<T>(x), rg_as<T>(y), planes, h, w, rg_planes_of(oh, ow), top, left);
}
template <typename T>
static void unpad_values(const float *dy, float *dx, size_t planes, int h, int w, int oh, int ow, int top, int left) {
    LAUNCH(unpad<T>, planes * h * w, rg_as<T>(dy), rg_as<T>(dx), planes, rg_planes_of(h, w), oh, ow, top, left);
}
template <typename T>
static void concat_values(const float *x, float *y, int batch, size_t part, size_t size, size_t at) {
    LAUNCH(concat_in<T>, (size_t)batch * part, rg_as<T>(x), rg_as<T>(y), batch, rg_divider_of(part), size, at);
}
template <typename T>
static void concat_back_values(const float *dy, float *dx, int batch, size_t part, size_t size, size_t at) {
    LAUNCH(concat_back<T>, (size_t)batch * part, rg_as<T>(dy), rg_as<T>(dx), batch, rg_divider_of(part), size, at);
}
template <typename T>
static void means_values(const float *x, float *y, size_t planes, size_t hw) {
    LAUNCH(plane_means<T>, planes, rg_as<T>(x), rg_as<T>(y), planes, hw);
}
template <typename T>
static void spread_values(const float *dy, float *dx, size_t planes, size_t hw) {
    LAUNCH(plane_spread<T>, planes * hw, rg_as<T>(dy), rg_as<T>(dx), planes, rg_divider_of(hw));
}
template <typename T>
static void channels_last_values(const float *x, float *y, int batch, size_t c, size_t hw) {
    LAUNCH(to_channels_last<T>, (size_t)batch * c * hw, rg_as<T>(x), rg_as<T>(y), batch, rg_planes_of(c, hw));
}
template <typename T>
static void channels_first_values(const float *dy, float *dx, int batch, size_t c, size_t hw) {
    LAUNCH(from_channels_last<T>, (size_t)batch * c * hw, rg_as<T>(dy), rg_as<T>(dx), batch, rg_planes_of(c, hw));
}

extern "C" void rg_cuda_add(float *y, const float *a, const float *b, size_t n) { RG_STORED(add_values, y, a, b, n); }

extern "C" void rg_cuda_weighted_sum(float *y, const rg_cuda_terms *t, size_t n) {
    RG_STORED(weighted_sum_values, y, t, n);
}

extern "C" void rg_cuda_add_scaled(float *dx, const float *dy, float w, size_t n) {
    RG_STORED(add_scaled_values, dx, dy, w, n);
}

extern "C" void rg_cuda_pass_on(float *dx0, bool fresh0, float *dx1, bool fresh1, const float *dy, size_t n) {
    RG_STORED(pass_on_values, dx0, fresh0, dx1, fresh1, dy, n);
}

extern "C" void rg_cuda_zero_pad_forward(const float *x, float *y, size_t planes, int h, int w, int oh, int ow,
                                         int top, int left) {
    RG_STORED(pad_values, x, y, planes, h, w, oh, ow, top, left);
}

extern "C" void rg_cuda_zero_pad_backward(const float *dy, float *dx, size_t planes, int h, int w, int oh, int ow,
                                          int top, int left) {
    RG_STORED(unpad_values, dy, dx, planes, h, w, oh, ow, top, left);
}

extern "C" void rg_cuda_concat_forward(const float *x, float *y, int batch, size_t part, size_t size, size_t at) {
    RG_STORED(concat_values, x, y, batch, part, size, at);
}

extern "C" void rg_cuda_concat_backward(const float *dy, float *dx, int batch, size_t part, size_t size, size_t at) {
    RG_STORED(concat_back_values, dy, dx, batch, part, size, at);
}

extern "C" void rg_cuda_global_avg_pool_forward(const float *x, float *y, size_t planes, size_t hw) {
    RG_STORED(means_values, x, y, planes, hw);
}

extern "C" void rg_cuda_global_avg_pool_backward(const float *dy, float *dx, size_t planes, size_t hw) {
    RG_STORED(spread_values, dy, dx, planes, hw);
}

extern "C" void rg_cuda_flatten_hwc_forward(const float *x, float *y, int batch, size_t c, size_t hw) {
    RG_STORED(channels_last_values, x, y, batch, c, hw);
}

extern "C" void rg_cuda_flatten_hwc_backward(const float *dy, float *dx, int batch, size_t c, size_t hw) {
    RG_STORED(channels_first_values, dy, dx, batch, c, hw);
}
