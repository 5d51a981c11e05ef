/*
 * conv.cu — 2-D convolution on the device as the CPU's im2col path computes it: per group,
 * y = W col(x) + b for the whole batch in one strided batched cuBLAS product (col(x) the
 * input under every window tap, zero in the padding, unrolled for every sample in one
 * launch; x itself for a 1x1 stride-1 unpadded convolution); backward dW += the sum over
 * samples of dY col(x)^T (each sample's product, then added in sample order; for a 1x1
 * convolution whose weights outweigh a sample's input and output, one product over dY and
 * x laid out channel by channel, a sum over samples and positions together), db += dY
 * summed over samples and positions (in runs of a filter's values, four a load where a
 * plane's size is a multiple of 4, a block a run, the runs added in order), dx (+)= the
 * scatter of W^T dY, gathered per input value (no atomics: the same bits every run).  The columns of the whole batch and each sample's dW (or dY
 * and x by channel) live in the graph's workspace.  Where cuDNN is found and takes the geometry (cudnn.cu: its
 * symmetric padding fits, and the convolution is not 1x1 stride 1), its convolutions
 * replace the products and the columns; the bias stays here, added after the product in
 * one pass that also adds the other input of a residual add done here (memory.c: the add
 * in place on this output, whose other input is ready first), so that (conv + b) + s has
 * the bits of the add done on its own (bf16: the bias under the product, which rounds
 * once); that pass also takes, when asked, the batch statistics of the batch norm that
 * reads the sum (statistics.h), in the order batch norm takes them, which then reads the
 * sum once (the same bits).  Under bf16 (launch.h) the
 * input, output, columns and their gradients are bf16 and the products bf16's, over a
 * bf16 copy of W; dW, each sample's part of it, and db stay float.
 */
#include "cuda.h"
#include "launch.h"
#include "statistics.h"

#include <cuda_runtime.h>

/* A convolution's index arithmetic as dividers (divide.h): a sample's columns (rows c kh kw
 * of oh ow positions), a row's channel and tap, a position's row, the stride, and the
 * input's planes (h x w) and channels. */
typedef struct conv_index {
    rg_planes columns, taps, input;
    rg_divider channels, ow, stride;
} conv_index;

static conv_index conv_index_of(const rg_conv_geom *q) {
    return {rg_planes_of((uint64_t)q->c * q->kh * q->kw, (uint64_t)q->oh * q->ow), rg_planes_of(q->kh, q->kw),
            rg_planes_of(q->h, q->w), rg_divider_of(q->c), rg_divider_of(q->ow), rg_divider_of(q->stride)};
}

/* each sample's col[(c kh + i) kw + j][oy ow + ox] = x[c][oy s - pad_t + i d][ox s - pad_l + j d],
 * 0 outside; samples `in_size` apart in x, `col_size` in col */
template <typename T>
__global__ static void im2col(const T *x, rg_conv_geom q, conv_index k, T *col, int batch, size_t in_size,
                              size_t col_size) {
    GRID_STRIDE(e, (size_t)batch * col_size) {
        const rg_cell at = rg_cell_of(e, k.columns), tap = rg_cell_of(at.y, k.taps); /* (sample, row, position) */
        const int oy = (int)rg_divide(k.ow, at.x), ox = at.x - oy * q.ow;
        const int iy = oy * q.stride - q.pad_t + tap.y * q.dilation, ix = ox * q.stride - q.pad_l + tap.x * q.dilation;
        rg_store(col, e, iy >= 0 && iy < q.h && ix >= 0 && ix < q.w
                             ? rg_load(x, at.plane * in_size + (tap.plane * q.h + iy) * q.w + ix)
                             : 0.0f);
    }
}

/* t / stride where t is a multiple of it (0 <= t): false where it is not one */
__device__ static bool strided(int t, rg_divider stride, int *o) {
    *o = (int)rg_divide(stride, (uint64_t)t);
    return *o * (int)stride.d == t;
}

/* each sample's dx[c][iy][ix] (= or +=) the sum over the taps that read it of dcol, taps in order */
template <typename T>
__global__ static void col2im(const T *dcol, rg_conv_geom q, conv_index k, T *dx, bool fresh, int batch,
                              size_t in_size, size_t col_size) {
    const size_t ohw = (size_t)q.oh * q.ow;
    GRID_STRIDE(e, (size_t)batch * in_size) {
        const rg_cell at = rg_cell_of(e, k.input);
        const size_t b = rg_divide(k.channels, at.plane); /* the sample, then the channel */
        const int c = (int)(at.plane - b * k.channels.d), iy = at.y, ix = at.x;
        const T *dc = dcol + b * col_size;
        float s = 0;
        for (int i = 0; i < q.kh; i++) {
            const int ty = iy + q.pad_t - i * q.dilation; /* oy * stride */
            int oy, ox;
            if (ty < 0 || !strided(ty, k.stride, &oy) || oy >= q.oh) continue;
            for (int j = 0; j < q.kw; j++) {
                const int tx = ix + q.pad_l - j * q.dilation;
                if (tx < 0 || !strided(tx, k.stride, &ox) || ox >= q.ow) continue;
                s += rg_load(dc, ((size_t)(c * q.kh + i) * q.kw + j) * ohw + (size_t)oy * q.ow + ox);
            }
        }
        rg_store(dx, e, fresh ? s : rg_load(dx, e) + s);
    }
}

/* x (batch x C x hw) as C rows of batch x hw values: row c holds every sample's plane c */
template <typename T>
__global__ static void by_channel(const T *x, T *out, int batch, rg_planes channels) {
    const size_t hw = channels.cols.d;
    GRID_STRIDE(e, (size_t)batch * channels.rows.d * hw) {
        const rg_cell at = rg_cell_of(e, channels); /* (sample, channel, position) */
        out[((size_t)at.y * batch + at.plane) * hw + at.x] = x[e];
    }
}

/* dw[i] += the samples' parts[s][i], in sample order */
__global__ static void add_parts(const float *parts, float *dw, size_t n, int batch) {
    GRID_STRIDE(i, n) {
        float s = dw[i];
        for (int b = 0; b < batch; b++) s += parts[(size_t)b * n + i];
        dw[i] = s;
    }
}

/* a value's filter's bias (rg_cuda_channel_map's f: every plane starts at it) */
struct bias_of {
    const float *bias;
    __device__ float operator()(int c, float, float) const { return bias[c]; }
};

/* y plus its filter's bias (NULL: none), then plus s, the add's other input, when `sum`
 * (rg_cuda_channel_map's f over y and s) */
struct bias_and_sum {
    const float *bias;
    bool sum;
    __device__ float operator()(int c, float y, float s) const {
        const float t = bias ? y + bias[c] : y;
        return sum ? t + s : t;
    }
};
static inline void rg_note_members(const bias_and_sum &v) { rg_cuda_note_all(v.bias, v.sum); }

/* rg_cuda_run_sums' f over channel c of y (and s, the add's other input, NULL: none): each
 * value made bias_and_sum's and stored, then its terms of batch norm's statistics taken of
 * it as stored, as norm.cu's sums over y afterwards would take them (in its order: one
 * value an index, or (quads) four of one plane, their terms added in index order). */
template <typename T, bool quads>
struct written_values {
    T *y;
    const T *s;
    bias_and_sum f;
    int c;
    __device__ double2 operator()(size_t i) const {
        if (!quads) {
            rg_store(y, i, f(c, rg_load(y, i), s ? rg_load(s, i) : 0.0f));
            return value_and_square{}(rg_load(y, i), 0.0f);
        }
        const rg_floats4 u = rg_load4(y, i), w = s ? rg_load4(s, i) : rg_floats4{};
        rg_floats4 v;
        for (int k = 0; k < 4; k++) v.v[k] = f(c, u.v[k], w.v[k]);
        rg_store4(y, i, v);
        const rg_floats4 stored = rg_load4(y, i);
        double2 t = {0, 0};
        for (int k = 0; k < 4; k++) {
            const double2 e = value_and_square{}(stored.v[k], 0.0f);
            t.x += e.x, t.y += e.y;
        }
        return t;
    }
    __device__ written_values of_channel(int ch) const { return {y, s, f, ch}; }
};
template <typename T, bool quads> static inline void rg_note_members(const written_values<T, quads> &v) {
    rg_cuda_note_all(v.y, v.s, v.f, v.c);
}

/* y's bias and sum added (bias_and_sum) in the pass that takes batch norm's statistics of
 * it (norm.cu's, in its order: four values a load exactly where it would load four), or
 * false where that pass cannot load s as it loads y (nothing done then). */
template <typename T>
static bool write_with_statistics(T *y, const T *s, bias_and_sum f, int batch, int C, size_t hw,
                                  rg_cuda_norm_statistics *p) {
    const size_t m = (size_t)batch * hw;
    const bool quads = hw % 4 == 0 && rg_cuda_quads_fit<T>(m * C, y, NULL, NULL);
    if (quads && !rg_cuda_quads_fit<T>(m * C, s, NULL, NULL)) return false;
    const int runs = rg_cuda_runs(C, m);
    const rg_cuda_runs_scratch scratch = rg_cuda_run_scratch(2 * (size_t)runs * C, C, "batch norm");
    if (!scratch.part) return false;
    if (quads)
        rg_cuda_launch_run_sums(C, hw / 4, m / 4, runs, written_values<T, true>{y, s, f, 0},
                                rg_statistics_done(m, C, p), scratch);
    else rg_cuda_launch_run_sums(C, hw, m, runs, written_values<T, false>{y, s, f, 0}, rg_statistics_done(m, C, p),
                                 scratch);
    return true;
}

/* rg_cuda_run_sums' done: db[o] += filter o's sum of dY over samples and positions */
struct bias_done {
    float *db;
    __device__ void operator()(int o, const double *part, int runs) const {
        db[o] += (float)rg_cuda_runs_total(part, o, runs, 0);
    }
};

template <typename T>
static void bias_grad(const T *dy, float *db, int batch, int filters, size_t ohw) {
    const size_t m = (size_t)batch * ohw;
    const int runs = rg_cuda_runs(filters, m);
    const rg_cuda_runs_scratch s = rg_cuda_run_scratch(2 * (size_t)runs * filters, filters,
                                                       "a convolution's bias gradient");
    if (s.part)
        rg_cuda_launch_run_sums4(filters, ohw, m, runs, dy, (const T *)NULL, rg_cuda_value{}, bias_done{db}, s);
}

/* Whether backward takes dW in one product over samples and positions (dY and x laid out
 * channel by channel): a 1x1 convolution whose weights outweigh a sample's input and
 * output. */
static bool dw_by_channel(const rg_conv_geom *q, int filters, int groups) {
    const size_t wsize = (size_t)filters * (q->c / groups) * q->kh * q->kw;
    return rg_cuda_conv_direct(q) && groups == 1 &&
           wsize > (size_t)q->c * q->h * q->w + (size_t)filters * q->oh * q->ow;
}

/* n values of the activations' type, in floats: two a float under bf16 */
static size_t floats_for(size_t n, bool bf16) { return bf16 ? (n + 1) / 2 : n; }

/* The workspace a sample: its columns in the activations' type, then either its dY and x
 * by channel in that type (under bf16 with 16 bytes to start x's on a 16-byte boundary)
 * or its dW in float. */
extern "C" size_t rg_cuda_conv2d_workspace(const rg_conv_geom *q, int filters, int groups, bool bf16) {
    if (rg_cudnn_usable(q)) return 0; /* cuDNN's scratch is its own */
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * q->oh * q->ow;
    const size_t rest = dw_by_channel(q, filters, groups) ? floats_for(in_size + out_size, bf16) + (bf16 ? 4 : 0)
                                                          : (size_t)filters * (q->c / groups) * q->kh * q->kw;
    return floats_for(rg_cuda_conv_columns(q), bf16) + rest;
}

/* The batch's column matrices (x itself for a direct convolution), and how far apart
 * samples lie in them. */
template <typename T>
static const T *columns(const T *x, const rg_conv_geom *q, T *col, int batch, size_t *stride) {
    const size_t in_size = (size_t)q->c * q->h * q->w, cs = rg_cuda_conv_columns(q);
    *stride = rg_cuda_conv_direct(q) ? in_size : cs;
    if (rg_cuda_conv_direct(q)) return x;
    LAUNCH(im2col<T>, (size_t)batch * cs, x, *q, conv_index_of(q), col, batch, in_size, cs);
    return col;
}

/* The convolution over the activations' type T (RG_STORED picks it), its columns at the
 * workspace's start (rg_cuda_conv2d_workspace). */
template <typename T>
static rg_status forward(const float *xf, const float *w, const float *bias, const float *sumf, float *yf, bool add,
                         int batch, const rg_conv_geom *q, int filters, int groups, float *colf,
                         rg_cuda_norm_statistics *stats) {
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t out_size = (size_t)filters * ohw;
    const T *x = rg_as<T>(xf);
    T *y = rg_as<T>(yf);
    if (batch <= 0) return RG_OK;
    /* bf16's output is rounded once, by the product: the bias goes under it, as what y holds;
     * float's is added after it with the add's other input in one pass (the same bits) */
    const bool under = bias && sizeof(T) == 2;
    if (under)
        rg_cuda_channel_map((const T *)NULL, (const T *)NULL, y, false, (size_t)batch * out_size, filters,
                            (size_t)ohw, bias_of{bias});
    const float beta = add || under ? 1.0f : 0.0f; /* onto what y holds, or fresh */
    rg_status s = RG_OK;
    if (rg_cudnn_usable(q)) {
        s = rg_cudnn_conv2d_forward(xf, w, yf, beta, batch, q, filters, groups);
    } else {
        const T *wt = rg_weights_as<T>(w, (size_t)filters * kg);
        if (!wt) return RG_ERR_MEMORY;
        size_t stride;
        const T *cols = columns(x, q, rg_as<T>(colf), batch, &stride);
        for (int gi = 0; gi < groups && !s; gi++)
            s = rg_products(false, false, og, ohw, kg, wt + (size_t)gi * og * kg, kg, 0, cols + (size_t)gi * kg * ohw,
                            ohw, stride, beta, y + (size_t)gi * og * ohw, ohw, out_size, batch);
    }
    const bias_and_sum f = {under ? NULL : bias, sumf != NULL};
    if (!s && (f.bias || f.sum) && stats)
        stats->made = write_with_statistics(y, rg_as<T>(sumf), f, batch, filters, (size_t)ohw, stats);
    if (!s && (f.bias || f.sum) && !(stats && stats->made))
        rg_cuda_channel_map((const T *)y, rg_as<T>(sumf), y, false, (size_t)batch * out_size, filters, (size_t)ohw, f);
    return s;
}

template <typename T>
static rg_status backward(const float *xf, const float *dyf, const float *w, float *dw, float *db, float *dxf,
                          bool fresh, int batch, const rg_conv_geom *q, int filters, int groups, float *colf) {
    const int og = filters / groups, kg = q->c / groups * q->kh * q->kw, ohw = q->oh * q->ow;
    const size_t in_size = (size_t)q->c * q->h * q->w, out_size = (size_t)filters * ohw, cs = rg_cuda_conv_columns(q);
    const size_t wsize = (size_t)filters * kg;
    const T *x = rg_as<T>(xf), *dy = rg_as<T>(dyf);
    T *dx = rg_as<T>(dxf), *col = rg_as<T>(colf);
    float *parts = colf + floats_for((size_t)batch * cs, sizeof(T) == 2); /* past the columns */
    if (batch <= 0) return RG_OK;
    if (db) bias_grad(dy, db, batch, filters, (size_t)ohw);
    if (rg_cudnn_usable(q))
        return rg_cudnn_conv2d_backward(xf, dyf, w, dw, dxf, fresh ? 0.0f : 1.0f, batch, q, filters, groups);
    size_t stride;
    const T *cols = columns(x, q, col, batch, &stride);
    rg_status s = RG_OK;
    if (dw_by_channel(q, filters, groups)) {
        /* one product over samples and positions: dY and x channel by channel (x's from a
         * 16-byte boundary under bf16) */
        T *gy = rg_as<T>(parts), *gx = gy + (sizeof(T) == 2 ? ((size_t)batch * out_size + 7) / 8 * 8
                                                               : (size_t)batch * out_size);
        LAUNCH(by_channel<T>, (size_t)batch * out_size, dy, gy, batch, rg_planes_of(filters, ohw));
        LAUNCH(by_channel<T>, (size_t)batch * in_size, x, gx, batch, rg_planes_of(q->c, ohw));
        s = rg_product(false, true, filters, kg, batch * ohw, gy, batch * ohw, gx, batch * ohw, 1.0f, dw, kg);
    } else {
        for (int gi = 0; gi < groups && !s; gi++) /* each sample's dW, summed in sample order */
            s = rg_products(false, true, og, kg, ohw, dy + (size_t)gi * og * ohw, ohw, out_size,
                            cols + (size_t)gi * kg * ohw, ohw, stride, 0.0f, parts + (size_t)gi * og * kg, kg, wsize,
                            batch);
        if (!s) LAUNCH(add_parts, wsize, parts, dw, wsize, batch);
    }
    if (!dx || s) return s;
    const T *wt = rg_weights_as<T>(w, wsize);
    if (!wt) return RG_ERR_MEMORY;
    /* W^T dY: into dx itself for a direct convolution, else into the columns, scattered back */
    T *dcol = rg_cuda_conv_direct(q) ? dx : col;
    const float beta = rg_cuda_conv_direct(q) && !fresh ? 1.0f : 0.0f;
    for (int gi = 0; gi < groups && !s; gi++)
        s = rg_products(true, false, kg, ohw, og, wt + (size_t)gi * og * kg, kg, 0, dy + (size_t)gi * og * ohw,
                        ohw, out_size, beta, dcol + (size_t)gi * kg * ohw, ohw, stride, batch);
    if (!s && !rg_cuda_conv_direct(q))
        LAUNCH(col2im<T>, (size_t)batch * in_size, col, *q, conv_index_of(q), dx, fresh, batch, in_size, cs);
    return s;
}

extern "C" rg_status rg_cuda_conv2d_forward(const float *x, const float *w, const float *bias, const float *sum,
                                            float *y, bool add, int batch, const rg_conv_geom *q, int filters,
                                            int groups, float *col, rg_cuda_norm_statistics *stats) {
    if (stats) stats->made = false;
    return RG_STORED(forward, x, w, bias, sum, y, add, batch, q, filters, groups, col, stats);
}

extern "C" rg_status rg_cuda_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *db,
                                             float *dx, bool fresh, int batch, const rg_conv_geom *q, int filters,
                                             int groups, float *col) {
    return RG_STORED(backward, x, dy, w, dw, db, dx, fresh, batch, q, filters, groups, col);
}
