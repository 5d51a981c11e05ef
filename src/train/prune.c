/*
 * prune.c — magnitude pruning, with masks that keep pruned weights at zero while a model
 * trains on.
 *
 * What can be pruned: the kernels of dense and conv layers, the classifier's excepted (its
 * outputs are the classes).  Structure "weights" prunes single weights by |w|; "units"
 * prunes whole outputs (a dense row, a conv filter, with its bias) by the L1 or L2 norm of
 * their incoming weights.  Scope "layer" prunes the same fraction of every layer; "global"
 * ranks everything together (units by their norm per incoming weight, L2 / sqrt(n) or
 * L1 / n, so layers of different fan-in compare).  The amount is the target fraction
 * pruned, counting what is pruned already (pruned weights are zero, so they rank first):
 * pruning 0.5 then 0.7 ends at 0.7, as a gradual schedule needs.  A threshold instead
 * prunes everything below it.  Masks live in a flat buffer parallel to the parameters.
 */
#include "../kernels/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whether parameter p is prunable in model m. */
static bool prunable(const rg_model *m, const rg_param_impl *p) {
    return !p->state && p->node != m->logits && strcmp(p->suffix, "kernel") == 0 &&
           p->ndim >= 2;
}

static int by_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Sorts scores and returns the cut for pruning the k smallest: the k-th smallest value,
 * and in *ties how many scores equal to it are to go (those below it all go).  k = 0: a
 * cut below everything. */
static float cut_for(float *scores, size_t n, size_t k, long *ties) {
    *ties = 0;
    if (k == 0 || n == 0) return -1.0f;
    if (k > n) k = n;
    qsort(scores, n, sizeof *scores, by_float);
    const float cut = scores[k - 1];
    size_t below = 0;
    while (below < n && scores[below] < cut) below++;
    *ties = (long)(k - below);
    return cut;
}

/* Each unit's score into out: its incoming weights' norm (per weight when comparing
 * across layers), or with units the values themselves, |w|. */
static void scores_of(const rg_graph *g, const rg_param_impl *p, bool units, int norm,
                      bool per_weight, float *out) {
    const size_t nu = units ? (size_t)p->shape[0] : p->size;
    g->backend->unit_scores(g->param_buf + p->offset, nu, p->size / nu, units ? norm : 0,
                            per_weight, out);
}

/* Zeroes (and masks) len values of parameter p from `at`. */
static void cut_values(rg_graph *g, const rg_param_impl *p, size_t at, size_t len) {
    g->backend->fill(g->param_buf + p->offset + at, len, 0);
    g->backend->fill(g->mask_buf + p->offset + at, len, 0);
}

/* Zeroes (and masks) unit u of kernel p and its bias. */
static void cut_unit(rg_graph *g, const rg_param_impl *p, size_t u, size_t len) {
    cut_values(g, p, u * len, len);
    const rg_node_impl *n = &g->nodes[p->node];
    for (int q = 0; q < n->n_params; q++) {
        const rg_param_impl *b = &g->params[n->first_param + q];
        if (strcmp(b->suffix, "bias") == 0 && u < b->size) cut_values(g, b, u, 1);
    }
}

/* The masks, all 1, made when the first is needed. */
static rg_status make_masks(rg_graph *g) {
    if (g->mask_buf) return RG_OK;
    if (!(g->mask_buf = g->backend->alloc(g->param_floats)))
        return rg_fail(RG_ERR_MEMORY, "out of memory for pruning masks");
    g->backend->fill(g->mask_buf, g->param_floats, 1.0f);
    return RG_OK;
}

static rg_status prune_here(rg_model *m, const rg_prune_opts *o, rg_prune_report *rep);

/* On a device the ranking and cutting run on host copies of the weights and masks (the
 * CPU's code, the CPU's result), which go back up in one copy each: a pruning is a few
 * whole-model passes, not a per-step cost. */
rg_status rg_prune(rg_model *m, const rg_prune_opts *o, rg_prune_report *rep) {
    rg_graph *g = m->graph;
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before pruning it");
    if (!rg_graph_on_device(g)) return prune_here(m, o, rep);
    rg_status s = make_masks(g);
    const size_t n = g->param_floats;
    float *const dev_w = g->param_buf, *const dev_mask = g->mask_buf, *w = NULL, *mask = NULL;
    if (!s && (!(w = rg_graph_host_copy(g, dev_w, n)) || !(mask = rg_graph_host_copy(g, dev_mask, n))))
        s = RG_ERR_MEMORY; /* recorded by the copy */
    if (!s) s = rg_graph_finish(g);
    if (!s) {
        const rg_backend *device = g->backend;
        g->backend = &rg_cpu_backend, g->param_buf = w, g->mask_buf = mask;
        s = prune_here(m, o, rep);
        g->backend = device, g->param_buf = dev_w, g->mask_buf = dev_mask;
    }
    if (!s) {
        rg_graph_write(g, dev_w, w, n);
        rg_graph_write(g, dev_mask, mask, n);
        s = rg_graph_finish(g);
    }
    free(w), free(mask);
    return s;
}

static rg_status prune_here(rg_model *m, const rg_prune_opts *o, rg_prune_report *rep) {
    rg_graph *g = m->graph;
    const bool by_threshold = o->threshold > 0;
    if (!by_threshold && !(o->amount >= 0 && o->amount <= 1))
        return rg_fail(RG_ERR_ARG, "pruning amount %g is outside [0, 1]", (double)o->amount);
    if (o->norm != 1 && o->norm != 2)
        return rg_fail(RG_ERR_ARG, "pruning criterion must be l1 or l2");
    rg_status s = make_masks(g);
    if (s) return s;
    const bool units = o->structure == RG_PRUNE_UNITS;
    /* the scores, all of them for a global cut */
    size_t total = 0;
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (prunable(m, p)) total += units ? (size_t)p->shape[0] : p->size;
    }
    if (total == 0) return rg_fail(RG_ERR_ARG, "model '%s' has no prunable layer", m->spec);
    float *scores = malloc(total * sizeof *scores);
    if (!scores) return rg_fail(RG_ERR_MEMORY, "out of memory");
    float global_cut = -1;
    long global_ties = 0;
    if (o->global && !by_threshold) {
        size_t at = 0;
        for (int i = 0; i < g->n_params; i++) {
            const rg_param_impl *p = &g->params[i];
            if (!prunable(m, p)) continue;
            scores_of(g, p, units, o->norm, true, scores + at);
            at += units ? (size_t)p->shape[0] : p->size;
        }
        global_cut = cut_for(scores, total, (size_t)llround(o->amount * (double)total), &global_ties);
    }
    /* layer by layer: below the cut goes; of the scores equal to it, as many as the count
     * needs (in order), so the amount is exact */
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!prunable(m, p)) continue;
        const size_t nu = units ? (size_t)p->shape[0] : p->size, len = units ? p->size / nu : 1;
        scores_of(g, p, units, o->norm, o->global, scores);
        float cut = o->threshold;
        long local_ties = 0, *ties = by_threshold ? NULL : o->global ? &global_ties : &local_ties;
        if (o->global && !by_threshold) {
            cut = global_cut;
        } else if (!by_threshold) {
            float *sorted = malloc(nu * sizeof *sorted);
            if (!sorted) {
                free(scores);
                return rg_fail(RG_ERR_MEMORY, "out of memory");
            }
            memcpy(sorted, scores, nu * sizeof *sorted);
            cut = cut_for(sorted, nu, (size_t)llround(o->amount * (double)nu), &local_ties);
            free(sorted);
        }
        for (size_t u = 0; u < nu; u++) {
            bool go = scores[u] < cut;
            if (!go && ties && scores[u] == cut && *ties > 0) go = true, (*ties)--;
            if (!go) continue;
            if (units) cut_unit(g, p, u, len);
            else cut_values(g, p, u, 1);
        }
    }
    free(scores);
    /* the result, from the masks */
    rg_prune_report r = {0};
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!prunable(m, p)) continue;
        r.pruned += (long)g->backend->count_zeros(g->mask_buf + p->offset, p->size);
        r.prunable += (long)p->size;
        r.layers++;
    }
    r.sparsity = r.prunable ? (double)r.pruned / (double)r.prunable : 0;
    if (rep) *rep = r;
    return RG_OK;
}

void rg_graph_clear_masks(rg_graph *g) {
    g->backend->release(g->mask_buf);
    g->mask_buf = NULL;
}

void rg_graph_apply_masks(rg_graph *g) {
    if (!g || !g->mask_buf) return;
    g->backend->multiply(g->param_buf, g->mask_buf, g->param_floats);
}

double rg_param_sparsity(const rg_graph *g, int i) {
    const rg_param_impl *p = &g->params[i];
    if (p->state || !g->compiled || p->size == 0) return 0;
    return (double)g->backend->count_zeros(g->param_buf + p->offset, p->size) / (double)p->size;
}

const float *rg_graph_mask(const rg_graph *g, int i) {
    return g->mask_buf && !g->params[i].state ? g->mask_buf + g->params[i].offset : NULL;
}

rg_status rg_graph_set_mask(rg_graph *g, int i, const float *mask) {
    const rg_param_impl *p = &g->params[i];
    if (p->state) return rg_fail(RG_ERR_ARG, "'%s' is state, not a parameter: it has no mask", p->name);
    for (size_t j = 0; j < p->size; j++) /* the caller's values, checked first */
        if (mask[j] != 0.0f && mask[j] != 1.0f)
            return rg_fail(RG_ERR_FORMAT, "mask of '%s' holds %g: masks are 0 or 1", p->name,
                           (double)mask[j]);
    rg_status s = make_masks(g);
    if (!s) rg_graph_write(g, g->mask_buf + p->offset, mask, p->size); /* the caller's: host memory */
    return s;
}
