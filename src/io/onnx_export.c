/*
 * onnx_export.c — a model written as ONNX (opset 13) for deployment: the inference graph
 * from the input to the logits (batch norm in inference form, dropout an Identity, losses
 * left out), a dynamic batch dimension, the weights as initializers named
 * LAYER.weight/bias/running_mean/running_var (so that regrad's importer gives back the same
 * layer names), and metadata.  Each regrad op becomes the ONNX node of the same function:
 * dense -> Gemm, conv2d -> Conv with its padding as pads (Keras's "same" puts the extra
 * row at the end), batch_norm -> BatchNormalization, the activations (gelu as its erf
 * form: opset 13 has no Gelu), pools, global average pool -> GlobalAveragePool + Flatten,
 * zero_pad2d -> Pad, concat -> Concat, flatten_hwc -> Transpose + Flatten.
 */
#include "../ops/ops.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Everything the message points at is allocated here and freed at the end (the message
 * itself is never freed through protobuf-c, which would free string literals too). */
typedef struct exporter {
    const rg_graph *g;
    void **owned;
    size_t n_owned, cap_owned;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    bool failed;
} exporter;

static void *own(exporter *e, void *p) {
    if (!p || e->n_owned == e->cap_owned) {
        void **o = p ? realloc(e->owned, (e->cap_owned = e->cap_owned ? 2 * e->cap_owned : 256) * sizeof *o) : NULL;
        if (!o) {
            free(p);
            e->failed = true;
            return NULL;
        }
        e->owned = o;
    }
    e->owned[e->n_owned++] = p;
    return p;
}

static void *alloc(exporter *e, size_t bytes) { return own(e, calloc(1, bytes ? bytes : 1)); }

static char *text(exporter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *text(exporter *e, const char *fmt, ...) {
    char buf[RG_NAME_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return own(e, strdup(buf));
}

static bool push(exporter *e, void ***list, size_t *n, size_t *cap, void *item) {
    if (!item) return false;
    if (*n == *cap) {
        void **l = realloc(*list, (*cap = *cap ? 2 * *cap : 64) * sizeof *l);
        if (!l) return e->failed = true, false;
        *list = l;
    }
    (*list)[(*n)++] = item;
    return true;
}

/* A node op(inputs) -> output, appended. */
static Onnx__NodeProto *node(exporter *e, const char *op, const char *name, int n_in, const char **in,
                             const char *out) {
    Onnx__NodeProto *p = alloc(e, sizeof *p);
    char **inputs = alloc(e, (size_t)n_in * sizeof *inputs), **outputs = alloc(e, sizeof *outputs);
    if (!p || !inputs || !outputs) return NULL;
    onnx__node_proto__init(p);
    p->op_type = (char *)op, p->name = text(e, "%s", name);
    for (int i = 0; i < n_in; i++) inputs[i] = text(e, "%s", in[i]);
    outputs[0] = text(e, "%s", out);
    p->input = inputs, p->n_input = (size_t)n_in, p->output = outputs, p->n_output = 1;
    return push(e, (void ***)&e->nodes, &e->n_nodes, &e->cap_nodes, p) ? p : NULL;
}

static Onnx__AttributeProto *attribute(exporter *e, Onnx__NodeProto *n, const char *name) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = alloc(e, sizeof *a), **list = alloc(e, (n->n_attribute + 1) * sizeof *list);
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    if (n->n_attribute) memcpy(list, n->attribute, n->n_attribute * sizeof *list);
    list[n->n_attribute++] = a, n->attribute = list;
    return a;
}

static void attr_int(exporter *e, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attribute(e, n, name);
    if (a) a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, a->has_i = 1, a->i = v;
}

static void attr_float(exporter *e, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attribute(e, n, name);
    if (a) a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, a->has_f = 1, a->f = v;
}

static void attr_ints(exporter *e, Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
    Onnx__AttributeProto *a = attribute(e, n, name);
    int64_t *ints = alloc(e, (size_t)count * sizeof *ints);
    if (!a || !ints) return;
    memcpy(ints, v, (size_t)count * sizeof *ints);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, a->ints = ints, a->n_ints = (size_t)count;
}

/* An initializer: float values (copied) or int64 ones. */
static void initializer(exporter *e, const char *name, int ndim, const int *dims, const float *f,
                        const int64_t *ints) {
    Onnx__TensorProto *t = alloc(e, sizeof *t);
    int64_t *d = alloc(e, (size_t)(ndim ? ndim : 1) * sizeof *d);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) count *= (size_t)dims[i];
    void *data = alloc(e, count * (f ? sizeof(float) : sizeof(int64_t)));
    if (!t || !d || !data) return;
    onnx__tensor_proto__init(t);
    for (int i = 0; i < ndim; i++) d[i] = dims[i];
    t->name = text(e, "%s", name), t->dims = d, t->n_dims = (size_t)ndim, t->has_data_type = 1;
    t->data_type = f ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    memcpy(data, f ? (const void *)f : (const void *)ints, count * (f ? sizeof(float) : sizeof(int64_t)));
    t->has_raw_data = 1, t->raw_data.data = data, t->raw_data.len = count * (f ? sizeof(float) : sizeof(int64_t));
    push(e, (void ***)&e->inits, &e->n_inits, &e->cap_inits, t);
}

/* Node n's parameter k as the initializer LAYER.<onnx role>. */
static const char *weight(exporter *e, const rg_node_impl *n, int k, const char *role) {
    const rg_param_impl *p = &e->g->params[n->first_param + k];
    const float *v = (p->state ? e->g->state_buf : e->g->param_buf) + p->offset;
    char *name = text(e, "%s.%s", n->name, role);
    if (name) initializer(e, name, p->ndim, p->shape, rg_host(e->g, v, p->size), NULL);
    return name;
}

static const char *in_name(const exporter *e, const rg_node_impl *n, int k) { return e->g->nodes[n->inputs[k]].name; }

/* The ONNX nodes of regrad node n (its output named after it). */
static rg_status export_node(exporter *e, const rg_node_impl *n) {
    const char *x = n->n_inputs ? in_name(e, n, 0) : NULL, *y = n->name;
    switch (n->op) {
    case RG_OP_DENSE: {
        const char *in[3] = {x, weight(e, n, 0, "weight"), weight(e, n, 1, "bias")};
        attr_int(e, node(e, "Gemm", y, 3, in, y), "transB", 1);
        break;
    }
    case RG_OP_CONV2D: {
        int groups = 1;
        const rg_conv_geom *q = rg_conv_geometry(n, &groups);
        const conv_attr *a = n->attr;
        /* pads from the geometry: its own padding and that of a zero padding folded into it
         * (its input is then the unpadded tensor) */
        const int k = a->kernel;
        int p[4];
        rg_conv_pads(q, p);
        const int64_t pads[4] = {p[0], p[1], p[2], p[3]};
        const char *in[3] = {x, weight(e, n, 0, "weight"), n->n_params > 1 ? weight(e, n, 1, "bias") : NULL};
        Onnx__NodeProto *c = node(e, "Conv", y, n->n_params > 1 ? 3 : 2, in, y);
        attr_ints(e, c, "kernel_shape", 2, (int64_t[]){k, k});
        attr_ints(e, c, "strides", 2, (int64_t[]){q->stride, q->stride});
        attr_ints(e, c, "dilations", 2, (int64_t[]){q->dilation, q->dilation});
        attr_ints(e, c, "pads", 4, pads);
        attr_int(e, c, "group", groups);
        break;
    }
    case RG_OP_BATCH_NORM: {
        const bn_attr *a = n->attr;
        const char *in[5] = {x, weight(e, n, 0, "weight"), weight(e, n, 1, "bias"),
                             weight(e, n, 2, "running_mean"), weight(e, n, 3, "running_var")};
        Onnx__NodeProto *b = node(e, "BatchNormalization", y, 5, in, y);
        attr_float(e, b, "epsilon", a->eps);
        attr_float(e, b, "momentum", 1.0f - a->momentum);
        break;
    }
    case RG_OP_ACTIVATION: {
        const rg_act act = *(const rg_act *)n->attr;
        static const char *const ops[RG_ACT_COUNT] = {
            [RG_ACT_LINEAR] = "Identity", [RG_ACT_RELU] = "Relu", [RG_ACT_LEAKY_RELU] = "LeakyRelu",
            [RG_ACT_ELU] = "Elu", [RG_ACT_SIGMOID] = "Sigmoid", [RG_ACT_TANH] = "Tanh", [RG_ACT_SOFTPLUS] = "Softplus"};
        if (act != RG_ACT_GELU) {
            Onnx__NodeProto *a = node(e, ops[act], y, 1, &x, y);
            if (act == RG_ACT_LEAKY_RELU) attr_float(e, a, "alpha", 0.01f);
            if (act == RG_ACT_ELU) attr_float(e, a, "alpha", 1.0f);
            break;
        }
        /* 0.5 x (1 + erf(x / sqrt 2)) */
        const char *c_sqrt2 = text(e, "%s.sqrt2", y), *c_one = text(e, "%s.one", y), *c_half = text(e, "%s.half", y);
        initializer(e, c_sqrt2, 0, NULL, (const float[]){(float)M_SQRT2}, NULL);
        initializer(e, c_one, 0, NULL, (const float[]){1.0f}, NULL);
        initializer(e, c_half, 0, NULL, (const float[]){0.5f}, NULL);
        const char *t1 = text(e, "%s/div", y), *t2 = text(e, "%s/erf", y), *t3 = text(e, "%s/add", y),
                   *t4 = text(e, "%s/mul", y);
        node(e, "Div", t1, 2, (const char *[]){x, c_sqrt2}, t1);
        node(e, "Erf", t2, 1, &t1, t2);
        node(e, "Add", t3, 2, (const char *[]){t2, c_one}, t3);
        node(e, "Mul", t4, 2, (const char *[]){x, t3}, t4);
        node(e, "Mul", y, 2, (const char *[]){t4, c_half}, y);
        break;
    }
    case RG_OP_SOFTMAX: attr_int(e, node(e, "Softmax", y, 1, &x, y), "axis", -1); break;
    case RG_OP_DROPOUT: node(e, "Identity", y, 1, &x, y); break; /* inference */
    case RG_OP_ADD: node(e, "Add", y, 2, (const char *[]){x, in_name(e, n, 1)}, y); break;
    case RG_OP_FLATTEN: attr_int(e, node(e, "Flatten", y, 1, &x, y), "axis", 1); break;
    case RG_OP_FLATTEN_HWC: {
        const char *t = text(e, "%s/nhwc", y);
        attr_ints(e, node(e, "Transpose", t, 1, &x, t), "perm", 4, (int64_t[]){0, 2, 3, 1});
        attr_int(e, node(e, "Flatten", y, 1, &t, y), "axis", 1);
        break;
    }
    case RG_OP_MAX_POOL:
    case RG_OP_AVG_POOL: {
        const pool_attr *a = n->attr;
        int pad = a->pad;
        if (a->zero_padded) { /* ONNX's MaxPool pads with -inf: the zero padding folded in goes first */
            const char *pads = text(e, "%s/pad.pads", y), *t = text(e, "%s/pad", y);
            initializer(e, pads, 1, (const int[]){8}, NULL, (const int64_t[]){0, 0, pad, pad, 0, 0, pad, pad});
            node(e, "Pad", t, 2, (const char *[]){x, pads}, t);
            x = t, pad = 0;
        }
        Onnx__NodeProto *p = node(e, n->op == RG_OP_MAX_POOL ? "MaxPool" : "AveragePool", y, 1, &x, y);
        attr_ints(e, p, "kernel_shape", 2, (int64_t[]){a->kernel, a->kernel});
        attr_ints(e, p, "strides", 2, (int64_t[]){a->stride, a->stride});
        attr_ints(e, p, "pads", 4, (int64_t[]){pad, pad, pad, pad});
        if (n->op == RG_OP_AVG_POOL) attr_int(e, p, "count_include_pad", 1);
        break;
    }
    case RG_OP_GLOBAL_AVG_POOL: {
        const char *t = text(e, "%s/pool", y);
        node(e, "GlobalAveragePool", t, 1, &x, t);
        attr_int(e, node(e, "Flatten", y, 1, &t, y), "axis", 1);
        break;
    }
    case RG_OP_ZERO_PAD: {
        const int *p = rg_zero_pad_amounts(n); /* top, bottom, left, right */
        const char *pads = text(e, "%s.pads", y);
        initializer(e, pads, 1, (const int[]){8}, NULL, (const int64_t[]){0, 0, p[0], p[2], 0, 0, p[1], p[3]});
        node(e, "Pad", y, 2, (const char *[]){x, pads}, y);
        break;
    }
    case RG_OP_CONCAT: {
        const char *in[RG_MAX_INPUTS];
        for (int k = 0; k < n->n_inputs; k++) in[k] = in_name(e, n, k);
        attr_int(e, node(e, "Concat", y, n->n_inputs, in, y), "axis", 1);
        break;
    }
    default:
        return rg_fail(RG_ERR_ARG, "export to ONNX: layer '%s' (%s) has no ONNX form", n->name,
                       rg_op_table[n->op]->name);
    }
    return e->failed ? rg_fail(RG_ERR_MEMORY, "export to ONNX: out of memory") : RG_OK;
}

/* A value's type: float32 of (batch, shape...). */
static Onnx__ValueInfoProto *value_info(exporter *e, const rg_node_impl *n) {
    Onnx__ValueInfoProto *v = alloc(e, sizeof *v);
    Onnx__TypeProto *t = alloc(e, sizeof *t);
    Onnx__TypeProto__Tensor *tt = alloc(e, sizeof *tt);
    Onnx__TensorShapeProto *sh = alloc(e, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = alloc(e, (size_t)(n->ndim + 1) * sizeof *dims);
    if (!v || !t || !tt || !sh || !dims) return NULL;
    onnx__value_info_proto__init(v), onnx__type_proto__init(t), onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int d = 0; d <= n->ndim; d++) {
        if (!(dims[d] = alloc(e, sizeof *dims[d]))) return NULL;
        onnx__tensor_shape_proto__dimension__init(dims[d]);
        if (d == 0) dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, dims[d]->dim_param = "batch";
        else dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, dims[d]->dim_value = n->shape[d - 1];
    }
    sh->dim = dims, sh->n_dim = (size_t)n->ndim + 1;
    tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    v->name = (char *)n->name, v->type = t;
    return v;
}

/* The nodes from the input to `to`, marked in keep. */
static void reach(const rg_graph *g, int to, bool *keep) {
    if (keep[to]) return;
    keep[to] = true;
    for (int k = 0; k < g->nodes[to].n_inputs; k++) reach(g, g->nodes[to].inputs[k], keep);
}

rg_status rg_onnx_save(const rg_model *m, const char *path, const rg_meta *meta) {
    const rg_graph *g = m->graph;
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before exporting it");
    exporter e = {.g = g};
    bool *keep = calloc((size_t)g->n_nodes + 1, sizeof *keep);
    rg_status s = keep ? RG_OK : rg_fail(RG_ERR_MEMORY, "out of memory");
    if (!s) reach(g, m->logits, keep);
    for (int i = 0; !s && i < g->n_nodes; i++)
        if (keep[i] && g->nodes[i].op != RG_OP_INPUT) s = export_node(&e, &g->nodes[i]);
    if (!s && !keep[m->input]) s = rg_fail(RG_ERR_ARG, "export to ONNX: the logits do not depend on the input");
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[1] = {&opset};
    Onnx__ValueInfoProto *in = s ? NULL : value_info(&e, &g->nodes[m->input]);
    Onnx__ValueInfoProto *out = s ? NULL : value_info(&e, &g->nodes[m->logits]);
    Onnx__StringStringEntryProto props[RG_META_MAX], *prop[RG_META_MAX];
    if (!s && (!in || !out || e.failed)) s = rg_fail(RG_ERR_MEMORY, "export to ONNX: out of memory");
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!s) {
        opset.domain = "", opset.has_version = 1, opset.version = 13;
        graph.name = "regrad", graph.node = e.nodes, graph.n_node = e.n_nodes;
        graph.initializer = e.inits, graph.n_initializer = e.n_inits;
        graph.input = &in, graph.n_input = 1, graph.output = &out, graph.n_output = 1;
        model.has_ir_version = 1, model.ir_version = 8, model.opset_import = opsets, model.n_opset_import = 1;
        model.producer_name = "regrad", model.producer_version = RG_VERSION, model.graph = &graph;
        for (int i = 0; meta && i < meta->n; i++) {
            onnx__string_string_entry_proto__init(&props[i]);
            props[i].key = (char *)meta->key[i], props[i].value = (char *)meta->value[i], prop[i] = &props[i];
        }
        model.metadata_props = prop, model.n_metadata_props = meta ? (size_t)meta->n : 0;
        len = onnx__model_proto__get_packed_size(&model);
        if (!(buf = malloc(len ? len : 1))) s = rg_fail(RG_ERR_MEMORY, "export to ONNX: out of memory");
        else onnx__model_proto__pack(&model, buf);
    }
    if (!s) { /* atomically: a temporary file renamed over the target */
        const size_t n = strlen(path) + 32;
        char *tmp = malloc(n);
        FILE *fp = tmp ? (snprintf(tmp, n, "%s.tmp-%d", path, (int)getpid()), fopen(tmp, "wb")) : NULL;
        const bool ok = fp && fwrite(buf, 1, len, fp) == len;
        if (fp && fclose(fp) != 0) fp = NULL;
        if (!ok || !fp || rename(tmp, path) != 0) {
            if (tmp) unlink(tmp);
            s = rg_fail(RG_ERR_IO, "cannot write '%s' (check the folder exists and is writable)", path);
        }
        free(tmp);
    }
    free(buf), free(keep), free(e.nodes), free(e.inits);
    for (size_t i = 0; i < e.n_owned; i++) free(e.owned[i]);
    free(e.owned);
    return s;
}
