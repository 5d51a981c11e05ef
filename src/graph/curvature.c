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
 * - Gauss-Newton and Hessian products by the R-backward (the tangent of backward): after
 *   the tangents, a backward from a zero seed at the loss carries the tangent of every
 *   gradient, and each node adds its second-order term once its own backward has run.
 *   For G v = J^T H_z J v only the loss has one: its Hessian in its input z (the logits;
 *   softmax cross-entropy: (diag p - p p^T)/B; mean squared error: 2/(B d)) times z's
 *   tangent.  For H v every op adds its backward tangent too (the backend's, with the
 *   op's gradient held from a first backward): activations' f'' terms, the products'
 *   W_t and x_t terms, batch norm's statistics'.  Both exact; G is positive semi-definite.
 * - Along a direction: one forward and one tangent pass give both the loss's slope g.v
 *   (the loss's own tangent) and v^T G v (from the logits' tangent), with no backward.
 * Every call leaves the parameters, the running statistics and the dropout stream as it
 * found them (a side pass, its hook muted: the monitor sees training passes only); the
 * gradient buffer and the nodes' outputs are overwritten.
 */
#include "../internal.h"
#include "../kernels/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rg_status rg_side_pass_begin(rg_graph *g, rg_side_pass *p, bool mute_hook) {
    p->dropout_calls = g->dropout_calls, p->hook = g->hook;
    if (mute_hook) g->hook = NULL;
    p->state = NULL;
    if (g->state_floats && !(p->state = g->backend->alloc(g->state_floats)))
        return rg_fail(RG_ERR_MEMORY, "out of memory for a side pass");
    if (p->state) g->backend->copy(p->state, g->state_buf, g->state_floats);
    return RG_OK;
}

void rg_side_pass_end(rg_graph *g, rg_side_pass *p) {
    if (p->state) g->backend->copy(g->state_buf, p->state, g->state_floats);
    g->backend->release(p->state);
    g->dropout_calls = p->dropout_calls, g->hook = p->hook;
}

/* A forward pass with the dropout masks of the saved counter's next pass. */
static rg_status forward(rg_graph *g, const rg_side_pass *s, int batch, int train) {
    g->dropout_calls = s->dropout_calls;
    return rg_graph_forward(g, batch, train);
}

/* The arguments checked, and the backend's tangents, for tangents alone (J v, the
 * curvature along v) or a product (G v, H v: a backward carrying second-order terms).  On
 * a device (its buffers, v among them, in device memory) a product needs fp32's or TF32's
 * gradients (a bf16 gradient would round the second-order terms away); the inputs' own
 * directions are in host memory on either backend (the input's tangent pass uploads them). */
static rg_status check_args(const rg_graph *g, rg_node node, int batch, const float *v, bool product,
                            const float *const *input_dirs) {
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the graph before asking for curvature");
    if (node < 0 || node >= g->n_nodes) return rg_fail(RG_ERR_ARG, "curvature: bad node %d", node);
    if (batch < 1 || batch > g->max_batch)
        return rg_fail(RG_ERR_ARG, "batch %d is outside 1..%d (the compiled size)", batch, g->max_batch);
    if (!v) return rg_fail(RG_ERR_ARG, "curvature: the direction is NULL");
    if (g->backend->device && product && g->bf16)
        return rg_fail(RG_ERR_STATE, "curvature products need fp32 or tf32 on the %s backend; run with "
                                     "--precision fp32", g->backend->name);
    const rg_op_kind op = rg_graph_first_without_tangent(g, node);
    if (op != RG_OP_COUNT)
        return rg_fail(RG_ERR_STATE, "curvature needs every op's tangent, and the %s backend has none for %s; "
                                     "run with --device cpu", g->backend->name, rg_op_table[op]->name);
    return RG_OK;
}

rg_status rg_graph_check_tangents(const rg_graph *g) {
    if (!g) return rg_fail(RG_ERR_ARG, "rg_graph_check_tangents: graph is NULL");
    const rg_op_kind op = rg_graph_first_without_tangent(g, g->n_nodes - 1);
    return op == RG_OP_COUNT ? RG_OK
                             : rg_fail(RG_ERR_STATE, "the %s backend has no tangent for %s, which curvature and "
                                                     "GRA need", g->backend->name, rg_op_table[op]->name);
}

rg_op_kind rg_graph_first_without_tangent(const rg_graph *g, rg_node upto) {
    for (int i = 0; i <= upto && i < g->n_nodes; i++)
        if (!g->nodes[i].bypassed && !g->backend->ops[g->nodes[i].op].tangent) return g->nodes[i].op;
    return RG_OP_COUNT;
}

/* The floats of node i's tangent (and gradient) for `batch` samples. */
static size_t node_floats(const rg_graph *g, int i, int batch) {
    return (g->nodes[i].batched ? (size_t)batch : 1) * g->nodes[i].size;
}

/* Releases the tangents (those in the Hessian's cache stay there). */
static void free_tangents(rg_graph *g, bool cached) {
    for (int i = 0; !cached && g->tangent && i < g->n_nodes; i++) g->backend->release(g->tangent[i]);
    free(g->tangent);
    g->tangent = NULL, g->tangent_params = NULL;
}

/* Tangents released within a pass, for the next nodes' to reuse: a fresh buffer the size
 * of an activation costs its pages' first touch, and a chain needs two or three at a time. */
#define SPARE_TANGENTS 8
typedef struct spare_tangents {
    float *buf[SPARE_TANGENTS];
    size_t floats[SPARE_TANGENTS];
    int n;
} spare_tangents;

/* The smallest spare of at least `floats` (its size in *have), else a new buffer. */
static float *take_tangent(rg_graph *g, spare_tangents *sp, size_t floats, size_t *have) {
    int best = -1;
    for (int k = 0; k < sp->n; k++)
        if (sp->floats[k] >= floats && (best < 0 || sp->floats[k] < sp->floats[best])) best = k;
    if (best < 0) return *have = floats, g->backend->alloc(floats);
    float *t = sp->buf[best];
    *have = sp->floats[best];
    sp->n--, sp->buf[best] = sp->buf[sp->n], sp->floats[best] = sp->floats[sp->n];
    return t;
}

/* Keeps t (of `floats`) as a spare, in place of the smallest spare when they are all held. */
static void spare_tangent(rg_graph *g, spare_tangents *sp, float *t, size_t floats) {
    int k = sp->n;
    if (k == SPARE_TANGENTS) {
        k = 0;
        for (int j = 1; j < sp->n; j++) k = sp->floats[j] < sp->floats[k] ? j : k;
        if (sp->floats[k] >= floats) { /* t is the smallest: let it go */
            g->backend->release(t);
            return;
        }
        g->backend->release(sp->buf[k]);
    } else {
        sp->n++;
    }
    sp->buf[k] = t, sp->floats[k] = floats;
}

/* The tangent pass after a forward of `batch` samples, up to node `upto` (its ancestors
 * only), along v: g->tangent[i] holds node i's tangent afterwards for i = upto and `also`
 * (an ancestor, or RG_NONE); the others go to spares after their last reader (every
 * tangent op writes all of its output, so a spare needs no clearing). With `cache` (the
 * Hessian's, a float per value of every node up to upto) every tangent is kept there
 * instead.  free_tangents releases them. */
static rg_status tangent_pass(rg_graph *g, int batch, rg_node upto, const float *v, rg_node also,
                              float *cache) {
    const int n = g->n_nodes; /* check_args made sure the backend has tangents */
    int *last = malloc((size_t)n * sizeof *last);
    size_t *held = malloc((size_t)n * sizeof *held);
    g->tangent = calloc((size_t)n, sizeof *g->tangent);
    if (!last || !held || !g->tangent) {
        free(last), free(held), free(g->tangent), g->tangent = NULL;
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
    if (g->backend->begin_pass) g->backend->begin_pass(); /* v's copies, not the last pass's */
    rg_status s = RG_OK;
    spare_tangents spares = {.n = 0};
    for (int i = 0; i <= upto && !s; i++) {
        rg_node_impl *node = &g->nodes[i];
        if (!g->live[i] || node->bypassed) continue;
        if (cache) g->tangent[i] = cache, cache += node_floats(g, i, batch);
        else if (!(g->tangent[i] = take_tangent(g, &spares, node_floats(g, i, batch), &held[i]))) {
            s = rg_fail(RG_ERR_MEMORY, "out of memory for the tangent of %s", node->name);
            break;
        }
        g->backend->ops[node->op].tangent(g, node, batch);
        for (int k = 0; k < node->n_inputs && !cache; k++) { /* inputs read for the last time */
            const int in = node->inputs[k];
            if (last[in] == i && in != upto && in != also && g->tangent[in])
                spare_tangent(g, &spares, g->tangent[in], held[in]), g->tangent[in] = NULL;
        }
    }
    for (int k = 0; k < spares.n; k++) g->backend->release(spares.buf[k]);
    free(last), free(held);
    if (s) free_tangents(g, cache != NULL);
    return s;
}

/* A node's tangent (after tangent_pass) copied to out, in host memory (widened from bf16
 * where the node stores bf16). */
static void copy_tangent(const rg_graph *g, int batch, rg_node node, float *out) {
    const size_t n = node_floats(g, node, batch);
    if (rg_node_bf16(g, &g->nodes[node]))
        memcpy(out, rg_node_host(g, &g->nodes[node], g->tangent[node], n), n * sizeof *out);
    else rg_graph_read(g, out, g->tangent[node], n);
}

rg_status rg_graph_tangent_from(rg_graph *g, int batch, int train, const float *v,
                                const float *const *input_dirs, rg_node node, float *out) {
    rg_status st = check_args(g, node, batch, v, false, input_dirs);
    if (st) return st;
    if (!out) return rg_fail(RG_ERR_ARG, "rg_graph_tangent: out is NULL");
    if (input_dirs && g->bf16) return rg_fail(RG_ERR_STATE, "rg_graph_tangent: inputs' directions need fp32 or tf32");
    rg_side_pass s;
    if ((st = rg_side_pass_begin(g, &s, true))) return st;
    g->tangent_inputs = input_dirs;
    if (!(st = forward(g, &s, batch, train)) && !(st = tangent_pass(g, batch, node, v, RG_NONE, NULL)))
        copy_tangent(g, batch, node, out);
    free_tangents(g, false);
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
    const float *probs = l->op == RG_OP_MSE ? NULL : rg_host(g, l->aux, (size_t)batch * k); /* softmax's */
    double quad = 0;
    for (int b = 0; b < batch; b++) {
        float *tb = t + (size_t)b * k;
        if (l->op == RG_OP_MSE) {
            const double c = 2.0 / ((double)batch * k);
            for (size_t j = 0; j < k; j++) quad += c * tb[j] * tb[j], tb[j] = (float)(c * tb[j]);
            continue;
        }
        const float *p = probs + (size_t)b * k;
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

static bool is_loss(rg_op_kind op) { return op == RG_OP_SOFTMAX_XENT || op == RG_OP_MSE; }

/* The R-backward's hook, after each node's own backward has carried the tangent of its
 * gradient: the second-order term.  A loss adds its Hessian in its inputs along their
 * tangents, times the loss's own gradient; for the full Hessian every other op adds its
 * backward tangent. */
typedef struct r_backward {
    bool hessian;
    float loss_gradient; /* Gauss-Newton: the seed of the loss asked about */
    float *scratch;      /* a loss input's batch, in host memory */
    float *on_device;    /* and a device's copy of it (NULL on the CPU) */
    float *target;       /* a device's: a target's tangent, read down */
} r_backward;

/* dout += f x, x a loss input's batch in host memory (a device's copied up first) */
static void add_term(rg_graph *g, const r_backward *r, float *dout, const float *x, size_t floats, float f) {
    if (r->on_device) rg_graph_write(g, r->on_device, x, floats), x = r->on_device;
    g->backend->step_along(dout, dout, x, floats, f);
}

static void loss_term(rg_graph *g, int node, const r_backward *r) {
    rg_node_impl *n = &g->nodes[node], *z = rg_in(g, n, 0);
    rg_node_impl *target = n->n_inputs > 1 ? rg_in(g, n, 1) : NULL;
    const size_t floats = (size_t)g->batch * z->size;
    const float *tz = rg_tangent_in(g, n, 0), *tt = target ? rg_tangent_in(g, n, 1) : NULL;
    if (r->on_device) { /* the tangents down from the device */
        rg_graph_read(g, r->scratch, tz, floats);
        if (tt) rg_graph_read(g, r->target, tt, floats);
        tz = r->scratch, tt = tt ? r->target : NULL;
    }
    for (size_t i = 0; i < floats; i++) r->scratch[i] = tt ? tz[i] - tt[i] : tz[i]; /* MSE's z - y */
    loss_hessian(g, node, g->batch, r->scratch);
    float w = r->loss_gradient;
    if (g->adjoint) rg_graph_read(g, &w, g->adjoint[node], 1); /* the loss's own gradient, held */
    if (z->needs_grad) add_term(g, r, z->dout, r->scratch, floats, w);
    if (target && target->needs_grad) add_term(g, r, target->dout, r->scratch, floats, -w);
}

static void second_order_term(rg_graph *g, int node, bool backward, void *user) {
    const r_backward *r = user;
    rg_node_impl *n = &g->nodes[node];
    if (!backward) return;
    if (is_loss(n->op)) loss_term(g, node, r);
    else if (r->hessian && g->backend->ops[n->op].backward_tangent)
        g->backend->ops[n->op].backward_tangent(g, n, g->batch);
}

/* Whether node i's gradient is held for its second-order term. */
static bool holds_adjoint(const rg_graph *g, int i) {
    const rg_node_impl *n = &g->nodes[i];
    return n->needs_grad && !n->bypassed && (is_loss(n->op) || g->backend->ops[n->op].backward_tangent);
}

/* The floats of every tangent up to node `from` (the Hessian's cache holds them first),
 * with the held gradients too when `held`. */
static size_t tangent_floats(const rg_graph *g, rg_node from, int batch, bool held) {
    size_t floats = 0;
    for (int i = 0; i <= from; i++)
        floats += (g->nodes[i].bypassed ? 0 : node_floats(g, i, batch)) +
                  (held && holds_adjoint(g, i) ? node_floats(g, i, batch) : 0);
    return floats;
}

/* The Hessian's cache, for every tangent up to `from` and then (from *held) the held
 * gradients, in the backend's memory: grown when short, kept between calls. */
static float *hessian_cache(rg_graph *g, rg_node from, int batch, float **held) {
    const size_t tangents = tangent_floats(g, from, batch, false), need = tangent_floats(g, from, batch, true);
    if (need > g->hessian_cache_floats) {
        g->backend->release(g->hessian_cache);
        g->hessian_cache_floats = 0;
        if (!(g->hessian_cache = g->backend->alloc(need))) return NULL;
        g->hessian_cache_floats = need;
    }
    *held = g->hessian_cache + tangents;
    return g->hessian_cache;
}

/* Every gradient a second-order term holds (in `cache`), from one backward; then the
 * forward again, since that backward's gradients overwrote outputs it had finished with. */
static rg_status hold_adjoints(rg_graph *g, const rg_side_pass *s, rg_node from, const float *seed,
                               int batch, int train, float *cache) {
    if (!(g->adjoint = calloc((size_t)g->n_nodes, sizeof *g->adjoint)))
        return rg_fail(RG_ERR_MEMORY, "out of memory for a Hessian product");
    for (int i = 0; i <= from; i++)
        if (holds_adjoint(g, i)) g->adjoint[i] = cache, cache += node_floats(g, i, batch);
    g->capture_adjoint = true;
    rg_status st = rg_graph_backward_from(g, from, seed);
    g->capture_adjoint = false;
    return st ? st : forward(g, s, batch, train);
}

/* The R-backward: forward, the tangents, for the Hessian a backward that holds the
 * gradients, then a backward from a zero seed in which every node adds its second-order
 * term. */
static rg_status r_backward_pass(rg_graph *g, const rg_side_pass *s, rg_node from, const float *seed,
                                 int batch, int train, bool gauss_newton, const float *v) {
    rg_node z = RG_NONE;
    rg_status st = RG_OK;
    if (gauss_newton && (st = loss_input(g, from, &z))) return st;
    size_t most = 1; /* the largest loss input */
    for (int i = 0; i <= from; i++)
        if (is_loss(g->nodes[i].op) && g->nodes[g->nodes[i].inputs[0]].size > most)
            most = g->nodes[g->nodes[i].inputs[0]].size;
    const rg_node_impl *top = &g->nodes[from];
    const size_t loss_floats = (size_t)batch * most;
    r_backward r = {!gauss_newton, seed[0], malloc(loss_floats * sizeof(float)), NULL, NULL};
    const bool device = g->backend->device;
    if (device) r.on_device = g->backend->alloc(loss_floats), r.target = malloc(loss_floats * sizeof(float));
    float *zeros = calloc((top->batched ? (size_t)batch : 1) * top->size, sizeof *zeros);
    float *held = NULL, *cache = gauss_newton ? NULL : hessian_cache(g, from, batch, &held);
    void *const user = g->hook_user;
    if (!r.scratch || !zeros || (!gauss_newton && !cache) || (device && (!r.on_device || !r.target)))
        st = rg_fail(RG_ERR_MEMORY, "out of memory for a curvature product");
    if (!st && !(st = forward(g, s, batch, train)) &&
        !(st = tangent_pass(g, batch, gauss_newton ? z : from, v, RG_NONE, cache)) &&
        !(st = gauss_newton ? RG_OK : hold_adjoints(g, s, from, seed, batch, train, held))) {
        g->hook = second_order_term, g->hook_user = &r;
        st = rg_graph_backward_from(g, from, zeros);
        g->hook = NULL, g->hook_user = user;
    }
    free(g->adjoint);
    g->adjoint = NULL;
    free_tangents(g, cache != NULL);
    free(r.scratch), free(r.target), free(zeros);
    if (r.on_device) g->backend->release(r.on_device);
    return st;
}

rg_status rg_graph_backward_tangent(rg_graph *g, rg_node from, const float *seed, int batch, int train,
                                    bool gauss_newton, const float *v, const float *const *input_dirs) {
    rg_status st = check_args(g, from, batch, v, true, input_dirs);
    if (st) return st;
    if (!seed) return rg_fail(RG_ERR_ARG, "curvature: the seed is NULL");
    rg_side_pass s;
    if ((st = rg_side_pass_begin(g, &s, true))) return st;
    g->tangent_inputs = input_dirs;
    st = r_backward_pass(g, &s, from, seed, batch, train, gauss_newton, v);
    g->tangent_inputs = NULL;
    rg_side_pass_end(g, &s);
    return st;
}

/* ||x|| of host memory, summed in index order in double (the CPU's pass) */
static double norm(const float *x, size_t n) { return sqrt(rg_cpu_backend.squares_in_order(x, n)); }

rg_status rg_graph_curvature_product(rg_graph *g, rg_node loss, int batch, int train,
                                     rg_curvature kind, const float *v, float *out) {
    if (g && loss >= 0 && loss < g->n_nodes && g->nodes[loss].batched)
        return rg_fail(RG_ERR_ARG, "curvature: '%s' is not a scalar loss", g->nodes[loss].name);
    if (!out) return rg_fail(RG_ERR_ARG, "rg_graph_curvature_product: out is NULL");
    const float one = 1.0f;
    rg_status st = rg_graph_backward_tangent(g, loss, &one, batch, train, kind != RG_CURVATURE_HESSIAN, v, NULL);
    if (!st) rg_graph_read(g, out, g->grad_buf, g->param_floats);
    return st;
}

rg_status rg_graph_curvature_along(rg_graph *g, rg_node loss, int batch, int train,
                                   const float *v, double *slope, double *curvature) {
    rg_status st = check_args(g, loss, batch, v, false, NULL);
    rg_node z = RG_NONE;
    if (st || (st = loss_input(g, loss, &z))) return st;
    float *t = malloc((size_t)batch * g->nodes[z].size * sizeof *t);
    if (!t) return rg_fail(RG_ERR_MEMORY, "out of memory for the curvature along a direction");
    rg_side_pass s;
    if (!(st = rg_side_pass_begin(g, &s, true))) {
        float dl; /* one pass to the loss: its tangent is the slope; the logits' give v^T G v */
        if (!(st = forward(g, &s, batch, train)) && !(st = tangent_pass(g, batch, loss, v, z, NULL))) {
            copy_tangent(g, batch, loss, &dl);
            copy_tangent(g, batch, z, t);
            if (slope) *slope = dl;
            if (curvature) *curvature = loss_hessian(g, loss, batch, t);
        }
        free_tangents(g, false);
        rg_side_pass_end(g, &s);
    }
    free(t);
    return st;
}

rg_status rg_graph_curvature_along_at(rg_graph *g, float *at, rg_node loss, int batch, int train,
                                      const float *v, double *slope, double *curvature) {
    float *const own = g->param_buf;
    g->param_buf = at;
    const rg_status st = rg_graph_curvature_along(g, loss, batch, train, v, slope, curvature);
    g->param_buf = own;
    return st;
}

rg_status rg_graph_top_curvature(rg_graph *g, rg_node loss, int batch, int train,
                                 rg_curvature kind, rg_node layer, int max_iters, double tolerance,
                                 double *lambda) {
    rg_status st = check_args(g, loss, batch, g ? g->param_buf : NULL, true, NULL);
    if (st) return st;
    if (layer != RG_NONE && (layer < 0 || layer >= g->n_nodes))
        return rg_fail(RG_ERR_ARG, "curvature: bad layer %d", layer);
    const size_t n = g->param_floats;
    float *v = calloc(n ? n : 1, sizeof *v), *hv = malloc((n ? n : 1) * sizeof *hv);
    bool *in_block = calloc(n ? n : 1, sizeof *in_block);
    float *v_dev = g->backend->device ? g->backend->alloc(n ? n : 1) : NULL; /* a device's copy of v */
    if (!v || !hv || !in_block || (g->backend->device && !v_dev)) {
        free(v), free(hv), free(in_block), g->backend->release(v_dev);
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
    double vn = norm(v, n), est = 0;
    if (vn == 0) st = rg_fail(RG_ERR_ARG, "curvature: '%s' has no trainable parameters",
                              layer == RG_NONE ? "the graph" : g->nodes[layer].name);
    for (int it = 0; !st && it < max_iters; it++) {
        for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / vn);
        if (v_dev) rg_graph_write(g, v_dev, v, n);
        if ((st = rg_graph_curvature_product(g, loss, batch, train, kind, v_dev ? v_dev : v, hv))) break;
        double rq = 0;
        for (size_t i = 0; i < n; i++) {
            if (!in_block[i]) hv[i] = 0;
            rq += (double)v[i] * hv[i];
        }
        const double prev = est;
        est = rq;
        vn = norm(hv, n);
        if (vn == 0 || !isfinite(vn)) break;
        memcpy(v, hv, n * sizeof *v);
        if (it > 0 && fabs(est - prev) <= tolerance * fabs(est)) break;
    }
    if (!st) *lambda = est;
    free(v), free(hv), free(in_block), g->backend->release(v_dev);
    return st;
}
