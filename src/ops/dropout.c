/*
 * dropout.c — inverted dropout.
 *
 * Training: y = x * m, m = 1/(1-rate) with probability 1-rate, else 0; the mask is kept for
 * backward (dx += dy * m).  Evaluation: y = x.  Masks come from a counter-based hash of
 * (graph seed, node, forward count, element), so they do not depend on the thread count.
 */
#include "../internal.h"
#include "../kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

typedef struct dropout_attr {
    float rate;
    bool last_train; /* mode of the last forward: backward follows it */
} dropout_attr;

static rg_status dropout_infer(rg_graph *g, rg_node_impl *n) {
    const rg_node_impl *x = rg_in(g, n, 0);
    n->ndim = x->ndim;
    memcpy(n->shape, x->shape, sizeof n->shape);
    n->aux_per_sample = x->size; /* the mask */
    return RG_OK;
}

static void dropout_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    dropout_attr *a = n->attr;
    const float *x = rg_in(g, n, 0)->out;
    float *y = n->out, *mask = n->aux;
    const long count = (long)batch * (long)n->size;
    a->last_train = train && a->rate > 0;
    if (!a->last_train) {
        memcpy(y, x, (size_t)count * sizeof *y);
        return;
    }
    const float keep = 1.0f / (1.0f - a->rate);
    const uint64_t key = g->seed ^ ((uint64_t)(n - g->nodes) << 48) ^ (g->dropout_calls << 20);
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) {
        mask[i] = rg_hash_uniform(key, (uint64_t)i) >= a->rate ? keep : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

static void dropout_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const dropout_attr *a = n->attr;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const long count = (long)batch * (long)n->size;
    const float *dy = n->dout, *mask = n->aux;
    float *dx = in->dout;
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) dx[i] += a->last_train ? dy[i] * mask[i] : dy[i];
}

const rg_op_def rg_op_dropout_def = {
    .name = "dropout", .min_inputs = 1, .max_inputs = 1,
    .infer = dropout_infer, .forward = dropout_forward, .backward = dropout_backward,
};

rg_node rg_dropout(rg_graph *g, rg_node x, float rate) {
    if (!(rate >= 0.0f && rate < 1.0f))
        return rg_graph_error(g, RG_ERR_ARG, "dropout: rate %g is outside [0, 1)", (double)rate);
    dropout_attr *a = calloc(1, sizeof *a);
    if (!a) return rg_graph_error(g, RG_ERR_MEMORY, "out of memory");
    a->rate = rate;
    return rg_graph_add_node(g, RG_OP_DROPOUT, &x, 1, a);
}
