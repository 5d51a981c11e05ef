/*
 * curvature.c — second-order information through the graph: forward-mode tangents (the
 * R-operator, Pearlmutter 1994), Gauss-Newton and Hessian vector products, the curvature
 * along a direction, and a block's top eigenvalue by power iteration.
 *
 * A tangent pass follows a forward pass: node by node, each op's tangent kernel writes the
 * derivative of its output along the parameters' direction v (the inputs do not move),
 * reading only what its backward reads, so it works on the planned, in-place graph the
 * trainer runs.  Tangents live in their own buffers, each freed after its last reader.
 *
 * - Gauss-Newton, G v = J^T H_z J v, exact: forward, the tangent J v of the loss's input z
 *   (the logits), times the loss's Hessian in z (softmax cross-entropy: (diag p - p p^T)/B;
 *   mean squared error: 2/(B d)), then one backward from z.  G is positive semi-definite.
 * - Hessian, H v = (g(w + e v) - g(w - e v)) / 2e: central differences of exact gradients,
 *   e = u^(1/3) (1 + |w|) / |v| with u float's epsilon, which balances truncation (e^2)
 *   against rounding (u / e); relative error ~1e-4 (docs/curvature.md).
 * - Along a direction: one forward and one tangent pass give both the loss's slope g.v
 *   (the loss's own tangent) and v^T G v (from the logits' tangent), with no backward.
 * Every call leaves the parameters, the running statistics and the dropout stream as it
 * found them (a side pass, its hook muted: the monitor sees training passes only); the
 * gradient buffer and the nodes' outputs are overwritten.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

rg_status rg_side_pass_begin(rg_graph *g, rg_side_pass *p, bool mute_hook) {
    p->dropout_calls = g->dropout_calls, p->hook = g->hook;
    if (mute_hook) g->hook = NULL;
    p->state = NULL;
    if (g->state_floats && !(p->state = malloc(g->state_floats * sizeof(float))))
        return rg_fail(RG_ERR_MEMORY, "out of memory for a side pass");
    if (p->state) memcpy(p->state, g->state_buf, g->state_floats * sizeof(float));
    return RG_OK;
}

void rg_side_pass_end(rg_graph *g, rg_side_pass *p) {
    if (p->state) memcpy(g->state_buf, p->state, g->state_floats * sizeof(float));
    free(p->state);
    g->dropout_calls = p->dropout_calls, g->hook = p->hook;
}

/* A forward pass with the dropout masks of the saved counter's next pass. */
static rg_status forward(rg_graph *g, const rg_side_pass *s, int batch, int train) {
    g->dropout_calls = s->dropout_calls;
    return rg_graph_forward(g, batch, train);
}

static rg_status check_args(const rg_graph *g, rg_node node, int batch, const float *v) {
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the graph before asking for curvature");
    if (node < 0 || node >= g->n_nodes) return rg_fail(RG_ERR_ARG, "curvature: bad node %d", node);
    if (batch < 1 || batch > g->max_batch)
        return rg_fail(RG_ERR_ARG, "batch %d is outside 1..%d (the compiled size)", batch, g->max_batch);
    if (!v) return rg_fail(RG_ERR_ARG, "curvature: the direction is NULL");
    return RG_OK;
}

/* The tangent pass after a forward of `batch` samples, up to node `upto` (its ancestors
 * only); the tangent of `upto` is copied to out, and that of `also` (an ancestor, or
 * RG_NONE) to also_out. */
static rg_status tangent_pass(rg_graph *g, int batch, rg_node upto, const float *v, float *out,
                              rg_node also, float *also_out) {
    const int n = g->n_nodes;
    int *last = malloc((size_t)n * sizeof *last);
    g->tangent = calloc((size_t)n, sizeof *g->tangent);
    if (!last || !g->tangent) {
        free(last), free(g->tangent), g->tangent = NULL;
        return rg_fail(RG_ERR_MEMORY, "out of memory for a tangent pass");
    }
    memset(g->live, 0, (size_t)n * sizeof *g->live);
    g->live[upto] = true;
    for (int i = upto; i >= 0; i--)
        if (g->live[i])
            for (int k = 0; k < g->nodes[i].n_inputs; k++) g->live[g->nodes[i].inputs[k]] = true;
    for (int i = 0; i < n; i++) last[i] = i;
    for (int i = 0; i <= upto; i++)
        for (int k = 0; g->live[i] && k < g->nodes[i].n_inputs; k++) last[g->nodes[i].inputs[k]] = i;
    g->tangent_params = v;
    rg_status s = RG_OK;
    for (int i = 0; i <= upto && !s; i++) {
        rg_node_impl *node = &g->nodes[i];
        if (!g->live[i] || node->bypassed) continue;
        const size_t floats = (node->batched ? (size_t)batch : 1) * node->size;
        if (!(g->tangent[i] = malloc(floats * sizeof(float)))) {
            s = rg_fail(RG_ERR_MEMORY, "out of memory for the tangent of %s", node->name);
            break;
        }
        g->backend->ops[node->op].tangent(g, node, batch);
        for (int k = 0; k < node->n_inputs; k++) { /* inputs read for the last time */
            const int in = node->inputs[k];
            if (last[in] == i && in != upto && in != also) free(g->tangent[in]), g->tangent[in] = NULL;
        }
    }
    const rg_node want[2] = {upto, also};
    float *to[2] = {out, also_out};
    for (int k = 0; k < 2 && !s; k++) {
        if (want[k] == RG_NONE || !g->tangent[want[k]]) continue;
        const rg_node_impl *u = &g->nodes[want[k]];
        memcpy(to[k], g->tangent[want[k]], (u->batched ? (size_t)batch : 1) * u->size * sizeof(float));
    }
    for (int i = 0; i < n; i++) free(g->tangent[i]);
    free(g->tangent), free(last);
    g->tangent = NULL, g->tangent_params = NULL;
    return s;
}

rg_status rg_graph_tangent_from(rg_graph *g, int batch, int train, const float *v,
                                const float *const *input_dirs, rg_node node, float *out) {
    rg_status st = check_args(g, node, batch, v);
    if (st) return st;
    if (!out) return rg_fail(RG_ERR_ARG, "rg_graph_tangent: out is NULL");
    rg_side_pass s;
    if ((st = rg_side_pass_begin(g, &s, true))) return st;
    g->tangent_inputs = input_dirs;
    if (!(st = forward(g, &s, batch, train))) st = tangent_pass(g, batch, node, v, out, RG_NONE, NULL);
    g->tangent_inputs = NULL;
    rg_side_pass_end(g, &s);
    return st;
}

rg_status rg_graph_tangent(rg_graph *g, int batch, int train, const float *v, rg_node node,
                           float *out) {
    return rg_graph_tangent_from(g, batch, train, v, NULL, node, out);
}

/* The loss node's input (the logits, or the prediction of a mean squared error). */
static rg_status loss_input(const rg_graph *g, rg_node loss, rg_node *z) {
    const rg_op_kind op = g->nodes[loss].op;
    if (op != RG_OP_SOFTMAX_XENT && op != RG_OP_MSE)
        return rg_fail(RG_ERR_ARG, "curvature needs a softmax cross-entropy or mean squared "
                                   "error loss; '%s' is a %s", g->nodes[loss].name, rg_op_table[op]->name);
    *z = g->nodes[loss].inputs[0];
    return RG_OK;
}

/* t <- H_z t, the loss's Hessian in its input z for the batch (after a forward); returns
 * t . H_z t. */
static double loss_hessian(const rg_graph *g, rg_node loss, int batch, float *t) {
    const rg_node_impl *l = &g->nodes[loss];
    const size_t k = g->nodes[l->inputs[0]].size;
    double quad = 0;
    for (int b = 0; b < batch; b++) {
        float *tb = t + (size_t)b * k;
        if (l->op == RG_OP_MSE) {
            const double c = 2.0 / ((double)batch * k);
            for (size_t j = 0; j < k; j++) quad += c * tb[j] * tb[j], tb[j] = (float)(c * tb[j]);
            continue;
        }
        const float *p = l->aux + (size_t)b * k;
        double dot = 0;
        for (size_t j = 0; j < k; j++) dot += (double)p[j] * tb[j];
        for (size_t j = 0; j < k; j++) {
            const double h = p[j] * (tb[j] - dot) / batch;
            quad += h * tb[j];
            tb[j] = (float)h;
        }
    }
    return quad;
}

static rg_status gauss_newton(rg_graph *g, const rg_side_pass *s, rg_node loss, int batch, int train,
                              const float *v, float *out) {
    rg_node z = RG_NONE;
    rg_status st = loss_input(g, loss, &z);
    if (st) return st;
    float *t = malloc((size_t)batch * g->nodes[z].size * sizeof *t);
    if (!t) return rg_fail(RG_ERR_MEMORY, "out of memory for a Gauss-Newton product");
    if (!(st = forward(g, s, batch, train)) && !(st = tangent_pass(g, batch, z, v, t, RG_NONE, NULL))) {
        loss_hessian(g, loss, batch, t);
        if (!(st = rg_graph_backward_from(g, z, t))) memcpy(out, g->grad_buf, g->param_floats * sizeof(float));
    }
    free(t);
    return st;
}

/* ||x||, summed in index order in double (the backend's pass) */
static double norm(const rg_graph *g, const float *x, size_t n) { return sqrt(g->backend->squares_in_order(x, n)); }

static rg_status hessian(rg_graph *g, const rg_side_pass *s, rg_node loss, int batch, int train,
                         const float *v, float *out) {
    const size_t n = g->param_floats;
    const double vn = norm(g, v, n);
    if (vn == 0) {
        memset(out, 0, n * sizeof *out);
        return RG_OK;
    }
    float *w0 = malloc(n * sizeof *w0);
    if (!w0) return rg_fail(RG_ERR_MEMORY, "out of memory for a Hessian product");
    memcpy(w0, g->param_buf, n * sizeof *w0);
    const double eps = cbrt(FLT_EPSILON) * (1 + norm(g, w0, n)) / vn;
    rg_status st = RG_OK;
    for (int side = 1; side >= -1 && !st; side -= 2) {
        for (size_t i = 0; i < n; i++) g->param_buf[i] = (float)(w0[i] + side * eps * v[i]);
        if ((st = forward(g, s, batch, train)) || (st = rg_graph_backward(g, loss))) break;
        for (size_t i = 0; i < n; i++)
            out[i] = side > 0 ? g->grad_buf[i] : (float)((out[i] - g->grad_buf[i]) / (2 * eps));
    }
    memcpy(g->param_buf, w0, n * sizeof *w0);
    free(w0);
    return st;
}

rg_status rg_graph_curvature_product(rg_graph *g, rg_node loss, int batch, int train,
                                     rg_curvature kind, const float *v, float *out) {
    rg_status st = check_args(g, loss, batch, v);
    if (st) return st;
    if (!out) return rg_fail(RG_ERR_ARG, "rg_graph_curvature_product: out is NULL");
    rg_side_pass s;
    if ((st = rg_side_pass_begin(g, &s, true))) return st;
    st = kind == RG_CURVATURE_HESSIAN ? hessian(g, &s, loss, batch, train, v, out)
                                      : gauss_newton(g, &s, loss, batch, train, v, out);
    rg_side_pass_end(g, &s);
    return st;
}

rg_status rg_graph_curvature_along(rg_graph *g, rg_node loss, int batch, int train,
                                   const float *v, double *slope, double *curvature) {
    rg_status st = check_args(g, loss, batch, v);
    rg_node z = RG_NONE;
    if (st || (st = loss_input(g, loss, &z))) return st;
    float *t = malloc((size_t)batch * g->nodes[z].size * sizeof *t);
    if (!t) return rg_fail(RG_ERR_MEMORY, "out of memory for the curvature along a direction");
    rg_side_pass s;
    if (!(st = rg_side_pass_begin(g, &s, true))) {
        float dl; /* one pass to the loss: its tangent is the slope; the logits' give v^T G v */
        if (!(st = forward(g, &s, batch, train)) && !(st = tangent_pass(g, batch, loss, v, &dl, z, t))) {
            if (slope) *slope = dl;
            if (curvature) *curvature = loss_hessian(g, loss, batch, t);
        }
        rg_side_pass_end(g, &s);
    }
    free(t);
    return st;
}

rg_status rg_graph_top_curvature(rg_graph *g, rg_node loss, int batch, int train,
                                 rg_curvature kind, rg_node layer, int max_iters, double tolerance,
                                 double *lambda) {
    rg_status st = check_args(g, loss, batch, g ? g->param_buf : NULL);
    if (st) return st;
    if (layer != RG_NONE && (layer < 0 || layer >= g->n_nodes))
        return rg_fail(RG_ERR_ARG, "curvature: bad layer %d", layer);
    const size_t n = g->param_floats;
    float *v = calloc(n ? n : 1, sizeof *v), *hv = malloc((n ? n : 1) * sizeof *hv);
    bool *in_block = calloc(n ? n : 1, sizeof *in_block);
    if (!v || !hv || !in_block) {
        free(v), free(hv), free(in_block);
        return rg_fail(RG_ERR_MEMORY, "out of memory for power iteration");
    }
    /* the block: the layer's trainable parameters (or all of them), a fixed start */
    rg_rng rng;
    rg_rng_seed(&rng, 0x5eed);
    for (int p = 0; p < g->n_params; p++) {
        const rg_param_impl *pi = &g->params[p];
        if (pi->state || !pi->trainable || (layer != RG_NONE && pi->node != layer)) continue;
        for (size_t i = 0; i < pi->size; i++) in_block[pi->offset + i] = true, v[pi->offset + i] = rg_rng_normal(&rng);
    }
    double vn = norm(g, v, n), est = 0;
    if (vn == 0) st = rg_fail(RG_ERR_ARG, "curvature: '%s' has no trainable parameters",
                              layer == RG_NONE ? "the graph" : g->nodes[layer].name);
    for (int it = 0; !st && it < max_iters; it++) {
        for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / vn);
        if ((st = rg_graph_curvature_product(g, loss, batch, train, kind, v, hv))) break;
        double rq = 0;
        for (size_t i = 0; i < n; i++) {
            if (!in_block[i]) hv[i] = 0;
            rq += (double)v[i] * hv[i];
        }
        const double prev = est;
        est = rq;
        vn = norm(g, hv, n);
        if (vn == 0 || !isfinite(vn)) break;
        memcpy(v, hv, n * sizeof *v);
        if (it > 0 && fabs(est - prev) <= tolerance * fabs(est)) break;
    }
    if (!st) *lambda = est;
    free(v), free(hv), free(in_block);
    return st;
}
