/*
 * op_dropout.c — inverted dropout on the CPU: masks from a counter-based hash, so they do
 * not depend on the thread count.
 */
#include "../../ops/ops.h"
#include "cpu.h"

#include <string.h>

void rg_cpu_dropout_forward(rg_graph *g, rg_node_impl *n, int batch, bool train) {
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

void rg_cpu_dropout_backward(rg_graph *g, rg_node_impl *n, int batch) {
    const dropout_attr *a = n->attr;
    rg_node_impl *in = rg_in(g, n, 0);
    if (!in->needs_grad) return;
    const long count = (long)batch * (long)n->size;
    const float *dy = n->dout, *mask = n->aux;
    float *dx = in->dout;
#pragma omp parallel for schedule(static) if (count > RG_PARALLEL_MIN)
    for (long i = 0; i < count; i++) dx[i] += a->last_train ? dy[i] * mask[i] : dy[i];
}

void rg_cpu_dropout_tangent(rg_graph *g, rg_node_impl *n, int batch) {
    const dropout_attr *a = n->attr;
    const long count = (long)batch * (long)n->size;
    const float *t_in = rg_tangent_in(g, n, 0), *mask = n->aux;
    float *t = rg_tangent_out(g, n);
    for (long i = 0; i < count; i++) t[i] = a->last_train ? t_in[i] * mask[i] : t_in[i];
}
