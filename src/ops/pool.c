/*
 * pool.c — pooling: max and average over k x k windows, and global average pooling.
 *
 *   max:  y = max over the window (padding cells are -inf); backward routes dy to the
 *         first maximum, whose position is kept in aux.
 *   avg:  y = sum over the window / (k*k) (padding cells count as zeros, PyTorch's
 *         count_include_pad=True; with no padding, as Keras); dx += dy / (k*k) per tap.
 *   global average: y_c = mean over (H, W); dx += dy_c / (H*W).
 */
#include "ops.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

static rg_status pool_infer(rg_graph *g, rg_node_impl *n) {
    pool_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (a->pad * 2 > a->kernel)
        return rg_fail(RG_ERR_ARG, "pooling pad %d is more than half the window %d", a->pad, a->kernel);
    rg_status s = rg_window_geometry(x, a->kernel, a->stride, 1, RG_PAD_EXPLICIT, a->pad, &a->geom);
    if (s) return s;
    n->ndim = 3;
    n->shape[0] = a->geom.c, n->shape[1] = a->geom.oh, n->shape[2] = a->geom.ow;
    if (n->op == RG_OP_MAX_POOL && !rg_pool_is_2x2(a)) /* the argmax, for backward */
        n->aux_per_sample = (size_t)a->geom.c * a->geom.oh * a->geom.ow;
    return RG_OK;
}

const rg_op_def rg_op_max_pool_def = {
    .name = "max_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer,
    .backward_reads_output = true,
    .backward_reads_inputs = true,
};
const rg_op_def rg_op_avg_pool_def = {
    .name = "avg_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer,
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

const rg_op_def rg_op_global_avg_pool_def = {
    .name = "global_avg_pool", .min_inputs = 1, .max_inputs = 1,
    .infer = gap_infer,
};

rg_node rg_global_avg_pool(rg_graph *g, rg_node x) {
    return rg_graph_add_node(g, RG_OP_GLOBAL_AVG_POOL, &x, 1, NULL);
}
