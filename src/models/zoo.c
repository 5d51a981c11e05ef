/*
 * zoo.c — model specs ("mlp:depth=2,width=256,act=relu,init=he") and the models they build.
 *
 * A spec is a model name, optionally followed by a colon and comma-separated key=value
 * options.  Each model reads the options it knows through spec_int/spec_float/spec_text;
 * any option left unread is an error naming the valid ones, so a typo never passes silently.
 */
#include "../internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 16

typedef struct spec_opts {
    const char *model;
    int n;
    char key[MAX_OPTS][32];
    char val[MAX_OPTS][64];
    bool used[MAX_OPTS];
    char text[256];
} spec_opts;

static rg_status spec_parse(const char *spec, spec_opts *o) {
    memset(o, 0, sizeof *o);
    if (!spec || !*spec) return rg_fail(RG_ERR_ARG, "empty model spec: try mlp:depth=2,width=256");
    if (strlen(spec) >= sizeof o->text) return rg_fail(RG_ERR_ARG, "model spec too long");
    strcpy(o->text, spec);
    char *colon = strchr(o->text, ':');
    o->model = o->text;
    if (!colon) return RG_OK;
    *colon = 0;
    for (char *item = colon + 1; item && *item;) {
        char *next = strchr(item, ',');
        if (next) *next++ = 0;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1])
            return rg_fail(RG_ERR_ARG, "bad model option '%s' in '%s': write key=value, "
                                       "e.g. mlp:depth=4,width=128", item, spec);
        *eq = 0;
        if (o->n == MAX_OPTS || strlen(item) >= 32 || strlen(eq + 1) >= 64)
            return rg_fail(RG_ERR_ARG, "model spec '%s' has too many or too long options", spec);
        for (int k = 0; k < o->n; k++)
            if (strcmp(o->key[k], item) == 0)
                return rg_fail(RG_ERR_ARG, "model option '%s' given twice in '%s'", item, spec);
        strcpy(o->key[o->n], item);
        strcpy(o->val[o->n], eq + 1);
        o->n++;
        item = next;
    }
    return RG_OK;
}

static const char *spec_find(spec_opts *o, const char *key) {
    for (int k = 0; k < o->n; k++)
        if (strcmp(o->key[k], key) == 0) {
            o->used[k] = true;
            return o->val[k];
        }
    return NULL;
}

static rg_status spec_int(spec_opts *o, const char *key, int dflt, int lo, int hi, int *out) {
    const char *v = spec_find(o, key);
    if (!v) {
        *out = dflt;
        return RG_OK;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || errno || x < lo || x > hi)
        return rg_fail(RG_ERR_ARG, "model option %s=%s: expected a whole number in %d..%d", key,
                       v, lo, hi);
    *out = (int)x;
    return RG_OK;
}

static rg_status spec_float(spec_opts *o, const char *key, float dflt, float lo, float hi,
                            float *out) {
    const char *v = spec_find(o, key);
    if (!v) {
        *out = dflt;
        return RG_OK;
    }
    char *end;
    double x = strtod(v, &end);
    if (*end || !isfinite(x) || x < lo || x >= hi)
        return rg_fail(RG_ERR_ARG, "model option %s=%s: expected a number in [%g, %g)", key, v,
                       (double)lo, (double)hi);
    *out = (float)x;
    return RG_OK;
}

static rg_status spec_done(spec_opts *o, const char *valid) {
    for (int k = 0; k < o->n; k++)
        if (!o->used[k])
            return rg_fail(RG_ERR_ARG, "unknown option '%s' for model %s: valid options are %s",
                           o->key[k], o->model, valid);
    return RG_OK;
}

/* ---- mlp: input -> flatten -> depth x (dense(width) -> act [-> dropout]) -> dense(classes) */

static rg_status build_mlp(spec_opts *o, rg_model *m, int c, int h, int w, int classes) {
    int depth, width;
    float dropout = 0;
    rg_act act = RG_ACT_RELU;
    rg_init init = RG_INIT(RG_INIT_HE_NORMAL);
    const char *s;
    rg_status st;
    if ((st = spec_int(o, "depth", 2, 0, 1000, &depth)) ||
        (st = spec_int(o, "width", 256, 1, 1 << 16, &width)) ||
        (st = spec_float(o, "dropout", 0.0f, 0.0f, 1.0f, &dropout)))
        return st;
    if ((s = spec_find(o, "act")) && (st = rg_act_parse(s, &act))) return st;
    if ((s = spec_find(o, "init")) && (st = rg_init_parse(s, &init))) return st;
    if ((st = spec_done(o, "depth, width, act, init, dropout"))) return st;
    rg_graph *g = m->graph;
    m->input = rg_input(g, "input", 3, (int[]){c, h, w});
    rg_node x = rg_flatten(g, m->input);
    for (int i = 0; i < depth; i++) {
        x = rg_activation(g, rg_dense(g, x, width, init), act);
        if (dropout > 0) x = rg_dropout(g, x, dropout);
    }
    /* The classifier keeps the hidden layers' initialiser, as a plain PyTorch/Keras MLP does. */
    m->logits = rg_dense(g, x, classes, init);
    return RG_OK;
}

typedef struct zoo_entry {
    const char *name;
    rg_status (*build)(spec_opts *o, rg_model *m, int c, int h, int w, int classes);
} zoo_entry;

static const zoo_entry zoo[] = {
    {"mlp", build_mlp},
};

rg_status rg_model_build(const char *spec, int c, int h, int w, int classes, rg_loss_kind loss,
                         float label_smoothing, uint64_t seed, rg_model *out) {
    memset(out, 0, sizeof *out);
    out->input = out->logits = out->loss = RG_NONE;
    spec_opts o;
    rg_status s = spec_parse(spec, &o);
    if (s) return s;
    if (c < 1 || h < 1 || w < 1) return rg_fail(RG_ERR_SHAPE, "input shape %dx%dx%d is empty", c, h, w);
    if (classes < 2) return rg_fail(RG_ERR_ARG, "a classifier needs at least 2 classes, got %d", classes);
    const zoo_entry *e = NULL;
    for (size_t k = 0; k < sizeof zoo / sizeof *zoo; k++)
        if (strcmp(o.model, zoo[k].name) == 0) e = &zoo[k];
    if (!e) return rg_fail(RG_ERR_ARG, "unknown model '%s': available: mlp", o.model);
    snprintf(out->spec, sizeof out->spec, "%s", spec);
    if (!(out->graph = rg_graph_create(seed))) return RG_ERR_MEMORY;
    if ((s = e->build(&o, out, c, h, w, classes))) {
        rg_model_free(out);
        return s;
    }
    out->loss = loss == RG_LOSS_MSE ? rg_mse(out->graph, rg_softmax(out->graph, out->logits), RG_NONE)
                                    : rg_softmax_cross_entropy(out->graph, out->logits, label_smoothing);
    if (out->graph->error) {
        s = rg_fail(out->graph->error, "%s", out->graph->error_msg);
        rg_model_free(out);
    }
    return s;
}

void rg_model_free(rg_model *m) {
    if (!m) return;
    rg_graph_free(m->graph);
    m->graph = NULL;
}
