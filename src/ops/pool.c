/*
 * pool.c — pooling: max and average over k x k windows, and global average pooling.
 *
 *   max:  y = max over the window (padding cells are -inf, or zeros where a zero padding
 *         before it was folded in); backward routes dy to the first maximum, whose
 *         position is kept in aux (-1: a padding cell, whose gradient goes nowhere).
 *   avg:  y = sum over the window / (k*k) (padding cells count as zeros, PyTorch's
 *         count_include_pad=True; with no padding, as Keras); dx += dy / (k*k) per tap.
 *   global average: y_c = mean over (H, W); dx += dy_c / (H*W).
 */
#include "ops.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* The argmax a max pool keeps for backward, one int a output (none for the 2x2 and 1x1
 * windows). */
static void keep_argmax(rg_node_impl *n) {
    const pool_attr *a = n->attr;
    n->aux_per_sample = n->op == RG_OP_MAX_POOL && !rg_pool_is_2x2(a) && !rg_pool_is_1x1(a)
                            ? (size_t)a->geom.c * a->geom.oh * a->geom.ow : 0;
}

static rg_status pool_infer(rg_graph *g, rg_node_impl *n) {
    pool_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (a->pad * 2 > a->kernel)
        return rg_fail(RG_ERR_ARG, "pooling pad %d is more than half the window %d", a->pad, a->kernel);
    rg_status s = rg_window_geometry(x, a->kernel, a->stride, 1, RG_PAD_EXPLICIT, a->pad, &a->geom);
    if (s) return s;
    n->ndim = 3;
    n->shape[0] = a->geom.c, n->shape[1] = a->geom.oh, n->shape[2] = a->geom.ow;
    keep_argmax(n);
    return RG_OK;
}

/* A zero padding of p on every side before the pool, p at most half the window, read as
 * the pool's own padding: the same windows over the unpadded input, without the padded
 * copy.  Average pooling counts padding cells as zeros already; max pooling takes them as
 * zeros from now on (a window's first maximum may be one: its gradient is the padding's,
 * which the padding's backward dropped). */
static bool pool_absorb_padding(rg_node_impl *n, const int pad[4]) {
    pool_attr *a = n->attr;
    const int p = pad[0];
    if (a->pad != 0 || p <= 0 || pad[1] != p || pad[2] != p || pad[3] != p || 2 * p > a->kernel) return false;
    a->pad = p;
    a->zero_padded = n->op == RG_OP_MAX_POOL;
    a->geom.h -= 2 * p, a->geom.w -= 2 * p;
    a->geom.pad_t = a->geom.pad_l = p;
    keep_argmax(n); /* a 2x2 window that needed none does now */
    return true;
}

const rg_op_def rg_op_max_pool_def = {
    .name = "max_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer,
    .absorb_padding = pool_absorb_padding,
    .backward_reads_output = true,
    .backward_reads_inputs = true,
};
const rg_op_def rg_op_avg_pool_def = {
    .name = "avg_pool2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pool_infer,
    .absorb_padding = pool_absorb_padding,
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
