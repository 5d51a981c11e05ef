/*
 * aux.c — intermediate-layer prediction (deep supervision, as in Lee et al.'s deeply
 * supervised nets and GoogLeNet's auxiliary classifiers): small classifier heads on
 * intermediate layers whose losses are added to the main one, so early layers get a short
 * gradient path.
 *
 * A head reads a layer's activation (the output after its batch norm and activation, if
 * any), averages each channel when it is a feature map, and maps it to the classes with
 * one dense layer, named aux_head_K; its softmax cross-entropy is aux_loss_K.  The
 * objective is one weighted-sum node, loss + (w / n) sum_k aux_loss_k, and w is set
 * between steps (rg_fit decays it to 0 over training).  Heads are training scaffolding:
 * rg_model_save leaves their tensors out and rg_model_load ignores them, so a model
 * predicts and exports without them.
 */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The node a head reads for layer node i: its activation, through a batch norm. */
static int activation_after(const rg_graph *g, int i) {
    int at = i;
    for (int step = 0; step < 2; step++) {
        int next = -1;
        for (int j = at + 1; j < g->n_nodes && next < 0; j++)
            if (g->nodes[j].n_inputs == 1 && g->nodes[j].inputs[0] == at &&
                (g->nodes[j].op == RG_OP_BATCH_NORM || g->nodes[j].op == RG_OP_ACTIVATION))
                next = j;
        if (next < 0) break;
        at = next;
        if (g->nodes[at].op == RG_OP_ACTIVATION) break;
    }
    return at;
}

static bool is_layer(const rg_node_impl *n) { return n->op == RG_OP_DENSE || n->op == RG_OP_CONV2D; }

/* The heads' weight now, (w / n) for each. */
static void set_weight_now(rg_model *m, float w) {
    for (int k = 0; k < m->n_aux; k++) rg_weighted_sum_set(m->graph, m->objective, k + 1, w / m->n_aux);
}

void rg_model_set_aux_weight(rg_model *m, float w) {
    m->aux_weight = w;
    set_weight_now(m, w);
}

/* Deep supervision's weight decays linearly to 0 over training. */
static void aux_decay(rg_model *m, long step, long total_steps) {
    set_weight_now(m, m->aux_weight * (1.0f - (float)step / (float)total_steps));
}

static const rg_model_hooks aux_hooks = {.before_step = aux_decay};

rg_status rg_model_add_aux_heads(rg_model *m, const char *which) {
    rg_graph *g = m->graph;
    if (!g || g->compiled) return rg_fail(RG_ERR_STATE, "add auxiliary heads before compiling");
    if (m->loss == RG_NONE) return rg_fail(RG_ERR_ARG, "auxiliary heads need a model with a classifier");
    /* candidates: every dense or conv layer before the classifier */
    int cand[1024], nc = 0;
    for (int i = 0; i < m->logits && nc < 1024; i++)
        if (is_layer(&g->nodes[i])) cand[nc++] = i;
    int chosen[RG_MAX_AUX], n = 0;
    char *end;
    long count = strtol(which, &end, 10);
    if (*which && !*end) { /* a count: spread evenly, the first and last layers excepted */
        if (count < 1 || count > RG_MAX_AUX)
            return rg_fail(RG_ERR_ARG, "--aux-heads %ld: 1 to %d heads", count, RG_MAX_AUX);
        if (nc < count + 1)
            return rg_fail(RG_ERR_ARG, "model '%s' has %d layers before its classifier: too few "
                                       "for %ld auxiliary heads", m->spec, nc, count);
        for (int k = 0; k < count; k++) chosen[n++] = cand[(int)((long)(k + 1) * nc / (count + 1))];
    } else { /* layer names */
        char buf[512];
        snprintf(buf, sizeof buf, "%s", which);
        for (char *save = NULL, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            int found = -1;
            for (int i = 0; i < nc && found < 0; i++)
                if (strcmp(g->nodes[cand[i]].name, name) == 0) found = cand[i];
            if (found < 0)
                return rg_fail(RG_ERR_ARG, "--aux-heads: no dense or conv layer '%s' before the "
                                           "classifier ('regrad summary' lists them)", name);
            if (n == RG_MAX_AUX) return rg_fail(RG_ERR_ARG, "at most %d auxiliary heads", RG_MAX_AUX);
            chosen[n++] = found;
        }
        if (!n) return rg_fail(RG_ERR_ARG, "--aux-heads: give a count or layer names");
    }
    const int classes = (int)g->nodes[m->logits].size;
    rg_node losses[RG_MAX_AUX + 1] = {m->loss};
    float weights[RG_MAX_AUX + 1] = {1.0f};
    char name[64];
    for (int k = 0; k < n; k++) {
        rg_node x = activation_after(g, chosen[k]);
        if (g->nodes[x].ndim == 3) x = rg_global_avg_pool(g, x);
        rg_node z = rg_dense(g, x, classes, RG_INIT(RG_INIT_GLOROT_UNIFORM));
        snprintf(name, sizeof name, "aux_head_%d", k + 1);
        rg_node_set_name(g, z, name);
        rg_node l = rg_softmax_cross_entropy(g, z, 0.0f);
        snprintf(name, sizeof name, "aux_loss_%d", k + 1);
        rg_node_set_name(g, l, name);
        m->aux_logits[k] = z;
        m->aux_layer[k] = chosen[k];
        losses[k + 1] = l;
        weights[k + 1] = 0;
    }
    m->n_aux = n;
    m->objective = rg_weighted_sum(g, n + 1, losses, weights);
    rg_node_set_name(g, m->objective, "objective");
    if (g->error) return rg_fail(g->error, "auxiliary heads: %s", g->error_msg);
    return rg_model_add_hooks(m, &aux_hooks);
}

rg_node rg_model_objective(const rg_model *m) { return m->n_aux ? m->objective : m->loss; }
