/*
 * op_conv.c — 2-D convolution on the CPU, through im2col and one matrix product per sample
 * and group.  Samples run in parallel, one per thread, each with its own slice of the
 * graph's workspace (column buffer, and in backward private dW/db partials summed
 * afterwards in thread order, so results do not depend on scheduling).  A 1x1 convolution
 * at stride 1 without padding needs no im2col: x_b already is the column matrix.  Stride-1
 * and stride-2 convolutions of few channels (most of a CIFAR-style ResNet's) use the direct
 * kernels of conv_direct.c instead, and 3x3 stride-1 ones Winograd's (conv_winograd.c),
 * which need neither im2col nor the BLAS's packing.  Its tangent and backward tangent reuse
 * forward's and backward's products with tangents in place of x or W.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* The direct kernels apply, also after padding was absorbed (conv_absorb_padding). */
/* At build, and again when a zero padding is folded in (never shrinking). */
void rg_cpu_conv2d_plan(rg_graph *g, rg_node_impl *n) {
    ((conv_attr *)n->attr)->slots = g->slots;
    size_workspace(n);
}

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

/* y (+)= W col(x) + bias per sample and group, through im2col in each thread's slice of
 * the workspace (beta 0: y written, 1: added to); with stats, each sample's planes for the
 * monitor. */
static void columns_product(rg_graph *g, const rg_node_impl *n, int batch, const float *x_all,
                            const float *w, const float *bias, float beta, float *y_all,
                            rg_output_stats *stats) {
    const conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const rg_node_impl *xn = rg_in(g, n, 0);
    const int G = a->o.groups, og = a->filters / G, ohw = q->oh * q->ow;
    const int kg = q->c / G * q->kh * q->kw; /* column rows per group */
    size_t col_size;
    float *slices = g->workspace + slice_start(a, &col_size);
    const size_t in_size = xn->size, out_size = n->size;
    const size_t slice = col_size + (size_t)a->filters * kg + a->filters;
#pragma omp parallel for schedule(static) num_threads(g->slots) if (batch > 1)
    for (int b = 0; b < batch; b++) {
        const float *x = x_all + (size_t)b * in_size;
        float *y = y_all + (size_t)b * out_size;
        const float *col = x;
        if (!a->direct) {
            float *buf = slices + (size_t)thread_id() * slice;
            rg_im2col(x, q, buf);
            col = buf;
        }
        for (int gi = 0; gi < G; gi++)
            rg_sgemm(false, false, og, ohw, kg, 1.0f, w + (size_t)gi * og * kg, kg,
                     col + (size_t)gi * kg * ohw, ohw, beta, y + (size_t)gi * og * ohw, ohw);
        if (bias)
            for (int o = 0; o < a->filters; o++) {
                float *yo = y + (size_t)o * ohw;
                for (int i = 0; i < ohw; i++) yo[i] += bias[o];
            }
        if (stats) rg_output_stats_sample(stats, a->filters, (size_t)ohw, b, y);
    }
}

/* y = conv(x, w) + bias (+ sum, which may be y itself: the kernels read each value of it
 * just before they write it) on the fast kernels, each thread a run of samples, which the
 * kernels may take several at a time; with stats, each sample's sums as it is written. */
static void fast_product(rg_graph *g, const rg_node_impl *n, int batch, const float *x_all, const float *w,
                         const float *bias, const float *sum, float *y_all, rg_output_stats *stats) {
    const conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const int kg = q->c / a->o.groups * q->kh * q->kw, slots = batch < g->slots ? batch : g->slots;
    size_t col_size;
    float *slices = g->workspace + slice_start(a, &col_size);
    const size_t in_size = rg_in(g, n, 0)->size, out_size = n->size;
    const size_t slice = col_size + (size_t)a->filters * kg + a->filters;
    rg_direct_conv_pack(w, a->filters, q, false, g->workspace);
#pragma omp parallel for schedule(static) num_threads(slots)
    for (int t = 0; t < slots; t++) {
        const int b0 = (int)((long)batch * t / slots), b1 = (int)((long)batch * (t + 1) / slots);
        rg_direct_conv_forward(x_all + (size_t)b0 * in_size, b1 - b0, q, a->filters, g->workspace, bias,
                               sum ? sum + (size_t)b0 * out_size : NULL, y_all + (size_t)b0 * out_size,
                               slices + (size_t)thread_id() * slice);
        for (int b = b0; b < b1 && stats; b++)
            rg_output_stats_sample(stats, a->filters, (size_t)q->oh * q->ow, b, y_all + (size_t)b * out_size);
    }
}

void rg_cpu_conv2d_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const conv_attr *a = n->attr;
    const rg_node_impl *xn = rg_in(g, n, 0);
    const float *w = rg_param_data(g, n, 0), *bias = a->o.bias ? rg_param_data(g, n, 1) : NULL;
    const bool fast = use_fast(a);
    /* the add in place on this output (memory.c), done here when the monitor does not read
     * the output itself this pass */
    n->added = fast && n->adds_from >= 0 && !n->watched;
    const float *sum = n->added ? g->nodes[n->adds_from].out : NULL;
    if (fast) fast_product(g, n, batch, xn->out, w, bias, sum, n->out, n->stats);
    else columns_product(g, n, batch, xn->out, w, bias, 0.0f, n->out, n->stats);
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

/* db += the sum of dY over positions, per filter (db NULL: no bias). */
static void add_bias_grad(const conv_attr *a, const float *dy, int ohw, float *db) {
    if (!db) return;
    for (int o = 0; o < a->filters; o++) {
        const float *dyo = dy + (size_t)o * ohw;
        float s = 0;
        for (int i = 0; i < ohw; i++) s += dyo[i];
        db[o] += s;
    }
}

/* dW += dY * col(x)^T, db += the sum of dY (bias), dx (+)= the scatter of W^T dY (dx not
 * NULL; = when fresh), per sample in parallel; the monitor's squares when it asks. */
static void gradients(rg_graph *g, rg_node_impl *n, int batch, const float *x_all, const float *dy_all,
                      const float *w, bool bias, float *dx_all, bool fresh, bool monitor) {
    const conv_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *xn = rg_in(g, n, 0);
    const int G = a->o.groups, og = a->filters / G, ohw = q->oh * q->ow;
    const int kg = q->c / G * q->kh * q->kw;
    size_t col_size;
    float *slices = g->workspace + slice_start(a, &col_size);
    const size_t wsize = (size_t)a->filters * kg, slot_size = col_size + wsize + a->filters;
    const int slots = batch < g->slots ? batch : g->slots;
    const bool fast = use_fast(a), fast_dx = fast && rg_direct_conv_takes_dx(q, a->filters);
    bias = bias && a->o.bias;
    if (fast_dx && dx_all) rg_direct_conv_pack(w, a->filters, q, true, g->workspace);
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
            const float *x = x_all + (size_t)b * xn->size;
            const float *dy = dy_all + (size_t)b * n->size;
            if (fast) {
                const int count = batch - b < group ? batch - b : group;
                rg_direct_conv_backward(x, dy, count, q, a->filters, g->workspace, dw,
                                        dx_all && fast_dx ? dx_all + (size_t)b * xn->size : NULL,
                                        fresh, col);
                for (int i = 0; i < count; i++) {
                    add_bias_grad(a, dy + (size_t)i * n->size, ohw, bias ? db : NULL);
                    if (dx_all && !fast_dx) /* stride 2: dx through the column buffer */
                        input_grad(a, w, dy + (size_t)i * n->size, dx_all + (size_t)(b + i) * xn->size, col,
                                   fresh);
                    if (monitor) gradient_squares(n, xn, b + i);
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
            add_bias_grad(a, dy, ohw, bias ? db : NULL);
            if (dx_all) input_grad(a, w, dy, dx_all + (size_t)b * xn->size, col, fresh);
            if (monitor) gradient_squares(n, xn, b);
        }
    }
    float *dW = rg_param_grad(g, n, 0), *dB = bias ? rg_param_grad(g, n, 1) : NULL;
    for (int t = 0; t < slots; t++) {
        const float *dw = slices + (size_t)t * slot_size + col_size, *db = dw + wsize;
        for (size_t i = 0; i < wsize; i++) dW[i] += dw[i];
        if (dB)
            for (int o = 0; o < a->filters; o++) dB[o] += db[o];
    }
}

void rg_cpu_conv2d_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *xn = rg_in(g, n, 0);
    gradients(g, n, batch, xn->out, n->dout, rg_param_data(g, n, 0), true,
              xn->needs_grad ? xn->dout : NULL, rg_grad_fresh(g, 0), true);
}

/* Backward is bilinear in (x, W) given dY: its tangent is backward with x and W replaced by
 * their tangents, dW += dY * col(x_t)^T and dx += the scatter of W_t^T dY (db does not
 * move). */
void rg_cpu_conv2d_backward_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *xn = rg_in(g, n, 0);
    const float *dw_t = rg_param_tangent(g, n, 0);
    gradients(g, n, batch, rg_tangent_in(g, n, 0), rg_adjoint(g, n), dw_t, false,
              xn->needs_grad && dw_t ? xn->dout : NULL, false, false);
}

/* The tangent, dy = conv(dx, W) + db + conv(x, dW): on the forward's fast kernels where
 * they serve this convolution, else as products with the columns. */
void rg_cpu_conv2d_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const conv_attr *a = n->attr;
    const float *dw = rg_param_tangent(g, n, 0), *db = a->o.bias ? rg_param_tangent(g, n, 1) : NULL;
    float *t = rg_tangent_out(g, n);
    if (use_fast(a)) {
        fast_product(g, n, batch, rg_tangent_in(g, n, 0), rg_param_data(g, n, 0), db, NULL, t, NULL);
        if (dw) fast_product(g, n, batch, rg_in(g, n, 0)->out, dw, NULL, t, t, NULL);
        return;
    }
    columns_product(g, n, batch, rg_tangent_in(g, n, 0), rg_param_data(g, n, 0), db, 0.0f, t, NULL);
    if (dw) columns_product(g, n, batch, rg_in(g, n, 0)->out, dw, NULL, 1.0f, t, NULL);
}
