/*
 * zoo.c — the model registry and rg_model_build: resolves the options every model shares
 * (classes=N, input=CxHxW, top=0|1), builds the network, and adds the loss.
 */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct zoo_entry {
    const char *name;
    model_builder build;
    int c, h, w, classes; /* defaults when neither the caller nor the spec says */
    const char *options;  /* its own spec options, for help ("" for none) */
} zoo_entry;

static const zoo_entry zoo[] = {
    {"mlp", build_mlp, 1, 28, 28, 10, "depth=D,width=W,act=A,init=I,dropout=P,bn=0|1,residual=0|1"},
    {"cnn", build_cnn, 1, 28, 28, 10, "init=I"},
    {"plaincnn", build_plaincnn, 1, 28, 28, 10, "depth=D,width=C,act=A,init=I,bn=0|1"},
    {"resnet20v2", build_resnet_cifar, 1, 28, 28, 10, "init=I"},
    {"resnet56v2", build_resnet_cifar, 1, 28, 28, 10, "init=I"},
    {"plain20", build_resnet_cifar, 1, 28, 28, 10, "init=I"},
    {"plain56", build_resnet_cifar, 1, 28, 28, 10, "init=I"},
    {"resnet18v2", build_resnet_imagenet, 3, 224, 224, 1000, "init=I"},
    {"resnet50v2", build_resnet_imagenet, 3, 224, 224, 1000, "init=I"},
    {"resnet101v2", build_resnet_imagenet, 3, 224, 224, 1000, "init=I"},
    {"densenet121", build_densenet121, 3, 224, 224, 1000, "init=I"},
    {"densenet", build_densenet_small, 1, 28, 28, 10, "depth=D,growth=K"},
    {"lassonet", build_lassonet, 1, 28, 28, 10, "width=W,depth=D,M=F,act=A,init=I"},
};
static const char *const zoo_names[] = {
    "mlp", "cnn", "plaincnn", "resnet20v2", "resnet56v2", "plain20", "plain56", "resnet18v2",
    "resnet50v2", "resnet101v2", "densenet121", "densenet", "lassonet"};
_Static_assert(RG_COUNT_OF(zoo_names) == RG_COUNT_OF(zoo), "a name for every model");

const char *const *rg_model_table_names(int *n) {
    *n = RG_COUNT_OF(zoo_names);
    return zoo_names;
}

const char *rg_model_spec(int i, char *buf, size_t len) {
    if (i < 0 || i >= RG_COUNT_OF(zoo)) return NULL;
    snprintf(buf, len, "%s%s%s", zoo[i].name, zoo[i].options[0] ? ":" : "", zoo[i].options);
    return buf;
}

static const char *const loss_names[] = {[RG_LOSS_XENT] = "xent", [RG_LOSS_MSE] = "mse"};

const char *const *rg_loss_names(int *n) {
    *n = RG_COUNT_OF(loss_names);
    return loss_names;
}

rg_status rg_loss_parse(const char *text, rg_loss_kind *out) {
    const int i = rg_name_index(loss_names, RG_COUNT_OF(loss_names), text);
    if (i < 0) return rg_fail_unknown("loss", text, loss_names, RG_COUNT_OF(loss_names));
    *out = (rg_loss_kind)i;
    return RG_OK;
}

/* The loss on 1-D logits (a classifier), and the graph's first error as the build's. */
static rg_status add_loss(rg_model *out, const rg_model_opts *op, bool top, const char *model) {
    rg_graph *g = out->graph;
    if (top && out->logits != RG_NONE && g->nodes[out->logits].ndim == 1)
        out->loss = op->loss == RG_LOSS_MSE
                        ? rg_mse(g, rg_softmax(g, out->logits), RG_NONE)
                        : rg_softmax_cross_entropy(g, out->logits, op->label_smoothing);
    if (!g->error) return RG_OK;
    rg_status s = rg_fail(g->error, "model %s: %s", model, g->error_msg);
    rg_model_free(out);
    return s;
}

/* "keras:FILE" (a Keras model's JSON, keras_model.c) and "onnx:FILE" (onnx.c): the path made
 * absolute so that the checkpoints that record the spec rebuild it from anywhere. */
static rg_status build_file(const char *spec, const rg_model_opts *op, rg_model *out) {
    const size_t prefix = strchr(spec, ':') - spec + 1;
    char *full = realpath(spec + prefix, NULL);
    if (!full) return rg_fail(RG_ERR_IO, "model %s: no such file", spec);
    const int len = snprintf(out->spec, sizeof out->spec, "%.*s%s", (int)prefix, spec, full);
    free(full);
    if (len >= (int)sizeof out->spec)
        return rg_fail(RG_ERR_ARG, "model %s: a path over %zu bytes", spec, sizeof out->spec - prefix - 1);
    if (!(out->graph = rg_graph_create(op->seed))) return RG_ERR_MEMORY;
    const char *path = out->spec + prefix;
    rg_status s = strncmp(spec, "keras:", 6) == 0 ? rg_keras_model_build(path, op, out)
                                                 : rg_onnx_model_build(path, op, out);
    if (s) {
        rg_model_free(out);
        return s;
    }
    return add_loss(out, op, true, out->spec);
}

rg_status rg_model_build(const char *spec, const rg_model_opts *opts, rg_model *out) {
    const rg_model_opts none = {0}, *op = opts ? opts : &none;
    const int c = op->c, h = op->h, w = op->w, classes = op->classes;
    memset(out, 0, sizeof *out);
    out->input = out->logits = out->loss = out->objective = RG_NONE;
    if (spec && (strncmp(spec, "keras:", 6) == 0 || strncmp(spec, "onnx:", 5) == 0))
        return build_file(spec, op, out);
    spec_opts o;
    rg_status s = spec_parse(spec, &o);
    if (s) return s;
    const int k = rg_name_index(zoo_names, RG_COUNT_OF(zoo_names), o.model);
    if (k < 0) return rg_fail_unknown("model", o.model, zoo_names, RG_COUNT_OF(zoo_names));
    const zoo_entry *e = &zoo[k];
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
    return add_loss(out, op, d.top, o.model);
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
