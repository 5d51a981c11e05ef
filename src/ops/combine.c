/*
 * combine.c — ops that join or reshape tensors without arithmetic on their values beyond a
 * sum: add (y = a + b) and flatten (a view of the input as one dimension per sample).
 */
#include "../internal.h"
#include "../kernels/kernels.h"

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

static void add_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const float *a = rg_in(g, n, 0)->out, *b = rg_in(g, n, 1)->out;
    float *y = n->out;
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) y[i] = a[i] + b[i];
}

static void add_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const long count = (n->batched ? (long)batch : 1) * (long)n->size;
    for (int k = 0; k < 2; k++) {
        rg_node_impl *in = rg_in(g, n, k);
        if (!in->needs_grad) continue;
        float *dx = in->dout;
        const float *dy = n->dout;
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dx[i] += dy[i];
    }
}

const rg_op_def rg_op_add_def = {
    .name = "add", .min_inputs = 2, .max_inputs = 2,
    .infer = add_infer, .forward = add_forward, .backward = add_backward,
};

rg_node rg_add(rg_graph *g, rg_node a, rg_node b) {
    return rg_graph_add_node(g, RG_OP_ADD, (int[]){a, b}, 2, NULL);
}

static rg_status flatten_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    if (!x->batched) return rg_fail(RG_ERR_SHAPE, "flatten needs a batched input");
    n->ndim = 1;
    n->shape[0] = (int)x->size;
    return RG_OK;
}

static void flatten_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)g, (void)n, (void)batch, (void)train; /* out aliases the input's buffer */
}

const rg_op_def rg_op_flatten_def = {
    .name = "flatten", .min_inputs = 1, .max_inputs = 1,
    .infer = flatten_infer, .forward = flatten_forward, .backward = NULL,
    .aliases_input = true,
};

rg_node rg_flatten(rg_graph *g, rg_node x) { return rg_graph_add_node(g, RG_OP_FLATTEN, &x, 1, NULL); }
