/*
 * dropout.c — inverted dropout.
 *
 * Training: y = x * m, m = 1/(1-rate) with probability 1-rate, else 0; the mask is kept for
 * backward (dx += dy * m).  Evaluation: y = x.  Masks come from a counter-based hash of
 * (graph seed, node, forward count, element), so they do not depend on the thread count.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

static rg_status dropout_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    n->ndim = x->ndim;
    memcpy(n->shape, x->shape, sizeof n->shape);
    n->aux_per_sample = x->size; /* the mask */
    return RG_OK;
}

const rg_op_def rg_op_dropout_def = {
    .name = "dropout", .min_inputs = 1, .max_inputs = 1,
    .infer = dropout_infer,
};

rg_node rg_dropout(rg_graph *g, rg_node x, float rate) {
    if (!(rate >= 0.0f && rate < 1.0f))
        return rg_graph_error(g, RG_ERR_ARG, "dropout: rate %g is outside [0, 1)", (double)rate);
    dropout_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->rate = rate;
    return rg_graph_add_node(g, RG_OP_DROPOUT, &x, 1, a);
}
