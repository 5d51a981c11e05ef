/*
 * keras_model.c — a Keras model's JSON (model.to_json(), a .keras archive's config.json, a
 * whole-model .h5's model_config) built as a regrad graph under Keras's layer names, and
 * Keras's model.summary() table of it.
 *
 * Both envelopes are read: Keras 2 (layer entries {class_name, config, name, inbound_nodes}
 * with inbound nodes as lists [[name, node, tensor, kwargs], ...]) and Keras 3 (inbound
 * nodes as {"args": [...], "kwargs": {}} holding __keras_tensor__ objects whose
 * keras_history names the layer); Sequential (a bare list in Keras <= 2.1, else
 * config.layers) and Functional ("Model" in old files).
 *
 * Keras is channels_last, regrad NCHW: an (H, W, C) tensor is regrad's (C, H, W), a
 * Flatten of one is regrad's channels-last flatten (so the Dense kernel after it applies as
 * Keras stored it), and batch norm and concatenation take the channel axis.  Each layer
 * becomes one regrad node of its name; a Conv2D or Dense with an activation adds the
 * activation as NAME_act.  A softmax on the output is left to the loss (the logits are its
 * input).  trainable: false in a layer's config freezes it.  When the caller asks for a
 * number of classes other than the output Dense's units, that Dense is built with the
 * caller's (a new head, as classes=N does for the zoo).
 *
 * Anything regrad cannot build exactly (a layer class, an option value, a shape) stops the
 * build with one line naming the file, the layer, its class and the option.
 */
#include "../internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 100000

/* One Keras layer as the JSON gives it, and what it became. */
typedef struct klayer {
    const char *name, *cls;
    const cJSON *cfg;
    int n_in;
    int in[RG_MAX_INPUTS]; /* indices of the layers it reads */
    rg_node out;           /* its output in the graph */
    int first_node, end_node; /* the graph nodes it made: [first, end) */
} klayer;

typedef struct kmodel {
    const char *path;
    cJSON *root;
    const char *name; /* the model's */
    bool sequential;
    klayer *layers;
    int n, output;
    const rg_model_opts *opts;
    rg_graph *g;
    rg_node input;
    cJSON *implicit; /* a Sequential's InputLayer config, when it has none */
    char implicit_name[RG_NAME_MAX];
} kmodel;

static const char *const layer_classes[] = {
    "InputLayer", "Dense", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "Activation",
    "ReLU", "LeakyReLU", "ELU", "Softmax", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "Flatten", "Dropout",
    "Add", "Concatenate"};

static rg_status layer_fail(const kmodel *k, const klayer *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rg_status layer_fail(const kmodel *k, const klayer *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const rg_status s = rg_fail_in(k->path, "layer", l->name, l->cls, fmt, ap);
    va_end(ap);
    return s;
}

/* ---------------------------------------------------------------- config values */

static const cJSON *item(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bool is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* An integer option (absent: dflt); false when it is there and not an integer in range. */
static bool opt_int(const cJSON *cfg, const char *key, int dflt, int lo, int hi, int *out) {
    const cJSON *v = item(cfg, key);
    if (is_null(v)) return *out = dflt, true;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return false;
    *out = (int)v->valuedouble;
    return true;
}

/* An (a, b) option given as [a, b] or one integer for both (absent: dflt, dflt). */
static bool opt_pair(const cJSON *cfg, const char *key, int dflt, int lo, int hi, int out[2]) {
    const cJSON *v = item(cfg, key);
    if (is_null(v)) return out[0] = out[1] = dflt, true;
    if (cJSON_IsNumber(v)) return opt_int(cfg, key, dflt, lo, hi, out) && (out[1] = out[0], true);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return false;
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < lo ||
            e->valuedouble > hi)
            return false;
        out[i] = (int)e->valuedouble;
    }
    return true;
}

static const char *opt_str(const cJSON *cfg, const char *key, const char *dflt) {
    const cJSON *v = item(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : is_null(v) ? dflt : NULL;
}

/* A boolean option: 1, 0, or -1 when it is not a boolean. */
static int opt_bool(const cJSON *cfg, const char *key, bool dflt) {
    const cJSON *v = item(cfg, key);
    return is_null(v) ? dflt : cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

static bool opt_num(const cJSON *cfg, const char *key, double dflt, double *out) {
    const cJSON *v = item(cfg, key);
    *out = is_null(v) ? dflt : cJSON_IsNumber(v) ? v->valuedouble : NAN;
    return isfinite(*out);
}

/* ---------------------------------------------------------------- the layer list */

/* The layer called `name`, or -1. */
static int layer_index(const kmodel *k, const char *name) {
    for (int i = 0; i < k->n; i++)
        if (strcmp(k->layers[i].name, name) == 0) return i;
    return -1;
}

static rg_status add_inbound(kmodel *k, klayer *l, const char *from) {
    const int j = from ? layer_index(k, from) : -1;
    if (j < 0)
        return layer_fail(k, l, "its input '%s' is not a layer before it", from ? from : "?");
    if (l->n_in == RG_MAX_INPUTS) return layer_fail(k, l, "more than %d inputs", RG_MAX_INPUTS);
    l->in[l->n_in++] = j;
    return RG_OK;
}

/* The inputs of a Keras 3 call's tensors: a __keras_tensor__, or a list of them. */
static rg_status k3_tensors(kmodel *k, klayer *l, const cJSON *t) {
    if (cJSON_IsArray(t)) {
        rg_status s = RG_OK;
        for (const cJSON *e = t->child; e && !s; e = e->next) s = k3_tensors(k, l, e);
        return s;
    }
    const cJSON *history = item(item(t, "config"), "keras_history");
    if (!cJSON_IsArray(history) || cJSON_GetArraySize(history) < 1)
        return layer_fail(k, l, "an input that is not a Keras tensor (no keras_history)");
    const cJSON *node = cJSON_GetArrayItem(history, 1);
    if (cJSON_IsNumber(node) && node->valueint != 0)
        return layer_fail(k, l, "reads a shared layer's call %d: regrad has no shared layers", node->valueint);
    return add_inbound(k, l, cJSON_GetStringValue(cJSON_GetArrayItem(history, 0)));
}

/* A Functional layer's inbound_nodes: none (an input), or one call, Keras 2 or 3 form. */
static rg_status functional_inputs(kmodel *k, klayer *l, const cJSON *entry) {
    const cJSON *nodes = item(entry, "inbound_nodes");
    if (is_null(nodes)) return RG_OK;
    if (!cJSON_IsArray(nodes)) return layer_fail(k, l, "inbound_nodes is not a list");
    const int calls = cJSON_GetArraySize(nodes);
    if (calls > 1)
        return layer_fail(k, l, "called %d times (shared weights): regrad has no shared layers", calls);
    const cJSON *call = cJSON_GetArrayItem(nodes, 0);
    if (!call) return RG_OK;
    if (cJSON_IsObject(call)) return k3_tensors(k, l, item(call, "args"));
    if (!cJSON_IsArray(call)) return layer_fail(k, l, "an inbound node that is not a list");
    rg_status s = RG_OK;
    for (const cJSON *t = call->child; t && !s; t = t->next) {
        const cJSON *node = cJSON_GetArrayItem(t, 1);
        if (cJSON_IsNumber(node) && node->valueint != 0)
            return layer_fail(k, l, "reads a shared layer's call %d: regrad has no shared layers",
                              node->valueint);
        s = add_inbound(k, l, cJSON_GetStringValue(cJSON_GetArrayItem(t, 0)));
    }
    return s;
}

/* The name of the model's only output layer (output_layers: [[name, 0, 0]] in Keras 2,
 * [name, 0, 0] in Keras 3). */
static const char *output_name(const cJSON *cfg) {
    const cJSON *o = item(cfg, "output_layers");
    if (cJSON_IsArray(o) && cJSON_IsArray(o->child)) {
        if (cJSON_GetArraySize(o) != 1) return NULL;
        o = o->child;
    }
    return cJSON_GetStringValue(cJSON_GetArrayItem(o, 0));
}

/* A Sequential model without an InputLayer: one made from the first layer's
 * batch_input_shape (or the model's build_input_shape), named as Keras 2 names it. */
static rg_status implicit_input(kmodel *k, const cJSON *cfg, const cJSON *first) {
    const cJSON *shape = item(item(first, "config"), "batch_input_shape");
    if (!shape) shape = item(cfg, "build_input_shape");
    if (!cJSON_IsArray(shape))
        return rg_fail(RG_ERR_FORMAT, "%s: a Sequential model without an input shape (no "
                                      "InputLayer, batch_input_shape or build_input_shape)", k->path);
    if (!(k->implicit = cJSON_CreateObject()) ||
        !cJSON_AddItemReferenceToObject(k->implicit, "batch_input_shape", (cJSON *)shape))
        return rg_fail(RG_ERR_MEMORY, "%s: out of memory", k->path);
    const char *first_name = cJSON_GetStringValue(item(item(first, "config"), "name"));
    snprintf(k->implicit_name, sizeof k->implicit_name, "%.*s_input", RG_NAME_MAX - 16,
             first_name ? first_name : "sequential");
    k->layers[0] = (klayer){.name = k->implicit_name, .cls = "InputLayer", .cfg = k->implicit};
    k->n = 1;
    return RG_OK;
}

static rg_status read_layers(kmodel *k) {
    const cJSON *cls = item(k->root, "class_name"), *cfg = item(k->root, "config");
    const char *c = cJSON_GetStringValue(cls);
    if (!c) return rg_fail(RG_ERR_FORMAT, "%s: not a Keras model JSON (no class_name)", k->path);
    k->sequential = strcmp(c, "Sequential") == 0;
    if (!k->sequential && strcmp(c, "Functional") != 0 && strcmp(c, "Model") != 0)
        return rg_fail(RG_ERR_FORMAT, "%s: a Keras '%s', not a model regrad builds (Sequential or "
                                      "Functional)", k->path, c);
    const cJSON *list = k->sequential && cJSON_IsArray(cfg) ? cfg : item(cfg, "layers");
    k->name = opt_str(cfg, "name", NULL);
    if (!k->name) k->name = k->sequential ? "sequential" : "model";
    const int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n < 1 || n > MAX_LAYERS)
        return rg_fail(RG_ERR_FORMAT, "%s: a model with no list of layers", k->path);
    if (!(k->layers = calloc((size_t)n + 1, sizeof *k->layers))) /* + an implicit input */
        return rg_fail(RG_ERR_MEMORY, "%s: out of memory", k->path);
    rg_status s = RG_OK;
    if (k->sequential && strcmp(cJSON_GetStringValue(item(list->child, "class_name")) ?: "", "InputLayer") != 0)
        if ((s = implicit_input(k, cfg, list->child))) return s;
    for (const cJSON *e = list->child; e && !s; e = e->next) {
        klayer *l = &k->layers[k->n];
        l->cls = cJSON_GetStringValue(item(e, "class_name"));
        l->cfg = item(e, "config");
        l->name = cJSON_GetStringValue(item(e, "name"));
        if (!l->name) l->name = cJSON_GetStringValue(item(l->cfg, "name"));
        if (!l->cls || !l->name || !cJSON_IsObject(l->cfg))
            return rg_fail(RG_ERR_FORMAT, "%s: layer %d has no class_name, name or config", k->path, k->n);
        if (strlen(l->name) > RG_NAME_MAX - 8 || !*l->name)
            return rg_fail(RG_ERR_FORMAT, "%s: layer %d's name is empty or over %d bytes", k->path,
                           k->n, RG_NAME_MAX - 8);
        if (layer_index(k, l->name) >= 0)
            return rg_fail(RG_ERR_FORMAT, "%s: two layers named '%s'", k->path, l->name);
        if (rg_name_index(layer_classes, RG_COUNT_OF(layer_classes), l->cls) < 0) {
            char list_text[512];
            rg_name_list(layer_classes, RG_COUNT_OF(layer_classes), list_text, sizeof list_text);
            return layer_fail(k, l, "regrad has no %s layer (it builds %s)", l->cls, list_text);
        }
        k->n++;
        if (!k->sequential) s = functional_inputs(k, l, e);
        else if (k->n > 1) l->n_in = -1; /* the one before */
    }
    if (s) return s;
    if (k->sequential) {
        k->output = k->n - 1;
        return RG_OK;
    }
    const char *out = output_name(cfg);
    if (!out || (k->output = layer_index(k, out)) < 0)
        return rg_fail(RG_ERR_FORMAT, "%s: the model's output_layers name no layer, or several "
                                      "(regrad builds one output)", k->path);
    return RG_OK;
}

/* ---------------------------------------------------------------- building */

static rg_node in_node(const kmodel *k, const klayer *l, int i) { return k->layers[l->in[i]].out; }

static const rg_node_impl *node_of(const kmodel *k, rg_node x) { return &k->g->nodes[x]; }

/* Keras's text for an activation of this layer into act; softmax sets *softmax instead. */
static rg_status activation_of(const kmodel *k, const klayer *l, const char *name, rg_act *act,
                               bool *softmax) {
    *softmax = false;
    if (!name) return layer_fail(k, l, "activation is not a name (a custom object?)");
    if (strcmp(name, "softmax") == 0) {
        if (l != &k->layers[k->output])
            return layer_fail(k, l, "softmax inside the network: regrad applies softmax only on "
                                    "the output, in the loss");
        *softmax = true;
        return RG_OK;
    }
    static const char *const usable[] = {"linear", "relu", "elu", "gelu", "sigmoid", "tanh", "softplus"};
    if (rg_name_index(usable, RG_COUNT_OF(usable), name) < 0 || rg_act_parse(name, act)) {
        char list_text[160];
        rg_name_list(usable, RG_COUNT_OF(usable), list_text, sizeof list_text);
        return layer_fail(k, l, "activation '%s' is not in regrad (use %s, or softmax on the "
                                "output)", name, list_text);
    }
    return RG_OK;
}

/* A layer's activation (its config's "activation", or `name`) after x, as NAME_act. */
static rg_node with_activation(kmodel *k, klayer *l, rg_node x, const char *name, rg_status *s) {
    rg_act act = RG_ACT_LINEAR;
    bool softmax;
    if ((*s = activation_of(k, l, name ? name : opt_str(l->cfg, "activation", "linear"), &act, &softmax)))
        return RG_NONE;
    if (softmax || act == RG_ACT_LINEAR) return x;
    char nm[RG_NAME_MAX];
    snprintf(nm, sizeof nm, "%s_act", l->name);
    rg_node y = rg_activation(k->g, x, act);
    rg_node_set_name(k->g, y, nm);
    return y;
}

/* Keras's initialiser of a kernel, where regrad has it (else Keras's default). */
static rg_init init_of(const cJSON *cfg) {
    static const struct { const char *keras; rg_init_kind kind; } map[] = {
        {"GlorotUniform", RG_INIT_GLOROT_UNIFORM}, {"GlorotNormal", RG_INIT_GLOROT_NORMAL},
        {"HeNormal", RG_INIT_HE_NORMAL},           {"HeUniform", RG_INIT_HE_UNIFORM},
        {"LecunNormal", RG_INIT_LECUN_NORMAL},     {"LecunUniform", RG_INIT_LECUN_UNIFORM},
        {"Zeros", RG_INIT_ZEROS},                  {"Ones", RG_INIT_ONES}};
    const char *c = cJSON_GetStringValue(item(item(cfg, "kernel_initializer"), "class_name"));
    if (!c) c = cJSON_GetStringValue(item(item(cfg, "depthwise_initializer"), "class_name"));
    for (int i = 0; c && i < RG_COUNT_OF(map); i++)
        if (strcmp(c, map[i].keras) == 0) return RG_INIT(map[i].kind);
    return RG_INIT(RG_INIT_GLOROT_UNIFORM);
}

static bool channels_last(const cJSON *cfg) {
    const char *f = opt_str(cfg, "data_format", "channels_last");
    return f && strcmp(f, "channels_last") == 0;
}

/* The channel axis of an (H, W, C) or (F) tensor as Keras numbers it, either way. */
static bool is_channel_axis(int axis, int ndim) { return axis == -1 || axis == (ndim == 3 ? 3 : 1); }

/* Whether l is the classifier: the output, or what an output softmax reads. */
static bool is_head(const kmodel *k, const klayer *l) {
    const klayer *o = &k->layers[k->output];
    if (l == o) return true;
    const int before = o->n_in == 1 ? o->in[0] : o->n_in < 0 ? k->output - 1 : -1;
    return before >= 0 && l == &k->layers[before] &&
           (strcmp(o->cls, "Softmax") == 0 ||
            (strcmp(o->cls, "Activation") == 0 && strcmp(opt_str(o->cfg, "activation", "") ?: "", "softmax") == 0));
}

static rg_node build_dense(kmodel *k, klayer *l, rg_node x, rg_status *s) {
    int units;
    if (!opt_int(l->cfg, "units", 0, 1, 1 << 24, &units) || units < 1)
        return *s = layer_fail(k, l, "units must be an integer from 1"), RG_NONE;
    if (opt_bool(l->cfg, "use_bias", true) != 1)
        return *s = layer_fail(k, l, "use_bias=false: regrad's dense layers have a bias"), RG_NONE;
    if (node_of(k, x)->ndim != 1)
        return *s = layer_fail(k, l, "a Dense on a %d-D tensor: regrad's takes a flat input (put "
                                     "Flatten or GlobalAveragePooling2D before it)", node_of(k, x)->ndim + 1),
               RG_NONE;
    if (is_head(k, l) && k->opts->classes > 0) units = k->opts->classes; /* a new head */
    rg_node y = rg_dense(k->g, x, units, init_of(l->cfg));
    rg_node_set_name(k->g, y, l->name);
    return with_activation(k, l, y, NULL, s);
}

/* Keras's padding "valid" or "same" into mode. */
static bool padding_of(const cJSON *cfg, rg_padding *mode) {
    const char *p = opt_str(cfg, "padding", "valid");
    if (p && strcmp(p, "valid") == 0) return *mode = RG_PAD_VALID, true;
    if (p && strcmp(p, "same") == 0) return *mode = RG_PAD_SAME, true;
    return false;
}

static rg_node build_conv(kmodel *k, klayer *l, rg_node x, bool depthwise, rg_status *s) {
    const rg_node_impl *in = node_of(k, x);
    if (in->ndim != 3) return *s = layer_fail(k, l, "needs an (H, W, C) input"), RG_NONE;
    int kernel[2], stride[2], dilation[2], filters = in->shape[0], groups = 1, mult = 1;
    rg_conv_opts o = rg_conv_defaults();
    if (!opt_pair(l->cfg, "kernel_size", 0, 1, 1 << 16, kernel) || kernel[0] != kernel[1] || kernel[0] < 1)
        return *s = layer_fail(k, l, "kernel_size must be square (k, k): regrad's kernels are"), RG_NONE;
    if (!opt_pair(l->cfg, "strides", 1, 1, 1 << 16, stride) || stride[0] != stride[1])
        return *s = layer_fail(k, l, "strides must be equal (s, s)"), RG_NONE;
    if (!opt_pair(l->cfg, "dilation_rate", 1, 1, 1 << 16, dilation) || dilation[0] != dilation[1])
        return *s = layer_fail(k, l, "dilation_rate must be equal (d, d)"), RG_NONE;
    if (!padding_of(l->cfg, &o.padding)) return *s = layer_fail(k, l, "padding must be valid or same"), RG_NONE;
    if (!channels_last(l->cfg)) return *s = layer_fail(k, l, "data_format must be channels_last"), RG_NONE;
    if (depthwise ? !opt_int(l->cfg, "depth_multiplier", 1, 1, 1, &mult)
                  : !opt_int(l->cfg, "filters", 0, 1, 1 << 20, &filters) ||
                        !opt_int(l->cfg, "groups", 1, 1, 1 << 20, &groups))
        return *s = layer_fail(k, l, depthwise ? "depth_multiplier must be 1"
                                               : "filters and groups must be positive integers"), RG_NONE;
    const int bias = opt_bool(l->cfg, "use_bias", true);
    if (bias < 0) return *s = layer_fail(k, l, "use_bias must be true or false"), RG_NONE;
    o.stride = stride[0], o.dilation = dilation[0], o.bias = bias, o.init = init_of(l->cfg);
    o.groups = depthwise ? in->shape[0] : groups;
    rg_node y = rg_conv2d(k->g, x, filters, kernel[0], &o);
    rg_node_set_name(k->g, y, l->name);
    return with_activation(k, l, y, NULL, s);
}

static rg_node build_batch_norm(kmodel *k, klayer *l, rg_node x, rg_status *s) {
    const cJSON *a = item(l->cfg, "axis");
    if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 1) a = a->child;
    double momentum, eps;
    const int ndim = node_of(k, x)->ndim;
    if (!cJSON_IsNumber(a) || !is_channel_axis(a->valueint, ndim))
        return *s = layer_fail(k, l, "axis must be the channel axis (-1)"), RG_NONE;
    if (opt_bool(l->cfg, "center", true) != 1 || opt_bool(l->cfg, "scale", true) != 1 ||
        opt_bool(l->cfg, "renorm", false) != 0 || !is_null(item(l->cfg, "virtual_batch_size")))
        return *s = layer_fail(k, l, "center and scale must be true, renorm false, "
                                     "virtual_batch_size unset"), RG_NONE;
    if (!opt_num(l->cfg, "momentum", 0.99, &momentum) || momentum < 0 || momentum >= 1 ||
        !opt_num(l->cfg, "epsilon", 1e-3, &eps) || eps <= 0)
        return *s = layer_fail(k, l, "momentum must lie in [0, 1) and epsilon above 0"), RG_NONE;
    rg_node y = rg_batch_norm(k->g, x, (float)(1.0 - momentum), (float)eps); /* Keras keeps momentum */
    rg_node_set_name(k->g, y, l->name);
    return y;
}

/* ReLU, LeakyReLU, ELU, Activation and Softmax layers: an activation node, or the input
 * itself for a softmax on the output. */
static rg_node build_activation_layer(kmodel *k, klayer *l, rg_node x, rg_status *s) {
    const char *name = NULL;
    double v;
    if (strcmp(l->cls, "Activation") == 0) name = opt_str(l->cfg, "activation", NULL);
    else if (strcmp(l->cls, "Softmax") == 0) {
        int axis;
        if (!opt_int(l->cfg, "axis", -1, -1, 4, &axis) || !is_channel_axis(axis, node_of(k, x)->ndim))
            return *s = layer_fail(k, l, "axis must be -1"), RG_NONE;
        name = "softmax";
    } else if (strcmp(l->cls, "ReLU") == 0) {
        if (!is_null(item(l->cfg, "max_value")) || !opt_num(l->cfg, "negative_slope", 0, &v) || v != 0 ||
            !opt_num(l->cfg, "threshold", 0, &v) || v != 0)
            return *s = layer_fail(k, l, "max_value, negative_slope and threshold must be unset "
                                         "(regrad's relu is max(x, 0))"), RG_NONE;
        name = "relu";
    } else if (strcmp(l->cls, "LeakyReLU") == 0) {
        const char *key = item(l->cfg, "negative_slope") ? "negative_slope" : "alpha";
        if (!opt_num(l->cfg, key, 0.3, &v) || fabs(v - 0.01) > 1e-7)
            return *s = layer_fail(k, l, "%s=%g: regrad's leaky relu has slope 0.01", key, v), RG_NONE;
        name = "leaky_relu";
    } else { /* ELU */
        if (!opt_num(l->cfg, "alpha", 1.0, &v) || v != 1.0)
            return *s = layer_fail(k, l, "alpha=%g: regrad's elu has alpha 1", v), RG_NONE;
        name = "elu";
    }
    if (!name) return *s = layer_fail(k, l, "activation is not a name"), RG_NONE;
    rg_act act;
    bool softmax;
    if (strcmp(name, "leaky_relu") == 0) act = RG_ACT_LEAKY_RELU, softmax = false;
    else if ((*s = activation_of(k, l, name, &act, &softmax))) return RG_NONE;
    if (softmax) return x;
    rg_node y = rg_activation(k->g, x, act);
    rg_node_set_name(k->g, y, l->name);
    return y;
}

/* Keras's "same" pooling pads (out - 1) s + k - in in total, the odd cell at the end;
 * regrad's pooling pads p on every side.  The p that gives Keras's output exactly, or -1. */
static int same_pool_pad(int in, int kernel, int stride) {
    const int out = (in + stride - 1) / stride, total = (out - 1) * stride + kernel - in;
    if (total <= 0) return (in - kernel) / stride + 1 == out ? 0 : -1;
    return total % 2 == 0 && (in + total - kernel) / stride + 1 == out ? total / 2 : -1;
}

static rg_node build_pool(kmodel *k, klayer *l, rg_node x, bool max, rg_status *s) {
    const rg_node_impl *in = node_of(k, x);
    int pool[2], stride[2];
    rg_padding mode;
    if (in->ndim != 3) return *s = layer_fail(k, l, "needs an (H, W, C) input"), RG_NONE;
    if (!opt_pair(l->cfg, "pool_size", 2, 1, 1 << 16, pool) || pool[0] != pool[1])
        return *s = layer_fail(k, l, "pool_size must be square (k, k)"), RG_NONE;
    if (!opt_pair(l->cfg, "strides", pool[0], 1, 1 << 16, stride) || stride[0] != stride[1])
        return *s = layer_fail(k, l, "strides must be equal (s, s)"), RG_NONE;
    if (!padding_of(l->cfg, &mode) || !channels_last(l->cfg))
        return *s = layer_fail(k, l, "padding must be valid or same, data_format channels_last"), RG_NONE;
    int pad = 0;
    if (mode == RG_PAD_SAME) {
        const int ph = same_pool_pad(in->shape[1], pool[0], stride[0]);
        pad = same_pool_pad(in->shape[2], pool[0], stride[0]);
        if (ph != pad || pad < 0 || (!max && pad > 0))
            return *s = layer_fail(k, l, "padding=same on a %dx%d input pads unevenly%s: use "
                                         "ZeroPadding2D and padding=valid",
                                   in->shape[1], in->shape[2], max ? "" : " (or averages over "
                                   "padding, which Keras leaves out)"), RG_NONE;
    }
    rg_node y = max ? rg_max_pool2d(k->g, x, pool[0], stride[0], pad)
                    : rg_avg_pool2d(k->g, x, pool[0], stride[0], pad);
    rg_node_set_name(k->g, y, l->name);
    return y;
}

static rg_node build_global_pool(kmodel *k, klayer *l, rg_node x, bool max, rg_status *s) {
    const rg_node_impl *in = node_of(k, x);
    if (in->ndim != 3 || !channels_last(l->cfg) || opt_bool(l->cfg, "keepdims", false) != 0)
        return *s = layer_fail(k, l, "needs an (H, W, C) input, channels_last, keepdims false"), RG_NONE;
    if (!max) {
        rg_node y = rg_global_avg_pool(k->g, x);
        rg_node_set_name(k->g, y, l->name);
        return y;
    }
    if (in->shape[1] != in->shape[2]) /* the maximum of each channel: one square window */
        return *s = layer_fail(k, l, "a %dx%d input: regrad takes the global maximum over square "
                                     "maps only", in->shape[1], in->shape[2]), RG_NONE;
    char nm[RG_NAME_MAX];
    snprintf(nm, sizeof nm, "%s_pool", l->name);
    rg_node p = rg_max_pool2d(k->g, x, in->shape[1], in->shape[1], 0);
    rg_node_set_name(k->g, p, nm);
    rg_node y = rg_flatten(k->g, p);
    rg_node_set_name(k->g, y, l->name);
    return y;
}

static rg_node build_zero_pad(kmodel *k, klayer *l, rg_node x, rg_status *s) {
    const cJSON *p = item(l->cfg, "padding");
    int tb[2], lr[2];
    if (cJSON_IsArray(p) && cJSON_IsArray(p->child) && cJSON_GetArraySize(p) == 2) {
        cJSON *wrap = cJSON_CreateObject(); /* ((t, b), (l, r)) */
        bool ok = wrap != NULL;
        for (int i = 0; ok && i < 2; i++) {
            cJSON_AddItemReferenceToObject(wrap, "p", cJSON_GetArrayItem(p, i));
            ok = opt_pair(wrap, "p", 0, 0, 1 << 16, i ? lr : tb);
            cJSON_DeleteItemFromObject(wrap, "p");
        }
        cJSON_Delete(wrap);
        if (!ok) return *s = layer_fail(k, l, "padding must be ((top, bottom), (left, right))"), RG_NONE;
    } else if (opt_pair(l->cfg, "padding", 1, 0, 1 << 16, tb)) {
        lr[0] = tb[1], lr[1] = tb[1], tb[1] = tb[0]; /* (h, w): h rows above and below, w columns each side */
    } else {
        return *s = layer_fail(k, l, "padding must be p, (h, w) or ((t, b), (l, r))"), RG_NONE;
    }
    if (node_of(k, x)->ndim != 3 || !channels_last(l->cfg))
        return *s = layer_fail(k, l, "needs an (H, W, C) input, channels_last"), RG_NONE;
    rg_node y = rg_zero_pad2d(k->g, x, tb[0], tb[1], lr[0], lr[1]);
    rg_node_set_name(k->g, y, l->name);
    return y;
}

static rg_node build_merge(kmodel *k, klayer *l, rg_status *s) {
    if (l->n_in < 2) return *s = layer_fail(k, l, "needs at least two inputs"), RG_NONE;
    rg_node xs[RG_MAX_INPUTS];
    for (int i = 0; i < l->n_in; i++) xs[i] = in_node(k, l, i);
    if (strcmp(l->cls, "Concatenate") == 0) {
        int axis;
        if (!opt_int(l->cfg, "axis", -1, -4, 4, &axis) || !is_channel_axis(axis, node_of(k, xs[0])->ndim))
            return *s = layer_fail(k, l, "axis must be the channel axis (-1)"), RG_NONE;
        rg_node y = rg_concat(k->g, l->n_in, xs);
        rg_node_set_name(k->g, y, l->name);
        return y;
    }
    rg_node y = xs[0]; /* Add: a chain of sums, the last under the layer's name */
    char nm[RG_NAME_MAX];
    for (int i = 1; i < l->n_in; i++) {
        y = rg_add(k->g, y, xs[i]);
        if (i < l->n_in - 1) snprintf(nm, sizeof nm, "%s_%d", l->name, i);
        rg_node_set_name(k->g, y, i < l->n_in - 1 ? nm : l->name);
    }
    return y;
}

/* The input shape from an InputLayer's config (or a Sequential's first layer's
 * batch_input_shape): (None, H, W, C) or (None, F), None dimensions from the caller. */
static rg_status build_input(kmodel *k, klayer *l, const cJSON *cfg) {
    const cJSON *shape = item(cfg, "batch_input_shape");
    if (!shape) shape = item(cfg, "batch_shape");
    const int n = cJSON_GetArraySize(shape);
    int dims[3] = {0, 0, 0};
    if (!cJSON_IsArray(shape) || (n != 2 && n != 4))
        return layer_fail(k, l, "an input of %d dimensions: regrad takes (None, H, W, C) images "
                                "or (None, F) vectors", n - 1);
    for (int i = 1; i < n; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!is_null(d) && (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 65536))
            return layer_fail(k, l, "input dimension %d is not a size", i);
        dims[i - 1] = is_null(d) ? 0 : (int)d->valuedouble;
    }
    const rg_model_opts *o = k->opts;
    int ndim = 1, regrad[3] = {dims[0]};
    if (n == 4) { /* (H, W, C) -> (C, H, W); the caller's H and W replace Keras's */
        ndim = 3;
        regrad[0] = dims[2], regrad[1] = o->h > 0 ? o->h : dims[0], regrad[2] = o->w > 0 ? o->w : dims[1];
        if (o->c > 0 && regrad[0] > 0 && o->c != regrad[0])
            return layer_fail(k, l, "the model takes %d channels, the data has %d (use --channels %d)",
                              regrad[0], o->c, regrad[0]);
        if (regrad[0] == 0) regrad[0] = o->c;
    } else if (regrad[0] == 0 || (o->c > 0 && o->h > 0 && o->w > 0 && (long)o->c * o->h * o->w != regrad[0])) {
        if (regrad[0] == 0) regrad[0] = o->c * o->h * o->w;
        else return layer_fail(k, l, "the model takes %d features, the data has %dx%dx%d", regrad[0], o->c, o->h, o->w);
    }
    for (int i = 0; i < ndim; i++)
        if (regrad[i] < 1)
            return rg_fail(RG_ERR_SHAPE, "%s: layer '%s' (InputLayer): the input size is not in "
                                         "the model (None): give it (--input CxHxW)", k->path, l->name);
    l->out = k->input = rg_input(k->g, l->name, ndim, regrad);
    return RG_OK;
}

static rg_node build_layer(kmodel *k, klayer *l, rg_status *s) {
    const char *c = l->cls;
    rg_node x = l->n_in > 0 ? in_node(k, l, 0) : RG_NONE;
    if (strcmp(c, "Add") == 0 || strcmp(c, "Concatenate") == 0) return build_merge(k, l, s);
    if (l->n_in != 1) return *s = layer_fail(k, l, "needs exactly one input, has %d", l->n_in), RG_NONE;
    if (strcmp(c, "Dense") == 0) return build_dense(k, l, x, s);
    if (strcmp(c, "Conv2D") == 0) return build_conv(k, l, x, false, s);
    if (strcmp(c, "DepthwiseConv2D") == 0) return build_conv(k, l, x, true, s);
    if (strcmp(c, "BatchNormalization") == 0) return build_batch_norm(k, l, x, s);
    if (strcmp(c, "MaxPooling2D") == 0) return build_pool(k, l, x, true, s);
    if (strcmp(c, "AveragePooling2D") == 0) return build_pool(k, l, x, false, s);
    if (strcmp(c, "GlobalAveragePooling2D") == 0) return build_global_pool(k, l, x, false, s);
    if (strcmp(c, "GlobalMaxPooling2D") == 0) return build_global_pool(k, l, x, true, s);
    if (strcmp(c, "ZeroPadding2D") == 0) return build_zero_pad(k, l, x, s);
    if (strcmp(c, "Flatten") == 0) {
        const rg_node_impl *in = node_of(k, x);
        const bool permute = in->ndim == 3 && in->shape[0] > 1 && in->shape[1] * in->shape[2] > 1;
        rg_node y = permute ? rg_flatten_channels_last(k->g, x) : rg_flatten(k->g, x);
        rg_node_set_name(k->g, y, l->name);
        return y;
    }
    if (strcmp(c, "Dropout") == 0) {
        double rate;
        if (!opt_num(l->cfg, "rate", 0, &rate) || rate < 0 || rate >= 1 || !is_null(item(l->cfg, "noise_shape")))
            return *s = layer_fail(k, l, "rate must lie in [0, 1), noise_shape unset"), RG_NONE;
        rg_node y = rg_dropout(k->g, x, (float)rate);
        rg_node_set_name(k->g, y, l->name);
        return y;
    }
    return build_activation_layer(k, l, x, s);
}

static rg_status build_all(kmodel *k) {
    rg_status s = RG_OK;
    for (int i = 0; i < k->n && !s; i++) {
        klayer *l = &k->layers[i];
        l->first_node = k->g->n_nodes;
        if (l->n_in < 0) l->n_in = 1, l->in[0] = i - 1; /* Sequential: the layer before */
        if (strcmp(l->cls, "InputLayer") != 0) l->out = build_layer(k, l, &s);
        else if (l->n_in > 0) return layer_fail(k, l, "an InputLayer with inputs");
        else if (k->input != RG_NONE) return layer_fail(k, l, "a second input: regrad models take one");
        else s = build_input(k, l, l->cfg);
        l->end_node = k->g->n_nodes;
        if (!s && k->g->error) s = layer_fail(k, l, "%s", k->g->error_msg);
        if (!s && opt_bool(l->cfg, "trainable", true) == 0 && l->end_node > l->first_node)
            rg_graph_set_trainable(k->g, l->name, 0);
    }
    if (!s && k->input == RG_NONE) s = rg_fail(RG_ERR_FORMAT, "%s: the model has no input layer", k->path);
    return s;
}

/* ---------------------------------------------------------------- entry points */

static void kmodel_free(kmodel *k) {
    cJSON_Delete(k->root);
    cJSON_Delete(k->implicit);
    free(k->layers);
}

/* The file's model read and built into g. */
static rg_status kmodel_build(const char *path, const rg_model_opts *opts, rg_graph *g, kmodel *k) {
    memset(k, 0, sizeof *k);
    k->path = path, k->opts = opts, k->g = g, k->input = RG_NONE;
    char *json = NULL;
    rg_status s = rg_keras_model_config(path, &json);
    if (s) return s;
    if (!(k->root = cJSON_Parse(json))) {
        const char *at = cJSON_GetErrorPtr();
        s = rg_fail(RG_ERR_FORMAT, "%s: the model JSON does not parse (near byte %td)", path,
                    at && at >= json ? at - json : (ptrdiff_t)0);
    }
    free(json);
    if (!s) s = read_layers(k);
    if (!s) s = build_all(k);
    return s;
}

rg_status rg_keras_model_build(const char *path, const rg_model_opts *opts, rg_model *m) {
    kmodel k;
    rg_status s = kmodel_build(path, opts, m->graph, &k);
    if (!s) m->input = k.input, m->logits = k.layers[k.output].out;
    kmodel_free(&k);
    return s;
}

/* A node's shape as Keras writes it: (None, H, W, C) for regrad's (C, H, W). */
static void keras_shape(const rg_node_impl *n, char *buf, size_t len) {
    if (n->ndim == 3) snprintf(buf, len, "(None, %d, %d, %d)", n->shape[1], n->shape[2], n->shape[0]);
    else snprintf(buf, len, "(None, %d)", n->shape[0]);
}

rg_status rg_keras_summary(const char *path, const rg_model_opts *opts, FILE *f) {
    const rg_model_opts none = {0};
    rg_graph *g = rg_graph_create(opts ? opts->seed : 0);
    if (!g) return rg_fail(RG_ERR_MEMORY, "out of memory");
    kmodel k;
    rg_status s = kmodel_build(path, opts ? opts : &none, g, &k);
    const char *rule = "__________________________________________________________________________________________________";
    if (!s)
        fprintf(f, "Model: \"%s\"\n%s\n %-36s %-24s %*s%s\n%s\n", k.name, rule, "Layer (type)",
                "Output Shape", k.sequential ? 0 : -12, "Param #", k.sequential ? "" : "Connected to",
                "==================================================================================================");
    size_t total = 0, trainable = 0;
    for (int i = 0; !s && i < k.n; i++) {
        const klayer *l = &k.layers[i];
        size_t count = 0;
        for (int j = l->first_node; j < l->end_node; j++)
            for (int p = 0; p < g->nodes[j].n_params; p++) {
                const rg_param_impl *pi = &g->params[g->nodes[j].first_param + p];
                count += pi->size;
                if (pi->trainable) trainable += pi->size;
            }
        total += count;
        char label[RG_NAME_MAX + 64], shape[64], num[32], from[512] = "";
        snprintf(label, sizeof label, "%s (%s)", l->name, l->cls);
        keras_shape(&g->nodes[l->out], shape, sizeof shape);
        rg_thousands(count, num, sizeof num);
        for (int j = 0; !k.sequential && j < l->n_in; j++)
            snprintf(from + strlen(from), sizeof from - strlen(from), "%s%s[0][0]", j ? ", " : "",
                     k.layers[l->in[j]].name);
        fprintf(f, " %-36s %-24s %*s%s\n", label, shape, from[0] ? -12 : 0, num, from);
    }
    if (!s) {
        char a[32], b[32], c[32];
        rg_thousands(total, a, sizeof a);
        rg_thousands(trainable, b, sizeof b);
        rg_thousands(total - trainable, c, sizeof c);
        fprintf(f, "==================================================================================================\n"
                   "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n%s\n", a, b, c, rule);
    }
    kmodel_free(&k);
    rg_graph_free(g);
    return s;
}
