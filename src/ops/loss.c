/*
 * loss.c — losses: softmax cross-entropy from logits and mean squared error.  Each gives a
 * scalar, the mean over the batch, like PyTorch's default reduction.
 *
 * Cross-entropy with label smoothing s over K classes (torch.nn.CrossEntropyLoss):
 *   q = (1-s) onehot(label) + s/K,  p = softmax(z),  L = -(1/B) sum_b sum_k q log p
 *   dz = (p - q) / B
 * MSE over B samples of D values:  L = (1/(B D)) sum (y - t)^2,  dy = 2 (y - t) / (B D)
 */
#include "../internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct xent_attr {
    float smoothing;
} xent_attr;

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

static void xent_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const xent_attr *a = n->attr;
    const rg_node_impl *zn = rg_in(g, n, 0);
    const int k = zn->shape[0];
    const float s = a->smoothing;
    double total = 0;
    for (int b = 0; b < batch; b++) {
        const float *z = zn->out + (size_t)b * k;
        float *p = n->aux + (size_t)b * k;
        float m = z[0];
        for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
        double sum = 0;
        for (int j = 0; j < k; j++) sum += (p[j] = expf(z[j] - m));
        const double lse = m + log(sum); /* log sum exp z */
        double sum_z = 0;
        for (int j = 0; j < k; j++) {
            p[j] = (float)(p[j] / sum);
            sum_z += z[j];
        }
        const int y = g->labels[b];
        /* -sum_k q_k log p_k = (1-s)(lse - z_y) + (s/K) sum_k (lse - z_k) */
        total += (1.0 - s) * (lse - z[y]) + (s / k) * (k * lse - sum_z);
    }
    n->out[0] = (float)(total / batch);
}

static void xent_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const xent_attr *a = n->attr;
    rg_node_impl *zn = rg_in(g, n, 0);
    if (!zn->needs_grad) return;
    const int k = zn->shape[0];
    const float scale = n->dout[0] / (float)batch, uniform = a->smoothing / (float)k;
    for (int b = 0; b < batch; b++) {
        const float *p = n->aux + (size_t)b * k;
        float *dz = zn->dout + (size_t)b * k;
        const int y = g->labels[b];
        for (int j = 0; j < k; j++)
            dz[j] += scale * (p[j] - uniform - (j == y ? 1.0f - a->smoothing : 0.0f));
    }
}

const rg_op_def rg_op_softmax_xent_def = {
    .name = "softmax_cross_entropy", .min_inputs = 1, .max_inputs = 1,
    .infer = xent_infer, .forward = xent_forward, .backward = xent_backward,
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

/* The target value of element j of sample b. */
static inline float mse_target(rg_graph *g, const rg_node_impl *n, size_t d, int b, size_t j) {
    if (n->n_inputs == 2) return rg_in(g, n, 1)->out[(size_t)b * d + j];
    return (int)j == g->labels[b] ? 1.0f : 0.0f;
}

static void mse_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
    (void)train;
    const rg_node_impl *yn = rg_in(g, n, 0);
    const size_t d = yn->size;
    double total = 0;
    for (int b = 0; b < batch; b++)
        for (size_t j = 0; j < d; j++) {
            double e = yn->out[(size_t)b * d + j] - mse_target(g, n, d, b, j);
            total += e * e;
        }
    n->out[0] = (float)(total / ((double)batch * d));
}

static void mse_backward(rg_graph *g, rg_node_impl *n, int batch) {
    rg_node_impl *yn = rg_in(g, n, 0);
    rg_node_impl *tn = n->n_inputs == 2 ? rg_in(g, n, 1) : NULL;
    const size_t d = yn->size;
    const float scale = 2.0f * n->dout[0] / (float)((double)batch * d);
    for (int b = 0; b < batch; b++)
        for (size_t j = 0; j < d; j++) {
            size_t i = (size_t)b * d + j;
            float e = scale * (yn->out[i] - mse_target(g, n, d, b, j));
            if (yn->needs_grad) yn->dout[i] += e;
            if (tn && tn->needs_grad) tn->dout[i] -= e;
        }
}

const rg_op_def rg_op_mse_def = {
    .name = "mse", .min_inputs = 1, .max_inputs = 2,
    .infer = mse_infer, .forward = mse_forward, .backward = mse_backward,
    .backward_reads_inputs = true,
};

rg_node rg_mse(rg_graph *g, rg_node pred, rg_node target) {
    if (target == RG_NONE) return rg_graph_add_node(g, RG_OP_MSE, &pred, 1, NULL);
    return rg_graph_add_node(g, RG_OP_MSE, (int[]){pred, target}, 2, NULL);
}
