/*
 * conv.c — 2-D convolution with stride, padding (same, valid, explicit), dilation and
 * groups, through im2col and one matrix product per sample and group:
 *
 *   x (B, C, H, W), W (O, C/G, K, K) OIHW, b (O), y (B, O, OH, OW)
 *   y_b[g] = W[g] · im2col(x_b)[g] + b
 *   dW[g] += dy_b[g] · col[g]^T,  db += sum dy_b,  dx_b += col2im(W[g]^T · dy_b[g])
 *
 * Samples run in parallel, one per thread, each with its own slice of the graph's
 * workspace (column buffer, and in backward private dW/db partials summed afterwards in
 * thread order, so results do not depend on scheduling).  A 1x1 convolution at stride 1
 * without padding needs no im2col: x_b already is the column matrix.  Stride-1 and stride-2
 * convolutions of few channels (most of a CIFAR-style ResNet's) use the direct kernels of
 * kernels/cpu/conv_direct.c instead, which need neither im2col nor the BLAS's packing (at
 * stride 2 for the output and dW; dx still goes through the column buffer).
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct conv_attr {
    int filters, kernel;
    rg_conv_opts o;
    rg_conv_geom geom; /* filled by infer */
    bool direct;       /* 1x1, stride 1, no padding: skip im2col */
    size_t fast_work;  /* floats per thread for the direct kernels; 0: they do not apply */
    int slots;         /* threads the workspace has slices for */
} conv_attr;

/* The workspace for the geometry: the direct kernels' packed weights, then per thread a
 * column buffer (or the direct kernels' buffers), dW and db partials.  Never shrinks (a
 * folded zero_pad asks again, conv_absorb_padding). */
static void size_workspace(rg_node_impl *n) {
    conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const int k2 = a->kernel * a->kernel;
    const size_t col = (size_t)q->c * k2 * q->oh * q->ow;
    const size_t wsize = (size_t)a->filters * (q->c / a->o.groups) * k2;
    const size_t fast = !a->direct && rg_direct_conv_fits(q, a->filters, a->o.groups)
                            ? rg_direct_conv_work_floats(q, a->filters) : 0;
    if (fast > a->fast_work) a->fast_work = fast;
    const size_t need = (a->fast_work ? rg_direct_conv_packed_floats(q, a->filters) : 0) +
                        (size_t)a->slots * ((a->direct ? 0 : col > a->fast_work ? col : a->fast_work) +
                                            wsize + (size_t)a->filters);
    if (need > n->workspace) n->workspace = need;
}

rg_conv_opts rg_conv_defaults(void) {
    return (rg_conv_opts){.stride = 1, .dilation = 1, .groups = 1, .padding = RG_PAD_SAME,
                          .bias = 1, .init = RG_INIT(RG_INIT_HE_NORMAL)};
}

/* Output size and leading pad of one axis. */
static bool axis_geometry(int in, int k_eff, int stride, rg_padding mode, int pad, int *out,
                          int *lead) {
    if (mode == RG_PAD_SAME) {
        *out = (in + stride - 1) / stride;
        int total = (*out - 1) * stride + k_eff - in;
        *lead = total > 0 ? total / 2 : 0;
    } else {
        int p = mode == RG_PAD_EXPLICIT ? pad : 0;
        *lead = p;
        *out = in + 2 * p >= k_eff ? (in + 2 * p - k_eff) / stride + 1 : 0;
    }
    return *out >= 1;
}

/* Shared by conv and the pools: validates a (C, H, W) input and fills the geometry. */
rg_status rg_window_geometry(const rg_node_impl *x, int kernel, int stride, int dilation,
                             rg_padding mode, int pad, rg_conv_geom *g) {
    if (x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "needs an input of shape (channels, height, width), got "
                                     "%d dimensions", x->ndim);
    memset(g, 0, sizeof *g);
    g->c = x->shape[0], g->h = x->shape[1], g->w = x->shape[2];
    g->kh = g->kw = kernel;
    g->stride = stride, g->dilation = dilation;
    int k_eff = (kernel - 1) * dilation + 1;
    if (!axis_geometry(g->h, k_eff, stride, mode, pad, &g->oh, &g->pad_t) ||
        !axis_geometry(g->w, k_eff, stride, mode, pad, &g->ow, &g->pad_l))
        return rg_fail(RG_ERR_SHAPE, "a %dx%d window (dilation %d) does not fit an input of "
                                     "%dx%d with padding %d: the input is too small for this "
                                     "network", kernel, kernel, dilation, g->h, g->w,
                       mode == RG_PAD_EXPLICIT ? pad : 0);
    return RG_OK;
}

static rg_status conv_infer(rg_graph *g, rg_node_impl *n) {
    conv_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    rg_status s = rg_window_geometry(x, a->kernel, a->o.stride, a->o.dilation, a->o.padding,
                                     a->o.pad, &a->geom);
    if (s) return s;
    const rg_conv_geom *q = &a->geom;
    const int groups = a->o.groups;
    if (q->c % groups || a->filters % groups)
        return rg_fail(RG_ERR_SHAPE, "groups=%d must divide the input channels (%d) and the "
                                     "filters (%d)", groups, q->c, a->filters);
    a->direct = a->kernel == 1 && a->o.stride == 1 && q->pad_t == 0 && q->pad_l == 0;
    n->ndim = 3;
    n->shape[0] = a->filters, n->shape[1] = q->oh, n->shape[2] = q->ow;
    const int cg = q->c / groups, k2 = a->kernel * a->kernel;
    a->slots = g->slots, a->fast_work = 0, n->workspace = 0;
    size_workspace(n);
    n->flops = 2.0 * a->filters * q->oh * q->ow * (double)cg * k2;
    const int fan_in = cg * k2, fan_out = a->filters / groups * k2;
    if (rg_param_declare(g, n, "kernel", 4, (int[]){a->filters, cg, a->kernel, a->kernel},
                         a->o.init, fan_in, fan_out) < 0)
        return RG_ERR_MEMORY;
    if (a->o.bias) {
        rg_init bi = a->o.init.kind == RG_INIT_TORCH ? a->o.init : RG_INIT(RG_INIT_ZEROS);
        if (rg_param_declare(g, n, "bias", 1, (int[]){a->filters}, bi, fan_in, fan_out) < 0)
            return RG_ERR_MEMORY;
    }
    return RG_OK;
}

const rg_conv_geom *rg_conv_geometry(const rg_node_impl *n, int *groups) {
    const conv_attr *a = n->attr;
    *groups = a->o.groups;
    return &a->geom;
}

/* Reads the unpadded input and pads in the im2col instead: saves the padded copy. */
static bool conv_absorb_padding(rg_node_impl *n, const int pad[4]) {
    conv_attr *a = n->attr;
    if (a->direct) return false; /* its workspace has no column buffer */
    a->geom.h -= pad[0] + pad[1];
    a->geom.w -= pad[2] + pad[3];
    a->geom.pad_t += pad[0];
    a->geom.pad_l += pad[2];
    a->geom.folded_t += pad[0];
    a->geom.folded_l += pad[2];
    size_workspace(n);
    return true;
}

/* The direct kernels apply, also after padding was absorbed (conv_absorb_padding). */
static bool use_fast(const conv_attr *a) {
    return a->fast_work && rg_direct_conv_fits(&a->geom, a->filters, a->o.groups) &&
           rg_direct_conv_work_floats(&a->geom, a->filters) <= a->fast_work;
}

/* Where one thread's slice of the workspace begins, and its length (before dW, db). */
static size_t slice_start(const conv_attr *a, size_t *col_size) {
    const rg_conv_geom *q = &a->geom;
    const size_t col = a->direct ? 0 : (size_t)q->c * q->kh * q->kw * q->oh * q->ow;
    *col_size = col > a->fast_work ? col : a->fast_work;
    return a->fast_work ? rg_direct_conv_packed_floats(q, a->filters) : 0;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void conv_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const rg_node_impl *xn = rg_in(g, n, 0);
    const int G = a->o.groups, og = a->filters / G, ohw = q->oh * q->ow;
    const int kg = q->c / G * q->kh * q->kw; /* column rows per group */
    size_t col_size;
    float *slices = g->workspace + slice_start(a, &col_size);
    const size_t in_size = xn->size, out_size = n->size;
    const size_t slice = col_size + (size_t)a->filters * kg + a->filters;
    const float *w = rg_param_data(g, n, 0), *bias = a->o.bias ? rg_param_data(g, n, 1) : NULL;
    const bool fast = use_fast(a);
    /* the add in place on this output (memory.c), done here when the monitor does not read
     * the output itself this pass */
    n->added = fast && n->adds_from >= 0 && !n->watched;
    const float *sum = n->added ? g->nodes[n->adds_from].out : NULL;
    if (fast) { /* each thread a run of samples, which the kernels may take several at a time */
        const int slots = batch < g->slots ? batch : g->slots;
        rg_direct_conv_pack(w, a->filters, q, false, g->workspace);
#pragma omp parallel for schedule(static) num_threads(slots)
        for (int t = 0; t < slots; t++) {
            const int b0 = (int)((long)batch * t / slots), b1 = (int)((long)batch * (t + 1) / slots);
            rg_direct_conv_forward(xn->out + (size_t)b0 * in_size, b1 - b0, q, a->filters, g->workspace, bias,
                                   sum ? sum + (size_t)b0 * out_size : NULL, n->out + (size_t)b0 * out_size,
                                   slices + (size_t)thread_id() * slice);
            for (int b = b0; b < b1 && n->stats; b++)
                rg_output_stats_sample(n->stats, a->filters, (size_t)ohw, b, n->out + (size_t)b * out_size);
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(g->slots) if (batch > 1)
    for (int b = 0; b < batch; b++) {
        const float *x = xn->out + (size_t)b * in_size;
        float *y = n->out + (size_t)b * out_size;
        const float *col = x;
        if (!a->direct) {
            float *buf = slices + (size_t)thread_id() * slice;
            rg_im2col(x, q, buf);
            col = buf;
        }
        for (int gi = 0; gi < G; gi++)
            rg_sgemm(false, false, og, ohw, kg, 1.0f, w + (size_t)gi * og * kg, kg,
                     col + (size_t)gi * kg * ohw, ohw, 0.0f, y + (size_t)gi * og * ohw, ohw);
        if (bias)
            for (int o = 0; o < a->filters; o++) {
                float *yo = y + (size_t)o * ohw;
                for (int i = 0; i < ohw; i++) yo[i] += bias[o];
            }
        if (n->stats) rg_output_stats_sample(n->stats, a->filters, (size_t)ohw, b, y);
    }
}

/* For the health monitor, when it asks: sample b's squared gradients, dY and the input's
 * (once this conv has added to it), while they are in cache. */
static void gradient_squares(const rg_node_impl *n, const rg_node_impl *xn, int b) {
    if (!n->stats) return;
    n->stats->dy_squares[b] = rg_squares(n->dout + (size_t)b * n->size, NULL, n->size);
    if (xn->needs_grad)
        n->stats->dx_squares[b] = rg_squares(xn->dout + (size_t)b * xn->size, NULL, xn->size);
}

/* One sample's dx += the scatter of W^T dY (per group): straight into dx for a 1x1 direct
 * conv, else through the column buffer (free again once dW has used it). */
static void input_grad(const conv_attr *a, const float *w, const float *dy, float *dx, float *col,
                       bool fresh) {
    const rg_conv_geom *q = &a->geom;
    const int G = a->o.groups, og = a->filters / G, ohw = q->oh * q->ow;
    const int kg = q->c / G * q->kh * q->kw;
    for (int gi = 0; gi < G; gi++)
        rg_sgemm(true, false, kg, ohw, og, 1.0f, w + (size_t)gi * og * kg, kg,
                 dy + (size_t)gi * og * ohw, ohw, a->direct && !fresh ? 1.0f : 0.0f,
                 (a->direct ? dx : col) + (size_t)gi * kg * ohw, ohw);
    if (a->direct) return;
    /* the columns scatter into dx, and a stride wider than the window leaves gaps */
    if (fresh) memset(dx, 0, (size_t)q->c * q->h * q->w * sizeof *dx);
    rg_col2im_add(col, q, dx);
}

/* db += the sum of dY over positions, per filter (when the conv has a bias). */
static void add_bias_grad(const conv_attr *a, const float *dy, int ohw, float *db) {
    if (!a->o.bias) return;
    for (int o = 0; o < a->filters; o++) {
        const float *dyo = dy + (size_t)o * ohw;
        float s = 0;
        for (int i = 0; i < ohw; i++) s += dyo[i];
        db[o] += s;
    }
}

static void conv_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *xn = rg_in(g, n, 0);
    const int G = a->o.groups, og = a->filters / G, ohw = q->oh * q->ow;
    const int kg = q->c / G * q->kh * q->kw;
    size_t col_size;
    float *slices = g->workspace + slice_start(a, &col_size);
    const size_t wsize = (size_t)a->filters * kg, slot_size = col_size + wsize + a->filters;
    const float *w = rg_param_data(g, n, 0);
    const int slots = batch < g->slots ? batch : g->slots;
    const bool fast = use_fast(a), fast_dx = fast && rg_direct_conv_takes_dx(q, a->filters);
    const bool fresh = rg_grad_fresh(g, 0); /* dx is written whole, not added to */
    if (fast_dx && xn->needs_grad) rg_direct_conv_pack(w, a->filters, q, true, g->workspace);
    /* samples per call: the kernels' most, and no more than a thread's share */
    const int most = fast ? rg_direct_conv_group(q, a->filters) : 1, share = (batch + slots - 1) / slots;
    const int group = most < share ? most : share;
#pragma omp parallel num_threads(slots)
    {
        const int t = thread_id();
        float *col = slices + (size_t)t * slot_size;
        float *dw = col + col_size, *db = dw + wsize;
        memset(dw, 0, (wsize + a->filters) * sizeof *dw);
#pragma omp for schedule(static)
        for (int b = 0; b < batch; b += group) {
            const float *x = xn->out + (size_t)b * xn->size;
            const float *dy = n->dout + (size_t)b * n->size;
            if (fast) {
                const int count = batch - b < group ? batch - b : group;
                rg_direct_conv_backward(x, dy, count, q, a->filters, g->workspace, dw,
                                        xn->needs_grad && fast_dx ? xn->dout + (size_t)b * xn->size : NULL,
                                        fresh, col);
                for (int i = 0; i < count; i++) {
                    add_bias_grad(a, dy + (size_t)i * n->size, ohw, db);
                    if (xn->needs_grad && !fast_dx) /* stride 2: dx through the column buffer */
                        input_grad(a, w, dy + (size_t)i * n->size, xn->dout + (size_t)(b + i) * xn->size, col,
                                   fresh);
                    gradient_squares(n, xn, b + i);
                }
                continue;
            }
            const float *cx = x;
            if (!a->direct) {
                rg_im2col(x, q, col);
                cx = col;
            }
            for (int gi = 0; gi < G; gi++)
                rg_sgemm(false, true, og, kg, ohw, 1.0f, dy + (size_t)gi * og * ohw, ohw,
                         cx + (size_t)gi * kg * ohw, ohw, 1.0f, dw + (size_t)gi * og * kg, kg);
            add_bias_grad(a, dy, ohw, db);
            if (!xn->needs_grad) {
                gradient_squares(n, xn, b);
                continue;
            }
            input_grad(a, w, dy, xn->dout + (size_t)b * xn->size, col, fresh);
            gradient_squares(n, xn, b);
        }
    }
    float *dW = rg_param_grad(g, n, 0), *dB = a->o.bias ? rg_param_grad(g, n, 1) : NULL;
    for (int t = 0; t < slots; t++) {
        const float *dw = slices + (size_t)t * slot_size + col_size, *db = dw + wsize;
        for (size_t i = 0; i < wsize; i++) dW[i] += dw[i];
        if (dB)
            for (int o = 0; o < a->filters; o++) dB[o] += db[o];
    }
}

const rg_op_def rg_op_conv2d_def = {
    .name = "conv2d", .min_inputs = 1, .max_inputs = 1,
    .infer = conv_infer, .forward = conv_forward, .backward = conv_backward,
    .absorb_padding = conv_absorb_padding,
    .backward_reads_inputs = true, .fills_fresh_grads = true,
};

rg_node rg_conv2d(rg_graph *g, rg_node x, int filters, int kernel, const rg_conv_opts *opts) {
    rg_conv_opts o = opts ? *opts : rg_conv_defaults();
    if (filters < 1 || kernel < 1 || o.stride < 1 || o.dilation < 1 || o.groups < 1 ||
        o.pad < 0 || o.padding < RG_PAD_SAME || o.padding > RG_PAD_EXPLICIT)
        return rg_graph_error(g, RG_ERR_ARG, "conv2d: filters %d, kernel %d, stride %d, "
                              "dilation %d, groups %d and pad %d must be positive (pad may be 0)",
                              filters, kernel, o.stride, o.dilation, o.groups, o.pad);
    if (o.init.kind < 0 || o.init.kind >= RG_INIT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "conv2d: unknown initialiser %d", o.init.kind);
    conv_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->filters = filters;
    a->kernel = kernel;
    a->o = o;
    return rg_graph_add_node(g, RG_OP_CONV2D, &x, 1, a);
}
