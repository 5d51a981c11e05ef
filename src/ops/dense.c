/*
 * dense.c — the fully connected layer.
 *
 *   y = x W^T + b      x (B, IN), W (OUT, IN) as torch.nn.Linear, b (OUT), y (B, OUT)
 *   dW += dy^T x,  db += sum_b dy,  dx += dy W
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

static rg_status dense_infer(rg_graph *g, rg_node_impl *n) {
    const dense_attr *a = n->attr;
    const rg_node_impl *x = rg_in(g, n, 0);
    if (x->ndim != 1)
        return rg_fail(RG_ERR_SHAPE, "dense needs a flat input (one dimension per sample), "
                                     "got %d dimensions: add a flatten before it", x->ndim);
    int in = x->shape[0];
    n->flops = 2.0 * in * a->units;
    n->ndim = 1;
    n->shape[0] = a->units;
    rg_init bias_init = a->init.kind == RG_INIT_TORCH ? a->init : RG_INIT(RG_INIT_ZEROS);
    if (rg_param_declare(g, n, "kernel", 2, (int[]){a->units, in}, a->init, in, a->units) < 0 ||
        rg_param_declare(g, n, "bias", 1, (int[]){a->units}, bias_init, in, a->units) < 0)
        return RG_ERR_MEMORY;
    return RG_OK;
}

const rg_op_def rg_op_dense_def = {
    .name = "dense", .min_inputs = 1, .max_inputs = 1,
    .infer = dense_infer,
    .backward_reads_inputs = true, .fills_fresh_grads = true,
};

rg_node rg_dense(rg_graph *g, rg_node x, int units, rg_init init) {
    if (units < 1)
        return rg_graph_error(g, RG_ERR_ARG, "dense: units must be at least 1, got %d", units);
    if (init.kind < 0 || init.kind >= RG_INIT_COUNT)
        return rg_graph_error(g, RG_ERR_ARG, "dense: unknown initialiser %d", init.kind);
    dense_attr *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->units = units;
    a->init = init;
    return rg_graph_add_node(g, RG_OP_DENSE, &x, 1, a);
}
