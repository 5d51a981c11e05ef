/*
 * pool.cu — max and average pooling on the device, as the CPU's op_pool.c computes them:
 * the first maximum of each window in scan order (kept in aux as its offset in the plane,
 * -1 for a padding cell, but for the 2x2 stride-2 window, found again backward, and the
 * 1x1 window, whose maximum is its one input; padding cells zeros where a zero padding was
 * folded in), the mean counting padded cells as zeros.  Backward gathers, for each input
 * value, the outputs whose windows took it, in output order, adding each to the value as
 * the CPU's scatter does: the CPU's bits (a 1x1 window's output adds to its input).  Max
 * pooling's tangent takes the input's tangent at each window's first maximum.  The values
 * are the activations' type (launch.h; a maximum of bf16 values is one of them, exactly).
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <float.h>

typedef struct window {
    int k, stride, pad; /* the pooling window */
    int zero_padded;    /* max pooling: padding cells are zeros (a folded zero padding), not left out */
    rg_divider by;      /* the stride, as a divider */
} window;

static window window_of(int k, int stride, int pad, bool zero_padded = false) {
    return {k, stride, pad, zero_padded, rg_divider_of((uint64_t)stride)};
}

template <typename T>
__global__ static void max_2x2(const T *x, T *y, size_t planes, rg_conv_geom q, rg_planes out) {
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        const size_t p = o.plane;
        const int oy = o.y, ox = o.x;
        const T *r0 = x + (p * q.h + 2 * oy) * q.w + 2 * ox, *r1 = r0 + q.w;
        const float a = rg_load(r0, 0), b = rg_load(r0, 1), c = rg_load(r1, 0), d = rg_load(r1, 1);
        const float top = b > a ? b : a, bottom = d > c ? d : c;
        rg_store(y, e, bottom > top ? bottom : top);
    }
}

/* the input's share of its (only) 2x2 window's gradient: all of it when it is the window's
 * first maximum (a b / c d), else 0, added as the CPU adds it */
template <typename T>
__global__ static void max_2x2_back(const T *x, const T *y, const T *dy, T *dx, size_t planes, rg_conv_geom q,
                                    rg_planes in) {
    GRID_STRIDE(e, planes * q.h * q.w) {
        const rg_cell at = rg_cell_of(e, in);
        const size_t p = at.plane;
        const int iy = at.y, ix = at.x, oy = iy / 2, ox = ix / 2;
        if (oy >= q.oh || ox >= q.ow) continue; /* a trailing row or column no window reads */
        const size_t o = (p * q.oh + oy) * q.ow + ox;
        const T *r0 = x + (p * q.h + 2 * oy) * q.w + 2 * ox, *r1 = r0 + q.w;
        const float m = rg_load(y, o);
        const int first = rg_load(r0, 0) == m   ? 0
                          : rg_load(r0, 1) == m ? 1
                          : rg_load(r1, 0) == m ? 2
                          : rg_load(r1, 1) == m ? 3 : 4;
        const int me = (iy - 2 * oy) * 2 + ix - 2 * ox;
        rg_store(dx, e, rg_load(dx, e) + (first == me ? rg_load(dy, o) : 0.0f));
    }
}

/* A 1x1 window at a stride: output o is the input under it; backward adds each output's
 * gradient to that one input (the windows never overlap: one thread an output, and the
 * inputs no window takes are not touched). */
template <typename T>
__global__ static void max_1x1(const T *x, T *y, size_t planes, rg_conv_geom q, rg_planes out) {
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        rg_store(y, e, rg_load(x, (o.plane * q.h + (size_t)o.y * q.stride) * q.w + (size_t)o.x * q.stride));
    }
}

template <typename T>
__global__ static void max_1x1_back(const T *dy, T *dx, size_t planes, rg_conv_geom q, rg_planes out) {
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        const size_t i = (o.plane * q.h + (size_t)o.y * q.stride) * q.w + (size_t)o.x * q.stride;
        rg_store(dx, i, rg_load(dx, i) + rg_load(dy, e));
    }
}

/* The first maximum in scan order of output o's window over plane xp: its offset in the
 * plane and value; -1 for a padding cell (a zero where a.zero_padded, else left out: -1
 * and -FLT_MAX only for a window wholly in it) */
template <typename T>
__device__ static int first_max(const T *xp, rg_cell o, const rg_conv_geom &q, window a, float *max) {
    int where = -1;
    bool any = false;
    float best = -FLT_MAX;
    for (int i = 0; i < a.k; i++) {
        const int iy = o.y * a.stride - a.pad + i;
        const bool row = iy >= 0 && iy < q.h;
        if (!row && !a.zero_padded) continue;
        for (int j = 0; j < a.k; j++) {
            const int ix = o.x * a.stride - a.pad + j;
            const bool in = row && ix >= 0 && ix < q.w;
            if (!in && !a.zero_padded) continue;
            const float v = in ? rg_load(xp, iy * q.w + ix) : 0.0f;
            if (!any || v > best) best = v, where = in ? iy * q.w + ix : -1, any = true;
        }
    }
    *max = best;
    return where;
}

template <typename T>
__global__ static void max_general(const T *x, T *y, int *arg, size_t planes, rg_conv_geom q, rg_planes out,
                                   window a) {
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        float best;
        arg[e] = first_max(x + o.plane * q.h * q.w, o, q, a, &best);
        rg_store(y, e, best);
    }
}

/* the tangent: the input's at each window's first maximum (found again from x, as the 2x2
 * path keeps no offset; the same maximum as every path's) */
template <typename T>
__global__ static void max_tangent(const T *x, const T *t_in, T *t, size_t planes, rg_conv_geom q, rg_planes out,
                                   window a) {
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        float best;
        const int where = first_max(x + o.plane * q.h * q.w, o, q, a, &best);
        rg_store(t, e, where < 0 ? 0.0f : rg_load(t_in, o.plane * q.h * q.w + where));
    }
}

/* outputs whose window covers input row (or column) i: [*lo, *hi) */
__device__ static void covering(int i, int n_out, window a, int *lo, int *hi) {
    const int top = i + a.pad - a.k + 1; /* o stride >= top */
    *lo = top <= 0 ? 0 : (int)rg_divide(a.by, (uint64_t)(top + a.stride - 1));
    const int last = (int)rg_divide(a.by, (uint64_t)(i + a.pad)) + 1;
    *hi = last < n_out ? last : n_out;
}

template <typename T>
__global__ static void max_general_back(const int *arg, const T *dy, T *dx, size_t planes, rg_conv_geom q,
                                        rg_planes in, window a) {
    GRID_STRIDE(e, planes * q.h * q.w) {
        const rg_cell at = rg_cell_of(e, in);
        const size_t p = at.plane;
        const int iy = at.y, ix = at.x, me = iy * q.w + ix;
        int y0, y1, x0, x1;
        covering(iy, q.oh, a, &y0, &y1);
        covering(ix, q.ow, a, &x0, &x1);
        float acc = rg_load(dx, e);
        for (int oy = y0; oy < y1; oy++)
            for (int ox = x0; ox < x1; ox++) {
                const size_t o = (p * q.oh + oy) * q.ow + ox;
                if (arg[o] == me) acc += rg_load(dy, o);
            }
        rg_store(dx, e, acc);
    }
}

template <typename T>
__global__ static void avg(const T *x, T *y, size_t planes, rg_conv_geom q, rg_planes out, window a) {
    const float scale = 1.0f / (float)(a.k * a.k);
    GRID_STRIDE(e, planes * q.oh * q.ow) {
        const rg_cell o = rg_cell_of(e, out);
        const size_t p = o.plane;
        const int oy = o.y, ox = o.x;
        const T *xp = x + p * q.h * q.w;
        float s = 0;
        for (int i = 0; i < a.k; i++) {
            const int iy = oy * a.stride - a.pad + i;
            if (iy < 0 || iy >= q.h) continue;
            for (int j = 0; j < a.k; j++) {
                const int ix = ox * a.stride - a.pad + j;
                if (ix >= 0 && ix < q.w) s += rg_load(xp, iy * q.w + ix);
            }
        }
        rg_store(y, e, s * scale);
    }
}

template <typename T>
__global__ static void avg_back(const T *dy, T *dx, size_t planes, rg_conv_geom q, rg_planes in, window a) {
    const float scale = 1.0f / (float)(a.k * a.k);
    GRID_STRIDE(e, planes * q.h * q.w) {
        const rg_cell at = rg_cell_of(e, in);
        const size_t p = at.plane;
        const int iy = at.y, ix = at.x;
        int y0, y1, x0, x1;
        covering(iy, q.oh, a, &y0, &y1);
        covering(ix, q.ow, a, &x0, &x1);
        float acc = rg_load(dx, e);
        for (int oy = y0; oy < y1; oy++)
            for (int ox = x0; ox < x1; ox++) acc += rg_load(dy, (p * q.oh + oy) * q.ow + ox) * scale;
        rg_store(dx, e, acc);
    }
}

static bool is_2x2(int k, int stride, int pad) { return k == 2 && stride == 2 && pad == 0; }
static bool is_1x1(int k, int pad) { return k == 1 && pad == 0; }

/* The launches over the activations' type T (RG_STORED picks it). */
template <typename T>
static void max_forward(const float *x, float *y, int *arg, int batch, const rg_conv_geom *q, int k, int stride,
                        int pad, bool zero_padded) {
    const size_t planes = (size_t)batch * q->c, n = planes * q->oh * q->ow;
    const rg_planes out = rg_planes_of(q->oh, q->ow);
    if (is_2x2(k, stride, pad)) LAUNCH(max_2x2<T>, n, rg_as<T>(x), rg_as<T>(y), planes, *q, out);
    else if (is_1x1(k, pad)) LAUNCH(max_1x1<T>, n, rg_as<T>(x), rg_as<T>(y), planes, *q, out);
    else
        LAUNCH(max_general<T>, n, rg_as<T>(x), rg_as<T>(y), arg, planes, *q, out,
               window_of(k, stride, pad, zero_padded));
}

template <typename T>
static void max_backward(const float *x, const float *y, const int *arg, const float *dy, float *dx, int batch,
                         const rg_conv_geom *q, int k, int stride, int pad) {
    const size_t planes = (size_t)batch * q->c, n = planes * q->h * q->w;
    const rg_planes in = rg_planes_of(q->h, q->w);
    if (is_2x2(k, stride, pad))
        LAUNCH(max_2x2_back<T>, n, rg_as<T>(x), rg_as<T>(y), rg_as<T>(dy), rg_as<T>(dx), planes, *q, in);
    else if (is_1x1(k, pad))
        LAUNCH(max_1x1_back<T>, planes * q->oh * q->ow, rg_as<T>(dy), rg_as<T>(dx), planes, *q,
               rg_planes_of(q->oh, q->ow));
    else LAUNCH(max_general_back<T>, n, arg, rg_as<T>(dy), rg_as<T>(dx), planes, *q, in, window_of(k, stride, pad));
}

template <typename T>
static void avg_forward(const float *x, float *y, int batch, const rg_conv_geom *q, int k, int stride, int pad) {
    const size_t planes = (size_t)batch * q->c;
    LAUNCH(avg<T>, planes * q->oh * q->ow, rg_as<T>(x), rg_as<T>(y), planes, *q, rg_planes_of(q->oh, q->ow),
           window_of(k, stride, pad));
}

template <typename T>
static void avg_backward(const float *dy, float *dx, int batch, const rg_conv_geom *q, int k, int stride, int pad) {
    const size_t planes = (size_t)batch * q->c;
    LAUNCH(avg_back<T>, planes * q->h * q->w, rg_as<T>(dy), rg_as<T>(dx), planes, *q, rg_planes_of(q->h, q->w),
           window_of(k, stride, pad));
}

extern "C" void rg_cuda_max_pool_forward(const float *x, float *y, int *arg, int batch, const rg_conv_geom *q, int k,
                                         int stride, int pad, bool zero_padded) {
    RG_STORED(max_forward, x, y, arg, batch, q, k, stride, pad, zero_padded);
}

extern "C" void rg_cuda_max_pool_backward(const float *x, const float *y, const int *arg, const float *dy, float *dx,
                                          int batch, const rg_conv_geom *q, int k, int stride, int pad) {
    RG_STORED(max_backward, x, y, arg, dy, dx, batch, q, k, stride, pad);
}

template <typename T>
static void max_tangent_of(const float *x, const float *t_in, float *t, size_t planes, const rg_conv_geom *q, int k,
                           int stride, int pad, bool zero_padded) {
    LAUNCH(max_tangent<T>, planes * q->oh * q->ow, rg_as<T>(x), rg_as<T>(t_in), rg_as<T>(t), planes, *q,
           rg_planes_of(q->oh, q->ow), window_of(k, stride, pad, zero_padded));
}

extern "C" void rg_cuda_max_pool_tangent(const float *x, const float *t_in, float *t, int batch, const rg_conv_geom *q,
                                         int k, int stride, int pad, bool zero_padded) {
    const size_t planes = (size_t)batch * q->c;
    RG_STORED(max_tangent_of, x, t_in, t, planes, q, k, stride, pad, zero_padded);
}

extern "C" void rg_cuda_avg_pool_forward(const float *x, float *y, int batch, const rg_conv_geom *q, int k, int stride,
                                         int pad) {
    RG_STORED(avg_forward, x, y, batch, q, k, stride, pad);
}

extern "C" void rg_cuda_avg_pool_backward(const float *dy, float *dx, int batch, const rg_conv_geom *q, int k,
                                          int stride, int pad) {
    RG_STORED(avg_backward, dy, dx, batch, q, k, stride, pad);
}
