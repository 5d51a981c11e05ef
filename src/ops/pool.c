/*
 * pool.c — pooling: max and average over k x k windows, and global average pooling.
 *
 *   max:  y = max over the window (padding cells are -inf); backward routes dy to the
 *         first maximum, whose position is kept in aux.
 *   avg:  y = sum over the window / (k*k) (padding cells count as zeros, PyTorch's
 *         count_include_pad=True; with no padding, as Keras); dx += dy / (k*k) per tap.
 *   global average: y_c = mean over (H, W); dx += dy_c / (H*W).
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool_attr {
    int kernel, stride, pad;
    rg_conv_geom geom;
} pool_attr;

static rg_status pool_infer(rg_graph *g, rg_node_impl *n) {
    pool_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (a->pad * 2 > a->kernel)
        return rg_fail(RG_ERR_ARG, "pooling pad %d is more than half the window %d", a->pad, a->kernel);
    rg_status s = rg_window_geometry(x, a->kernel, a->stride, 1, RG_PAD_EXPLICIT, a->pad, &a->geom);
    if (s) return s;
    n->ndim = 3;
    n->shape[0] = a->geom.c, n->shape[1] = a->geom.oh, n->shape[2] = a->geom.ow;
    if (n->op == RG_OP_MAX_POOL) n->aux_per_sample = (size_t)a->geom.c * a->geom.oh * a->geom.ow;
    return RG_OK;
}

/* The common 2x2, stride 2, unpadded window: four loads and selects, no branches (the
 * branchy version mispredicted on every other window and cost 16% of the CNN's time).
 * Ties keep the first maximum in scan order, as the general path does. */
static void max_plane_2x2(const float *xp, float *yp, int32_t *ap, const rg_conv_geom *q) {
    for (int oy = 0; oy < q->oh; oy++) {
        const float *r0 = xp + (size_t)(2 * oy) * q->w, *r1 = r0 + q->w;
        float *yr = yp + (size_t)oy * q->ow;
        int32_t *ar = ap + (size_t)oy * q->ow;
        const int32_t row = 2 * oy * q->w;
        for (int ox = 0; ox < q->ow; ox++) {
            const float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            const int32_t base = row + 2 * ox;
            const float top = b > a ? b : a, bottom = d > c ? d : c;
            const int32_t wt = b > a ? base + 1 : base, wb = d > c ? base + q->w + 1 : base + q->w;
            yr[ox] = bottom > top ? bottom : top;
            ar[ox] = bottom > top ? wb : wt;
        }
    }
}

static void max_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const float *x = rg_in(g, n, 0)->out;
    int32_t *arg = (int32_t *)n->aux; /* input offset within the channel plane */
    const long planes = (long)batch * q->c;
    const bool fast = a->kernel == 2 && a->stride == 2 && a->pad == 0;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * q->h * q->w;
        float *yp = n->out + (size_t)p * q->oh * q->ow;
        int32_t *ap = arg + (size_t)p * q->oh * q->ow;
        if (fast) {
            max_plane_2x2(xp, yp, ap, q);
            continue;
        }
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float best = -FLT_MAX;
                int32_t where = -1;
                for (int i = 0; i < a->kernel; i++) {
                    int iy = oy * a->stride - a->pad + i;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int j = 0; j < a->kernel; j++) {
                        int ix = ox * a->stride - a->pad + j;
                        if (ix < 0 || ix >= q->w) continue;
                        float v = xp[iy * q->w + ix];
                        if (where < 0 || v > best) best = v, where = iy * q->w + ix;
                    }
                }
                yp[oy * q->ow + ox] = best;
                ap[oy * q->ow + ox] = where;
            }
    }
}

static void max_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const int32_t *arg = (const int32_t *)n->aux;
    const long planes = (long)batch * q->c;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        float *dxp = in->dout + (size_t)p * q->h * q->w;
        const float *dyp = n->dout + (size_t)p * q->oh * q->ow;
        const int32_t *ap = arg + (size_t)p * q->oh * q->ow;
        for (int i = 0; i < q->oh * q->ow; i++) dxp[ap[i]] += dyp[i];
    }
}

static void avg_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    const float *x = rg_in(g, n, 0)->out;
    const float scale = 1.0f / (float)(a->kernel * a->kernel);
    const long planes = (long)batch * q->c;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * q->h * q->w;
        float *yp = n->out + (size_t)p * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float s = 0;
                for (int i = 0; i < a->kernel; i++) {
                    int iy = oy * a->stride - a->pad + i;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int j = 0; j < a->kernel; j++) {
                        int ix = ox * a->stride - a->pad + j;
                        if (ix >= 0 && ix < q->w) s += xp[iy * q->w + ix];
                    }
                }
                yp[oy * q->ow + ox] = s * scale;
            }
    }
}

static void avg_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const pool_attr *a = n->attr;
    const rg_conv_geom *q = &a->geom;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const float scale = 1.0f / (float)(a->kernel * a->kernel);
    const long planes = (long)batch * q->c;
#pragma omp parallel for schedule(static) if (planes * q->oh * q->ow > RG_PARALLEL_MIN)
    for (long p = 0; p < planes; p++) {
        float *dxp = in->dout + (size_t)p * q->h * q->w;
        const float *dyp = n->dout + (size_t)p * q->oh * q->ow;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                const float d = dyp[oy * q->ow + ox] * scale;
                for (int i = 0; i < a->kernel; i++) {
                    int iy = oy * a->stride - a->pad + i;
                    if (iy < 0 || iy >= q->h) continue;
                    for (int j = 0; j < a->kernel; j++) {
                        int ix = ox * a->stride - a->pad + j;
                        if (ix >= 0 && ix < q->w) dxp[iy * q->w + ix] += d;
                    }
                }
            }
    }
}

const rg_op_def rg_op_max_pool_def = {
    .name = "max_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer, .forward = max_forward, .backward = max_backward,
};
const rg_op_def rg_op_avg_pool_def = {
    .name = "avg_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer, .forward = avg_forward, .backward = avg_backward,
};

static rg_node pool(rg_graph *g, rg_op_kind op, rg_node x, int kernel, int stride, int pad) {
    if (kernel < 1 || stride < 1 || pad < 0)
        return rg_graph_error(g, RG_ERR_ARG, "pooling: kernel %d and stride %d must be positive, "
                              "pad %d not negative", kernel, stride, pad);
    pool_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->kernel = kernel, a->stride = stride, a->pad = pad;
    return rg_graph_add_node(g, op, &x, 1, a);
}

rg_node rg_max_pool2d(rg_graph *g, rg_node x, int kernel, int stride, int pad) {
    return pool(g, RG_OP_MAX_POOL, x, kernel, stride, pad);
}
rg_node rg_avg_pool2d(rg_graph *g, rg_node x, int kernel, int stride, int pad) {
    return pool(g, RG_OP_AVG_POOL, x, kernel, stride, pad);
}

/* ---- global average pooling */

static rg_status gap_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    if (x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "global average pooling needs (channels, height, width)");
    n->ndim = 1;
    n->shape[0] = x->shape[0];
    return RG_OK;
}

static void gap_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *x = rg_in(g, n, 0);
    const size_t hw = x->size / n->size;
    const long planes = (long)batch * (long)n->size;
    for (long p = 0; p < planes; p++) {
        const float *xp = x->out + (size_t)p * hw;
        float s = 0;
        for (size_t i = 0; i < hw; i++) s += xp[i];
        n->out[p] = s / (float)hw;
    }
}

static void gap_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *x = rg_in(g, n, 0);
    if (!x->needs_grad) return;
    const size_t hw = x->size / n->size;
    const long planes = (long)batch * (long)n->size;
    for (long p = 0; p < planes; p++) {
        float *dxp = x->dout + (size_t)p * hw;
        const float d = n->dout[p] / (float)hw;
        for (size_t i = 0; i < hw; i++) dxp[i] += d;
    }
}

const rg_op_def rg_op_global_avg_pool_def = {
    .name = "global_avg_pool", .min_inputs = 1, .max_inputs = 1,
    .infer = gap_infer, .forward = gap_forward, .backward = gap_backward,
};

rg_node rg_global_avg_pool(rg_graph *g, rg_node x) {
    return rg_graph_add_node(g, RG_OP_GLOBAL_AVG_POOL, &x, 1, NULL);
}
