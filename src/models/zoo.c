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

rg_status rg_model_build(const char *spec, int c, int h, int w, int classes, rg_loss_kind loss,
                         float label_smoothing, uint64_t seed, rg_model *out) {
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
    if (!(out->graph = rg_graph_create(seed))) return RG_ERR_MEMORY;
    if ((s = e->build(&o, &d, out))) {
        rg_model_free(out);
        return s;
    }
    rg_graph *g = out->graph;
    if (d.top)
        out->loss = loss == RG_LOSS_MSE ? rg_mse(g, rg_softmax(g, out->logits), RG_NONE)
                                        : rg_softmax_cross_entropy(g, out->logits, label_smoothing);
    if (g->error) {
        s = rg_fail(g->error, "model %s: %s", o.model, g->error_msg);
        rg_model_free(out);
    }
    return s;
}

void rg_model_free(rg_model *m) {
    if (!m) return;
    rg_graph_free(m->graph);
    m->graph = NULL;
}
