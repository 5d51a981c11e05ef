/*
 * op_loss.c — softmax cross-entropy and mean squared error on the CPU, and their tangents.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <math.h>

void rg_cpu_softmax_xent_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
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

void rg_cpu_softmax_xent_backward(rg_graph *g, rg_node_impl *n, int batch) {
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

/* The target value of element j of sample b. */
static inline float mse_target(rg_graph *g, const rg_node_impl *n, size_t d, int b, size_t j) {
    if (n->n_inputs == 2) return rg_in(g, n, 1)->out[(size_t)b * d + j];
    return (int)j == g->labels[b] ? 1.0f : 0.0f;
}

void rg_cpu_mse_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
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

void rg_cpu_mse_backward(rg_graph *g, rg_node_impl *n, int batch) {
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

/* The loss's derivative along the logits' tangent: mean over samples of (p - q) . dz */
void rg_cpu_softmax_xent_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const xent_attr *a = n->attr;
    const rg_node_impl *zn = rg_in(g, n, 0);
    const int k = zn->shape[0];
    const float *t_in = rg_tangent_in(g, n, 0), uniform = a->smoothing / (float)k;
    double total = 0;
    for (int b = 0; b < batch; b++) {
        const float *p = n->aux + (size_t)b * k, *dz = t_in + (size_t)b * k;
        for (int j = 0; j < k; j++)
            total += (p[j] - uniform - (j == g->labels[b] ? 1.0f - a->smoothing : 0.0f)) * (double)dz[j];
    }
    rg_tangent_out(g, n)[0] = (float)(total / batch);
}

void rg_cpu_mse_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const rg_node_impl *yn = rg_in(g, n, 0);
    const size_t d = yn->size;
    const float *ty = rg_tangent_in(g, n, 0), *tt = n->n_inputs == 2 ? rg_tangent_in(g, n, 1) : NULL;
    double total = 0;
    for (int b = 0; b < batch; b++)
        for (size_t j = 0; j < d; j++) {
            const size_t i = (size_t)b * d + j;
            total += (yn->out[i] - mse_target(g, n, d, b, j)) * (double)(ty[i] - (tt ? tt[i] : 0));
        }
    rg_tangent_out(g, n)[0] = (float)(2.0 * total / ((double)batch * d));
}
