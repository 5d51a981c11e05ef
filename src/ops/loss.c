/*
 * loss.c — losses: softmax cross-entropy from logits and mean squared error.  Each gives a
 * scalar, the mean over the batch, like PyTorch's default reduction.
 *
 * Cross-entropy with label smoothing s over K classes (torch.nn.CrossEntropyLoss):
 *   q = (1-s) onehot(label) + s/K,  p = softmax(z),  L = -(1/B) sum_b sum_k q log p
 *   dz = (p - q) / B
 * MSE over B samples of D values:  L = (1/(B D)) sum (y - t)^2,  dy = 2 (y - t) / (B D)
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static rg_status xent_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *z = rg_in(g, n, 0);
    if (z->ndim != 1 || z->shape[0] < 2)
        return rg_fail(RG_ERR_SHAPE, "cross-entropy needs logits of shape (classes) with at "
                                     "least 2 classes");
    n->ndim = 0;
    n->batched = false;
    n->aux_per_sample = (size_t)z->shape[0]; /* softmax probabilities, kept for backward */
    return RG_OK;
}

const rg_op_def rg_op_softmax_xent_def = {
    .name = "softmax_cross_entropy", .min_inputs = 1, .max_inputs = 1,
    .infer = xent_infer,
};

rg_node rg_softmax_cross_entropy(rg_graph *g, rg_node logits, float smoothing) {
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return rg_graph_error(g, RG_ERR_ARG, "label smoothing %g is outside [0, 1)",
                              (double)smoothing);
    xent_attr *a = malloc(sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->smoothing = smoothing;
    return rg_graph_add_node(g, RG_OP_SOFTMAX_XENT, &logits, 1, a);
}

/* ---- mean squared error */

static rg_status mse_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *y = rg_in(g, n, 0);
    if (!y->batched) return rg_fail(RG_ERR_SHAPE, "mse needs a batched prediction");
    if (n->n_inputs == 2) {
        const rg_node_impl *t = rg_in(g, n, 1);
        if (t->size != y->size || !t->batched)
            return rg_fail(RG_ERR_SHAPE, "mse: target '%s' has %zu values per sample, the "
                                         "prediction %zu", t->name, t->size, y->size);
    } else if (y->ndim != 1) {
        return rg_fail(RG_ERR_SHAPE, "mse against labels needs a prediction of shape (classes)");
    }
    n->ndim = 0;
    n->batched = false;
    return RG_OK;
}

const rg_op_def rg_op_mse_def = {
    .name = "mse", .min_inputs = 1, .max_inputs = 2,
    .infer = mse_infer,
    .backward_reads_inputs = true,
};

rg_node rg_mse(rg_graph *g, rg_node pred, rg_node target) {
    if (target == RG_NONE) return rg_graph_add_node(g, RG_OP_MSE, &pred, 1, NULL);
    return rg_graph_add_node(g, RG_OP_MSE, (int[]){pred, target}, 2, NULL);
}
