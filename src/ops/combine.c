/*
 * combine.c — ops that join or reshape tensors without arithmetic on their values beyond a
 * sum: add (y = a + b), weighted sum (y = sum w_k x_k, weights settable between steps, for
 * combining losses), flatten (a view of the input as one dimension per sample), its
 * channels-last form (Keras's Flatten of an NHWC tensor: a copy in (h, w, c) order), zero
 * padding and concat.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

static rg_status add_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *a = rg_in(g, n, 0), *b = rg_in(g, n, 1);
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int)) != 0 ||
        a->batched != b->batched)
        return rg_fail(RG_ERR_SHAPE, "add needs inputs of the same shape: '%s' and '%s' differ",
                       a->name, b->name);
    n->ndim = a->ndim;
    memcpy(n->shape, a->shape, sizeof n->shape);
    n->batched = a->batched;
    return RG_OK;
}

const rg_op_def rg_op_add_def = {
    .name = "add", .min_inputs = 2, .max_inputs = 2,
    .infer = add_infer,
    .fills_fresh_grads = true,
};

rg_node rg_add(rg_graph *g, rg_node a, rg_node b) {
    return rg_graph_add_node(g, RG_OP_ADD, (int[]){a, b}, 2, NULL);
}

static rg_status wsum_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *a = rg_in(g, n, 0);
    for (int k = 1; k < n->n_inputs; k++) {
        const rg_node_impl *b = rg_in(g, n, k);
        if (a->ndim != b->ndim || a->batched != b->batched ||
            memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int)) != 0)
            return rg_fail(RG_ERR_SHAPE, "weighted sum needs inputs of one shape: '%s' and '%s' "
                                         "differ", a->name, b->name);
    }
    n->ndim = a->ndim;
    memcpy(n->shape, a->shape, sizeof n->shape);
    n->batched = a->batched;
    return RG_OK;
}

const rg_op_def rg_op_weighted_sum_def = {
    .name = "weighted_sum", .min_inputs = 1, .max_inputs = RG_MAX_INPUTS,
    .infer = wsum_infer,
};

rg_node rg_weighted_sum(rg_graph *g, int n, const rg_node *xs, const float *weights) {
    if (n < 1 || n > RG_MAX_INPUTS)
        return rg_graph_error(g, RG_ERR_ARG, "weighted sum of %d inputs: 1 to %d", n, RG_MAX_INPUTS);
    wsum_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    for (int k = 0; k < n; k++) a->w[k] = weights ? weights[k] : 1.0f;
    return rg_graph_add_node(g, RG_OP_WEIGHTED_SUM, xs, n, a);
}

rg_status rg_weighted_sum_set(rg_graph *g, rg_node node, int k, float w) {
    if (!g || node < 0 || node >= g->n_nodes || g->nodes[node].op != RG_OP_WEIGHTED_SUM ||
        k < 0 || k >= g->nodes[node].n_inputs)
        return rg_fail(RG_ERR_ARG, "not a weighted sum's input %d", k);
    ((wsum_attr *)g->nodes[node].attr)->w[k] = w;
    return RG_OK;
}

static rg_status flatten_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    if (!x->batched) return rg_fail(RG_ERR_SHAPE, "flatten needs a batched input");
    n->ndim = 1;
    n->shape[0] = (int)x->size;
    return RG_OK;
}

const rg_op_def rg_op_flatten_def = {
    .name = "flatten", .min_inputs = 1, .max_inputs = 1,
    .infer = flatten_infer,
    .aliases_input = true,
};

rg_node rg_flatten(rg_graph *g, rg_node x) { return rg_graph_add_node(g, RG_OP_FLATTEN, &x, 1, NULL); }

static rg_status flatten_hwc_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    if (!x->batched || x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "channels-last flatten needs (channels, height, width), "
                                     "'%s' has %d dimensions", x->name, x->ndim);
    n->ndim = 1;
    n->shape[0] = (int)x->size;
    return RG_OK;
}

const rg_op_def rg_op_flatten_hwc_def = {
    .name = "flatten_hwc", .min_inputs = 1, .max_inputs = 1,
    .infer = flatten_hwc_infer,
};

rg_node rg_flatten_channels_last(rg_graph *g, rg_node x) {
    return rg_graph_add_node(g, RG_OP_FLATTEN_HWC, &x, 1, NULL);
}

/* ---- zero padding:  y (C, H+t+b, W+l+r) = x placed at (t, l), zeros around */

const int *rg_zero_pad_amounts(const rg_node_impl *n) { return &((const pad_attr *)n->attr)->top; }

static rg_status pad_infer(rg_graph *g, rg_node_impl *n) {
    const pad_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (x->ndim != 3)
        return rg_fail(RG_ERR_SHAPE, "zero padding needs (channels, height, width)");
    n->ndim = 3;
    n->shape[0] = x->shape[0];
    n->shape[1] = x->shape[1] + a->top + a->bottom;
    n->shape[2] = x->shape[2] + a->left + a->right;
    return RG_OK;
}

const rg_op_def rg_op_zero_pad_def = {
    .name = "zero_pad2d", .min_inputs = 1, .max_inputs = 1,
    .infer = pad_infer,
};

rg_node rg_zero_pad2d(rg_graph *g, rg_node x, int top, int bottom, int left, int right) {
    if (top < 0 || bottom < 0 || left < 0 || right < 0)
        return rg_graph_error(g, RG_ERR_ARG, "zero padding must not be negative");
    pad_attr *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    *a = (pad_attr){top, bottom, left, right};
    return rg_graph_add_node(g, RG_OP_ZERO_PAD, &x, 1, a);
}

/* ---- concat along channels:  y = [x_1; x_2; ...] per sample */

static rg_status concat_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x0 = rg_in(g, n, 0);
    n->ndim = x0->ndim;
    memcpy(n->shape, x0->shape, sizeof n->shape);
    n->shape[0] = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        const rg_node_impl *x = rg_in(g, n, k);
        if (!x->batched || x->ndim != x0->ndim ||
            memcmp(x->shape + 1, x0->shape + 1, (size_t)(x0->ndim - 1) * sizeof(int)) != 0)
            return rg_fail(RG_ERR_SHAPE, "concat needs inputs that differ only in channels: "
                                         "'%s' and '%s' differ", x0->name, x->name);
        n->shape[0] += x->shape[0];
    }
    return RG_OK;
}

const rg_op_def rg_op_concat_def = {
    .name = "concat", .min_inputs = 1, .max_inputs = RG_MAX_INPUTS,
    .infer = concat_infer,
};

rg_node rg_concat(rg_graph *g, int n, const rg_node *xs) {
    if (n < 1 || n > RG_MAX_INPUTS || !xs)
        return rg_graph_error(g, RG_ERR_ARG, "concat takes 1 to %d inputs, got %d",
                              RG_MAX_INPUTS, n);
    return rg_graph_add_node(g, RG_OP_CONCAT, xs, n, NULL);
}
