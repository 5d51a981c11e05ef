/*
 * zoo.c — the model registry and rg_model_build: resolves the options every model shares
 * (classes=N, input=CxHxW, top=0|1), builds the network, and adds the loss.
 */
#include "models.h"

#include <stdio.h>
#include <string.h>

typedef struct zoo_entry {
    const char *name;
    model_builder build;
    int c, h, w, classes; /* defaults when neither the caller nor the spec says */
} zoo_entry;

static const zoo_entry zoo[] = {
    {"mlp", build_mlp, 1, 28, 28, 10},
    {"cnn", build_cnn, 1, 28, 28, 10},
    {"plaincnn", build_plaincnn, 1, 28, 28, 10},
    {"resnet20v2", build_resnet_cifar, 1, 28, 28, 10},
    {"resnet56v2", build_resnet_cifar, 1, 28, 28, 10},
    {"plain20", build_resnet_cifar, 1, 28, 28, 10},
    {"plain56", build_resnet_cifar, 1, 28, 28, 10},
    {"resnet18v2", build_resnet_imagenet, 3, 224, 224, 1000},
    {"resnet50v2", build_resnet_imagenet, 3, 224, 224, 1000},
    {"resnet101v2", build_resnet_imagenet, 3, 224, 224, 1000},
    {"densenet121", build_densenet121, 3, 224, 224, 1000},
    {"densenet", build_densenet_small, 1, 28, 28, 10},
    {"lassonet", build_lassonet, 1, 28, 28, 10},
};

const char *rg_model_names(void) {
    return "mlp, cnn, plaincnn, resnet20v2, resnet56v2, plain20, plain56, resnet18v2, "
           "resnet50v2, resnet101v2, densenet121, densenet, lassonet";
}

rg_status rg_model_build(const char *spec, const rg_model_opts *opts, rg_model *out) {
    const rg_model_opts none = {0}, *op = opts ? opts : &none;
    const int c = op->c, h = op->h, w = op->w, classes = op->classes;
    memset(out, 0, sizeof *out);
    out->input = out->logits = out->loss = out->objective = RG_NONE;
    spec_opts o;
    rg_status s = spec_parse(spec, &o);
    if (s) return s;
    const zoo_entry *e = NULL;
    for (size_t k = 0; k < sizeof zoo / sizeof *zoo; k++)
        if (strcmp(o.model, zoo[k].name) == 0) e = &zoo[k];
    if (!e) return rg_fail(RG_ERR_ARG, "unknown model '%s': available: %s", o.model, rg_model_names());
    model_dims d = {c > 0 ? c : e->c, h > 0 ? h : e->h, w > 0 ? w : e->w,
                    classes > 0 ? classes : e->classes, true};
    const char *input = spec_find(&o, "input");
    if (input) {
        char tail;
        if (sscanf(input, "%dx%dx%d%c", &d.c, &d.h, &d.w, &tail) != 3 || d.c < 1 || d.h < 1 ||
            d.w < 1 || d.c > 65536 || d.h > 65536 || d.w > 65536)
            return rg_fail(RG_ERR_ARG, "model option input=%s: write CxHxW, e.g. input=3x224x224",
                           input);
    }
    int top;
    if ((s = spec_int(&o, "classes", d.classes, 2, 1 << 20, &d.classes)) ||
        (s = spec_int(&o, "top", 1, 0, 1, &top)))
        return s;
    d.top = top;
    if (d.c < 1 || d.h < 1 || d.w < 1)
        return rg_fail(RG_ERR_SHAPE, "input shape %dx%dx%d is empty", d.c, d.h, d.w);
    snprintf(out->spec, sizeof out->spec, "%s", spec);
    if (!(out->graph = rg_graph_create(op->seed))) return RG_ERR_MEMORY;
    if ((s = e->build(&o, &d, out))) {
        rg_model_free(out);
        return s;
    }
    rg_graph *g = out->graph;
    if (d.top)
        out->loss = op->loss == RG_LOSS_MSE
                        ? rg_mse(g, rg_softmax(g, out->logits), RG_NONE)
                        : rg_softmax_cross_entropy(g, out->logits, op->label_smoothing);
    if (g->error) {
        s = rg_fail(g->error, "model %s: %s", o.model, g->error_msg);
        rg_model_free(out);
    }
    return s;
}

rg_status rg_model_from_graph(rg_graph *g, rg_node input, rg_node logits, rg_node loss,
                              rg_model *out) {
    memset(out, 0, sizeof *out);
    out->input = out->logits = out->loss = out->objective = RG_NONE;
    if (!g) return rg_fail(RG_ERR_ARG, "model from graph: the graph is NULL");
    if (g->error) return rg_fail(g->error, "%s", g->error_msg);
    if (input == RG_NONE)
        for (int i = 0; i < g->n_nodes; i++) {
            if (g->nodes[i].op != RG_OP_INPUT) continue;
            if (input != RG_NONE)
                return rg_fail(RG_ERR_ARG, "model from graph: the graph has several inputs "
                                           "('%s', '%s'): name the one the data fills",
                               g->nodes[input].name, g->nodes[i].name);
            input = i;
        }
    const int n = g->n_nodes;
    if (input < 0 || input >= n || g->nodes[input].op != RG_OP_INPUT)
        return rg_fail(RG_ERR_ARG, "model from graph: no input node to read the data into");
    if (logits < 0 || logits >= n || g->nodes[logits].ndim != 1)
        return rg_fail(RG_ERR_ARG, "model from graph: the logits must be a node of one "
                                   "dimension (the classes)");
    if (loss < 0 || loss >= n || g->nodes[loss].batched)
        return rg_fail(RG_ERR_ARG, "model from graph: the loss must be a scalar node (a "
                                   "softmax cross-entropy or an MSE)");
    out->graph = g;
    out->input = input, out->logits = logits, out->loss = loss;
    return RG_OK;
}

rg_status rg_model_add_hooks(rg_model *m, const rg_model_hooks *hooks) {
    if (m->n_hooks == RG_MAX_HOOKS)
        return rg_fail(RG_ERR_ARG, "a model takes at most %d sets of hooks", RG_MAX_HOOKS);
    m->hooks[m->n_hooks++] = hooks;
    return RG_OK;
}

void rg_model_before_step(rg_model *m, long step, long total_steps) {
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->before_step) m->hooks[i]->before_step(m, step, total_steps);
}

rg_status rg_model_after_update(rg_model *m, float lr) {
    rg_status s = RG_OK;
    for (int i = 0; i < m->n_hooks && !s; i++)
        if (m->hooks[i]->after_update) s = m->hooks[i]->after_update(m, lr);
    return s;
}

bool rg_model_moves_weights(const rg_model *m) {
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->after_update) return true;
    return false;
}

void rg_model_free(rg_model *m) {
    if (!m) return;
    rg_graph_free(m->graph);
    m->graph = NULL;
}
