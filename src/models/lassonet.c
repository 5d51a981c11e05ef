/*
 * lassonet.c — LassoNet (Lemhadri, Ruan, Abraham and Tibshirani, JMLR 2021): residual
 * feature selection for tabular or flattened inputs.
 *
 * The network is a linear skip from the inputs to the outputs beside an MLP:
 *     logits = skip(x) + mlp(x),   skip.kernel = theta [classes, features]
 * and after each optimizer step the hierarchical proximal operator (the paper's Hier-Prox,
 * its group form for several outputs) is applied to every input feature j: it
 * soft-thresholds theta_j (the skip's column j) by lambda x lr and bounds the first hidden
 * layer's weights from j, |W_1[:, j]|_inf <= M |theta_j|_2.  A feature whose skip weight
 * reaches zero is cut from the whole network.  Raising lambda along a path leaves fewer and
 * fewer features: the ones that matter.
 *
 * Hier-Prox for one feature (v = theta_j in R^K, u = W_1[:, j] in R^H, sorted so that
 * |u_(1)| >= ... >= |u_(H)|): for m = 0..H,
 *     w_m = M / (1 + m M^2) x max(|v| + M sum_{i<=m} |u_(i)| - lambda, 0)
 * take the first m with |u_(m+1)| <= w_m <= |u_(m)| (|u_(0)| = inf, |u_(H+1)| = 0), then
 *     v <- (w_m / M) v / |v|,   u_i <- sign(u_i) min(w_m, |u_i|).
 * The backend takes the step where the weights are (hier_prox: kernels/cpu/prox.c,
 * kernels/cuda/prox.cu), so a device's stay there.
 */
#include "models.h"
#include "../kernels/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* After each update: the hierarchical proximal step with threshold lambda x lr. */
static rg_status lasso_step(rg_model *m, float lr) { return rg_lassonet_prox(m, m->lasso_lambda * lr); }

static const rg_model_hooks lasso_hooks = {.after_update = lasso_step};

rg_status rg_lassonet_set_lambda(rg_model *m, float lambda) {
    if (!(m->lasso_m > 0)) return rg_fail(RG_ERR_ARG, "a lasso strength needs a lassonet model");
    if (!(lambda >= 0) || !isfinite(lambda))
        return rg_fail(RG_ERR_ARG, "lasso strength %g must be 0 or positive", (double)lambda);
    m->lasso_lambda = lambda;
    return RG_OK;
}

rg_status build_lassonet(spec_opts *o, const model_dims *d, rg_model *m) {
    int depth, width;
    float hier;
    rg_act act;
    rg_init init;
    rg_status s;
    if ((s = spec_int(o, "depth", 1, 1, 100, &depth)) ||
        (s = spec_int(o, "width", 32, 1, 1 << 16, &width)) ||
        (s = spec_float(o, "M", 10.0f, 1e-3f, 1e6f, &hier)) || (s = spec_act(o, RG_ACT_RELU, &act)) ||
        (s = spec_init(o, RG_INIT(RG_INIT_HE_NORMAL), &init)) ||
        (s = spec_done(o, "depth, width, M, act, init, classes, input, top")))
        return s;
    if (!d->top) return rg_fail(RG_ERR_ARG, "lassonet needs its classifier (top=1)");
    rg_graph *g = m->graph;
    rg_node x = rg_flatten(g, model_input(m, d)), h = x;
    for (int i = 0; i < depth; i++) h = rg_activation(g, rg_dense(g, h, width, init), act);
    rg_node out = rg_dense(g, h, d->classes, init);
    /* the skip (its bias is one more intercept; only its kernel is selected on) */
    rg_node skip = named(g, rg_dense(g, x, d->classes, RG_INIT(RG_INIT_GLOROT_UNIFORM)), "skip");
    m->logits = named(g, rg_add(g, out, skip), "logits");
    m->lasso_m = hier;
    return rg_model_add_hooks(m, &lasso_hooks);
}

typedef struct lasso_views {
    float *theta;  /* skip.kernel [K, d] */
    float *w1;     /* dense_1.kernel [H, d] */
    int k, d, h;
} lasso_views;

static rg_status views(const rg_model *m, lasso_views *v) {
    rg_graph *g = m->graph;
    memset(v, 0, sizeof *v);
    for (int i = 0; i < g->n_params; i++) {
        rg_param_impl *p = &g->params[i];
        if (strcmp(p->name, "skip.kernel") == 0) {
            v->theta = g->param_buf + p->offset, v->k = p->shape[0], v->d = p->shape[1];
        } else if (strcmp(p->name, "dense_1.kernel") == 0) {
            v->w1 = g->param_buf + p->offset, v->h = p->shape[0];
        }
    }
    if (!v->theta || !v->w1 || !g->compiled)
        return rg_fail(RG_ERR_ARG, "model '%s' is not a compiled lassonet", m->spec);
    return RG_OK;
}

/* theta as host memory, for reading: the buffer itself on the CPU, a copy down from a
 * device (*copy, to free; NULL on the CPU). */
static rg_status theta_on_host(const rg_model *m, lasso_views *v, float **copy) {
    rg_status s = views(m, v);
    *copy = NULL;
    if (s || !rg_graph_on_device(m->graph)) return s;
    *copy = rg_graph_host_copy(m->graph, v->theta, (size_t)v->k * v->d);
    s = *copy ? rg_graph_finish(m->graph) : RG_ERR_MEMORY /* recorded by the copy */;
    if (s) free(*copy), *copy = NULL;
    v->theta = *copy;
    return s;
}

/* The backend's, on the weights where they are (a device's queued behind the update). */
rg_status rg_lassonet_prox(rg_model *m, float lambda) {
    lasso_views v;
    const rg_status s = views(m, &v);
    return s ? s : m->graph->backend->hier_prox(v.theta, v.w1, v.k, v.d, v.h, m->lasso_m, lambda);
}

int rg_lassonet_selected(const rg_model *m, int *features) {
    lasso_views v;
    float *copy;
    if (theta_on_host(m, &v, &copy)) return -1;
    int n = 0;
    for (int j = 0; j < v.d; j++) {
        bool on = false;
        for (int c = 0; c < v.k && !on; c++) on = v.theta[c * v.d + j] != 0.0f;
        if (on && features) features[n] = j;
        n += on;
    }
    free(copy);
    return n;
}
