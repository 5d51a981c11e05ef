/*
 * onnx.c — ONNX models (protobuf-c, from the onnx.proto Debian installs) built as regrad
 * graphs, their initializers as regrad-named weights: "onnx:FILE" for rg_model_build, and
 * rg_weights_load of a .onnx file.
 *
 * Opsets 11 to 17 of the default domain.  Each ONNX node becomes regrad nodes: Gemm, and
 * MatMul with the Add of a bias after it, a dense layer; Conv (groups, dilation, pads, also
 * asymmetric as a zero padding before a valid convolution, auto_pad); BatchNormalization
 * (inference form in the file, trained here); Relu, LeakyRelu (0.01), Elu (1), Sigmoid, Tanh,
 * Softplus, Gelu (also its erf form, x/sqrt2 -> Erf -> +1 -> *x -> *0.5, as PyTorch and
 * regrad's own export write it); MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (square maps);
 * Flatten, Reshape to (batch, -1); Add, Concat (channels); Pad (constant zeros, height and
 * width); Dropout; Identity; Constant; Softmax on the output (left to the loss).
 * Names: a layer with weights takes its weight initializer's name without ".weight"
 * ("fc1.weight": layer fc1, weights fc1.kernel, fc1.bias), so --freeze globs read as the
 * PyTorch module names; other layers take the node's name.
 *
 * Nothing in the file is trusted: protobuf-c checks every length against the buffer, and
 * each tensor's declared size is checked against the data it holds before anything is
 * allocated; external data is refused.  A node, op or attribute regrad lacks is one error
 * line naming the node, its op and the attribute.
 */
#include "../internal.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONNX_MAX_BYTES ((size_t)2 << 30) /* protobuf's own ceiling */
#define MAX_FLOATS ((size_t)1 << 31)

typedef Onnx__NodeProto onnx_node;
typedef Onnx__TensorProto onnx_tensor;

typedef struct named_value {
    const char *name;
    rg_node node;            /* a value the graph computes, or RG_NONE */
    const onnx_tensor *constant; /* or a constant: an initializer, a Constant node's value */
} named_value;

typedef struct onnx_build {
    const char *path;
    const Onnx__GraphProto *g;
    rg_graph *graph;
    const rg_model_opts *opts;
    rg_tensor_file *weights; /* when collecting the weights under regrad's names */
    named_value *values;
    size_t n_values, cap_values;
    bool *skip;  /* nodes folded into one before them (the Add after a MatMul) */
    char (*layer_names)[RG_NAME_MAX];
    size_t n_layer_names;
    rg_node input, logits;
    onnx_tensor **made;  /* constants folded here, owned */
    size_t n_made;
} onnx_build;

static rg_status node_fail(const onnx_build *b, const onnx_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rg_status node_fail(const onnx_build *b, const onnx_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const rg_status s = rg_fail_in(b->path, "node", n->name && *n->name ? n->name : n->n_output ? n->output[0] : "?",
                                   n->op_type ? n->op_type : "?", fmt, ap);
    va_end(ap);
    return s;
}

/* ---------------------------------------------------------------- values and tensors */

static named_value *find_value(const onnx_build *b, const char *name) {
    for (size_t i = b->n_values; name && i-- > 0;) /* the latest of a name */
        if (strcmp(b->values[i].name, name) == 0) return &b->values[i];
    return NULL;
}

static rg_status add_value(onnx_build *b, const char *name, rg_node node, const onnx_tensor *c) {
    if (!name) return rg_fail(RG_ERR_FORMAT, "%s: a value without a name", b->path);
    if (b->n_values == b->cap_values) {
        const size_t cap = b->cap_values ? 2 * b->cap_values : 64;
        named_value *v = realloc(b->values, cap * sizeof *v);
        if (!v) return rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
        b->values = v, b->cap_values = cap;
    }
    b->values[b->n_values++] = (named_value){name, node, c};
    return RG_OK;
}

/* Input k of n as a node the graph computes (RG_NONE after failing). */
static rg_node input_node(onnx_build *b, const onnx_node *n, size_t k, rg_status *s) {
    const named_value *v = k < n->n_input ? find_value(b, n->input[k]) : NULL;
    if (!v || v->node == RG_NONE) {
        *s = node_fail(b, n, "input %zu ('%s') is %s", k, k < n->n_input ? n->input[k] : "",
                       v ? "a constant where regrad needs a computed value" : "not made by any node before it");
        return RG_NONE;
    }
    return v->node;
}

/* Input k of n as a constant (NULL, with *s set when required, if it is none). */
static const onnx_tensor *input_constant(onnx_build *b, const onnx_node *n, size_t k, bool required,
                                         rg_status *s) {
    const named_value *v = k < n->n_input && n->input[k][0] ? find_value(b, n->input[k]) : NULL;
    if (v && v->constant) return v->constant;
    if (required) *s = node_fail(b, n, "input %zu must be a constant (an initializer)", k);
    return NULL;
}

/* A tensor's element count, checked against the data it holds (raw bytes or a typed
 * list) before anything is allocated. */
static rg_status tensor_count(const onnx_build *b, const onnx_tensor *t, int type, size_t bytes,
                              size_t listed, size_t *count) {
    const char *name = t->name ? t->name : "?";
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' keeps its data in an external file: regrad "
                                      "reads external data for initializers only", b->path, name);
    if (t->data_type != type)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' has data type %d, regrad needs %s", b->path,
                       name, t->data_type, type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? "float32" : "int64");
    size_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++)
        if (t->dims[d] < 0 || !rg_mul_size(n, (size_t)t->dims[d], &n) || n > MAX_FLOATS)
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' declares a size past 2^31 or negative", b->path, name);
    const size_t held = t->has_raw_data ? t->raw_data.len / bytes : listed;
    if ((t->has_raw_data && t->raw_data.len != n * bytes) || held != n)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' declares %zu values and holds %zu", b->path, name, n, held);
    *count = n;
    return RG_OK;
}

/* A float tensor's values into a new buffer (*count of them). */
static float *tensor_floats(const onnx_build *b, const onnx_tensor *t, size_t *count, rg_status *s) {
    if ((*s = tensor_count(b, t, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, t->n_float_data, count))) return NULL;
    float *v = malloc((*count ? *count : 1) * sizeof *v);
    if (!v) {
        *s = rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
        return NULL;
    }
    if (*count) memcpy(v, t->has_raw_data ? (const void *)t->raw_data.data : t->float_data, *count * 4);
    return v;
}

/* An int64 tensor's values (at most max of them) into out. */
static rg_status tensor_ints(const onnx_build *b, const onnx_tensor *t, int64_t *out, size_t max, size_t *count) {
    rg_status s = tensor_count(b, t, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 8, t->n_int64_data, count);
    if (!s && *count > max) s = rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' holds %zu numbers, at most %zu expected",
                                        b->path, t->name ? t->name : "?", *count, max);
    if (!s && *count) memcpy(out, t->has_raw_data ? (const void *)t->raw_data.data : t->int64_data, *count * 8);
    return s;
}

/* ---------------------------------------------------------------- attributes */

static const Onnx__AttributeProto *attr(const onnx_node *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
    return NULL;
}

static int64_t attr_int(const onnx_node *n, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

static float attr_float(const onnx_node *n, const char *name, float dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

/* A list attribute's values (at most max; absent: 0 of them). */
static size_t attr_ints(const onnx_node *n, const char *name, int64_t *out, size_t max) {
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a || a->n_ints > max) return a ? max + 1 : 0;
    if (a->n_ints) memcpy(out, a->ints, a->n_ints * sizeof *out);
    return a->n_ints;
}

static bool attr_str_is(const onnx_node *n, const char *name, const char *dflt, const char *want) {
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a || !a->has_s) return strcmp(dflt, want) == 0;
    return a->s.len == strlen(want) && memcmp(a->s.data, want, a->s.len) == 0;
}

/* A square window from kernel_shape/strides/dilations: both numbers equal (absent: dflt). */
static bool square(const onnx_node *n, const char *name, int dflt, int *out) {
    int64_t v[4];
    const size_t k = attr_ints(n, name, v, 4);
    if (k == 0) return *out = dflt, dflt > 0;
    if (k != 2 || v[0] != v[1] || v[0] < 1 || v[0] > 65536) return false;
    *out = (int)v[0];
    return true;
}


/* ---------------------------------------------------------------- constant folding
 * Exporters compute some attributes with small graphs of constants (PyTorch's F.pad: a
 * ConstantOfShape, Concat, Reshape, Slice, Transpose and Cast feeding Pad's pads).  Those
 * nodes are evaluated here when every input is a constant: values held as doubles (exact
 * for int64 sizes), at most FOLD_MAX of them. */

#define FOLD_MAX 4096

typedef struct folding {
    int type; /* ONNX's data type: FLOAT or INT64 */
    int ndim;
    int64_t dims[4];
    size_t n;
    double v[FOLD_MAX];
} folding;

/* A held value as an int64, saturated (NaN: 0), as no cast may overflow. */
static int64_t as_int(double v) {
    return v != v ? 0 : v >= 0x1p62 ? (int64_t)1 << 62 : v <= -0x1p62 ? -((int64_t)1 << 62) : (int64_t)v;
}

static rg_status fold_read(const onnx_build *b, const onnx_tensor *t, folding *out) {
    size_t n = 0;
    rg_status s = RG_OK;
    if (t->n_dims > 4) return rg_fail(RG_ERR_FORMAT, "%s: constant '%s' has %zu dimensions", b->path, t->name, t->n_dims);
    out->type = t->data_type, out->ndim = (int)t->n_dims;
    for (size_t d = 0; d < t->n_dims; d++) out->dims[d] = t->dims[d];
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        int64_t tmp[FOLD_MAX];
        if ((s = tensor_ints(b, t, tmp, FOLD_MAX, &n))) return s;
        for (size_t i = 0; i < n; i++) out->v[i] = (double)tmp[i];
    } else {
        float *f = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? tensor_floats(b, t, &n, &s) : NULL;
        if (!f) return s ? s : rg_fail(RG_ERR_FORMAT, "%s: constant '%s' of data type %d", b->path, t->name, t->data_type);
        if (n > FOLD_MAX) s = rg_fail(RG_ERR_FORMAT, "%s: constant '%s' too large to fold", b->path, t->name);
        for (size_t i = 0; !s && i < n; i++) out->v[i] = f[i];
        free(f);
        if (s) return s;
    }
    out->n = n;
    return RG_OK;
}

/* A folded value as a constant the build owns. */
static rg_status fold_write(onnx_build *b, const char *name, const folding *f) {
    onnx_tensor *t = malloc(sizeof *t), **made = realloc(b->made, (b->n_made + 1) * sizeof *made);
    if (made) b->made = made;
    if (!t || !made) return free(t), rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
    onnx__tensor_proto__init(t);
    b->made[b->n_made++] = t;
    t->name = NULL, t->has_data_type = 1, t->data_type = f->type, t->n_dims = (size_t)f->ndim;
    t->dims = malloc(4 * sizeof *t->dims);
    void *data = malloc((f->n ? f->n : 1) * (f->type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4));
    if (!t->dims || !data) return free(data), rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
    memcpy(t->dims, f->dims, sizeof f->dims);
    for (size_t i = 0; i < f->n; i++)
        if (f->type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) ((int64_t *)data)[i] = as_int(f->v[i]);
        else ((float *)data)[i] = (float)f->v[i];
    if (f->type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) t->int64_data = data, t->n_int64_data = f->n;
    else t->float_data = data, t->n_float_data = f->n;
    return add_value(b, name, RG_NONE, t);
}

static void made_free(onnx_build *b) {
    for (size_t i = 0; i < b->n_made; i++) {
        free(b->made[i]->dims), free(b->made[i]->int64_data), free(b->made[i]->float_data);
        free(b->made[i]);
    }
    free(b->made);
}

static size_t count_of(const int64_t *dims, int ndim) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)dims[d];
    return n;
}

/* The flat index of coordinate c in dims. */
static size_t flat(const int64_t *dims, int ndim, const int64_t *c) {
    size_t at = 0;
    for (int d = 0; d < ndim; d++) at = at * (size_t)dims[d] + (size_t)c[d];
    return at;
}

/* c advanced to the next coordinate in dims (row-major); false past the end. */
static bool next(const int64_t *dims, int ndim, int64_t *c) {
    for (int d = ndim - 1; d >= 0; d--) {
        if (++c[d] < dims[d]) return true;
        c[d] = 0;
    }
    return false;
}

static bool foldable(const char *op) {
    static const char *const ops[] = {"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose",
                                      "Cast", "Unsqueeze", "Squeeze"};
    for (int i = 0; i < RG_COUNT_OF(ops); i++)
        if (strcmp(op, ops[i]) == 0) return true;
    return false;
}

static rg_status fold_with(onnx_build *b, const onnx_node *n, folding *in, folding *o, bool *done);

/* Folds n when it is foldable and all its inputs are constants; *done says whether it was. */
static rg_status fold(onnx_build *b, const onnx_node *n, bool *done) {
    *done = false;
    if (!foldable(n->op_type) || n->n_input > 5) return RG_OK;
    folding *space = calloc(6, sizeof *space); /* 5 inputs and the output */
    if (!space) return rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
    rg_status s = fold_with(b, n, space, &space[5], done);
    free(space);
    return s;
}

static rg_status fold_with(onnx_build *b, const onnx_node *n, folding *in, folding *o, bool *done) {
    rg_status s = RG_OK;
    for (size_t k = 0; k < n->n_input; k++) {
        const named_value *v = n->input[k][0] ? find_value(b, n->input[k]) : NULL;
        if (n->input[k][0] && (!v || !v->constant)) return RG_OK; /* a computed input */
        if (v && (s = fold_read(b, v->constant, &in[k]))) return s;
        if (!v) in[k].n = 0, in[k].ndim = -1;
    }
    if (n->n_input && in[0].ndim < 0) return node_fail(b, n, "its first input is empty"); /* data, always */
    const char *op = n->op_type;
    *o = (folding){.type = n->n_input ? in[0].type : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT};
    if (strcmp(op, "ConstantOfShape") == 0) {
        const Onnx__AttributeProto *a = attr(n, "value");
        folding value = {.type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, .n = 1, .v = {0}};
        if (a && a->t && (s = fold_read(b, a->t, &value))) return s;
        o->type = value.type, o->ndim = (int)in[0].n;
        for (size_t d = 0; d < in[0].n && d < 4; d++) o->dims[d] = as_int(in[0].v[d]);
        if (in[0].n > 4 || value.n != 1) return node_fail(b, n, "a shape of more than 4 dimensions");
        for (int d = 0; d < o->ndim; d++)
            if (o->dims[d] < 0 || o->dims[d] > FOLD_MAX) return node_fail(b, n, "too large to fold");
        if ((o->n = count_of(o->dims, o->ndim)) > FOLD_MAX) return node_fail(b, n, "too large to fold");
        for (size_t i = 0; i < o->n; i++) o->v[i] = value.v[0];
    } else if (strcmp(op, "Concat") == 0) {
        for (size_t k = 0; k < n->n_input; k++) {
            if (in[k].ndim != 1) return node_fail(b, n, "folds 1-D constants only");
            if (o->n + in[k].n > FOLD_MAX) return node_fail(b, n, "too large to fold");
            memcpy(o->v + o->n, in[k].v, in[k].n * sizeof *o->v), o->n += in[k].n;
        }
        o->ndim = 1, o->dims[0] = (int64_t)o->n;
    } else if (strcmp(op, "Reshape") == 0 || strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
        *o = in[0];
        if (strcmp(op, "Reshape") == 0) {
            int64_t known = 1, free_at = -1;
            if (n->n_input < 2 || in[1].n > 4) return node_fail(b, n, "needs a shape of at most 4 numbers");
            o->ndim = (int)in[1].n;
            for (int d = 0; d < o->ndim; d++) {
                o->dims[d] = as_int(in[1].v[d]);
                if (o->dims[d] > FOLD_MAX) return node_fail(b, n, "too large to fold");
                if (o->dims[d] == 0) o->dims[d] = d < in[0].ndim ? in[0].dims[d] : 1;
                if (o->dims[d] == -1) free_at = d;
                else if (o->dims[d] < 0) return node_fail(b, n, "a negative size");
                else known *= o->dims[d];
            }
            if (free_at >= 0) o->dims[free_at] = known ? (int64_t)in[0].n / known : 0;
        } else { /* the sizes stay; the new shape from the count (1-D results only) */
            o->ndim = 1, o->dims[0] = (int64_t)in[0].n;
        }
        if (count_of(o->dims, o->ndim) != in[0].n) return node_fail(b, n, "a shape of another size");
    } else if (strcmp(op, "Transpose") == 0) {
        int64_t perm[4], c[4] = {0}, src[4];
        const size_t k = attr_ints(n, "perm", perm, 4);
        o->ndim = in[0].ndim, o->n = in[0].n;
        if (in[0].ndim < 1 || (k && (int)k != in[0].ndim)) return node_fail(b, n, "perm does not fit");
        bool taken[4] = {false};
        for (int d = 0; d < o->ndim; d++) {
            if (!k) perm[d] = o->ndim - 1 - d;
            if (perm[d] < 0 || perm[d] >= o->ndim || taken[perm[d]])
                return node_fail(b, n, "perm is not a permutation of the axes");
            taken[perm[d]] = true;
            o->dims[d] = in[0].dims[perm[d]];
        }
        if (o->n) do {
                for (int d = 0; d < o->ndim; d++) src[perm[d]] = c[d];
                o->v[flat(o->dims, o->ndim, c)] = in[0].v[flat(in[0].dims, in[0].ndim, src)];
            } while (next(o->dims, o->ndim, c));
    } else if (strcmp(op, "Cast") == 0) {
        *o = in[0];
        o->type = (int)attr_int(n, "to", 0);
        if (o->type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && o->type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
            return node_fail(b, n, "casts to float32 or int64 only");
        for (size_t i = 0; o->type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && i < o->n; i++)
            o->v[i] = (double)as_int(o->v[i]);
    } else { /* Slice(data, starts, ends, axes, steps) */
        int64_t start[4] = {0}, step[4] = {1, 1, 1, 1}, c[4] = {0}, src[4];
        o->ndim = in[0].ndim;
        memcpy(o->dims, in[0].dims, sizeof o->dims);
        if (n->n_input < 3 || in[1].n != in[2].n || in[1].n > 4 || o->ndim < 1)
            return node_fail(b, n, "needs starts and ends of one length");
        for (size_t j = 0; j < in[1].n; j++) {
            int64_t axis = n->n_input > 3 && in[3].n ? as_int(in[3].v[j]) : (int64_t)j;
            if (axis < 0) axis += o->ndim;
            const int64_t dim = in[0].dims[axis > 0 && axis < 4 ? axis : 0];
            int64_t st = n->n_input > 4 && in[4].n ? as_int(in[4].v[j]) : 1;
            st = st > dim + 1 ? dim + 1 : st < -dim - 1 ? -dim - 1 : st; /* longer steps take one */
            if (axis < 0 || axis >= o->ndim || st == 0) return node_fail(b, n, "an axis or step out of range");
            double lo = in[1].v[j], hi = in[2].v[j];
            if (lo != lo || hi != hi) return node_fail(b, n, "a start or end that is not a number");
            if (lo < 0) lo += dim;
            if (hi < 0) hi += dim;
            lo = st > 0 ? (lo < 0 ? 0 : lo > dim ? dim : lo) : (lo < 0 ? -1 : lo > dim - 1 ? dim - 1 : lo);
            hi = st > 0 ? (hi < 0 ? 0 : hi > dim ? dim : hi) : (hi < -1 ? -1 : hi > dim - 1 ? dim - 1 : hi);
            const int64_t len = st > 0 ? ((int64_t)hi - (int64_t)lo + st - 1) / st : ((int64_t)lo - (int64_t)hi - st - 1) / -st;
            o->dims[axis] = len > 0 ? len : 0, start[axis] = (int64_t)lo, step[axis] = st;
        }
        o->n = count_of(o->dims, o->ndim);
        if (o->n) do {
                for (int d = 0; d < o->ndim; d++) src[d] = start[d] + c[d] * step[d];
                o->v[flat(o->dims, o->ndim, c)] = in[0].v[flat(in[0].dims, in[0].ndim, src)];
            } while (next(o->dims, o->ndim, c));
    }
    *done = true;
    return fold_write(b, n->output[0], o);
}

/* ---------------------------------------------------------------- naming and weights */

/* The layer's name: its weight initializer's without ".weight", else the node's (else its
 * output's); made unique with the node's. */
static const char *layer_name(onnx_build *b, const onnx_node *n, const onnx_tensor *weight) {
    char want[RG_NAME_MAX];
    const char *base = n->name && *n->name ? n->name : n->n_output ? n->output[0] : "node";
    if (weight && weight->name) {
        const size_t len = strlen(weight->name);
        const bool dotted = len > 7 && strcmp(weight->name + len - 7, ".weight") == 0;
        snprintf(want, sizeof want, "%.*s", (int)(dotted ? len - 7 : len), weight->name);
    } else {
        snprintf(want, sizeof want, "%s", base);
    }
    for (size_t i = 0; i < b->n_layer_names; i++)
        if (strcmp(b->layer_names[i], want) == 0) {
            snprintf(want, sizeof want, "%s_%zu", base, b->n_layer_names);
            break;
        }
    char (*names)[RG_NAME_MAX] = realloc(b->layer_names, (b->n_layer_names + 1) * sizeof *names);
    if (!names) return NULL;
    b->layer_names = names;
    snprintf(names[b->n_layer_names], RG_NAME_MAX, "%s", want);
    return names[b->n_layer_names++];
}

/* A weight under LAYER.ROLE in regrad's layout, when collecting (transpose: a 2-D tensor
 * stored (in, out) for regrad's (out, in)); a missing bias of `zeros` values is zeros. */
static rg_status put_weight(onnx_build *b, const char *layer, const char *role, const onnx_tensor *t,
                            bool transpose, size_t zeros) {
    if (!b->weights) return RG_OK;
    rg_status s = RG_OK;
    size_t count = zeros;
    float *v = t ? tensor_floats(b, t, &count, &s) : calloc(zeros ? zeros : 1, sizeof(float));
    if (!v) return s ? s : rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
    int shape[RG_MAX_DIMS] = {(int)count}, ndim = t ? (int)t->n_dims : 1;
    for (int d = 0; t && d < ndim && d < RG_MAX_DIMS; d++) shape[d] = (int)t->dims[d];
    if (ndim > RG_MAX_DIMS) {
        free(v);
        return rg_fail(RG_ERR_FORMAT, "%s: weight '%s' has %d dimensions", b->path, t->name, ndim);
    }
    if (transpose && ndim == 2) {
        float *w = malloc(count * sizeof *w);
        if (!w) return free(v), rg_fail(RG_ERR_MEMORY, "%s: out of memory", b->path);
        for (int i = 0; i < shape[0]; i++)
            for (int o = 0; o < shape[1]; o++) w[(size_t)o * shape[0] + i] = v[(size_t)i * shape[1] + o];
        free(v), v = w;
        const int t0 = shape[0];
        shape[0] = shape[1], shape[1] = t0;
    }
    char name[RG_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.%s", layer, role);
    return rg_tensor_file_put(b->weights, name, ndim, shape, v);
}

static int node_of_ndim(const onnx_build *b, rg_node x) { return rg_node_ndim(b->graph, x); }

static rg_node named(onnx_build *b, rg_node x, const char *name) {
    rg_node_set_name(b->graph, x, name);
    return x;
}

/* ---------------------------------------------------------------- ops */

/* Whether node `index` makes the output, directly or through an output softmax (or the
 * Add of its bias). */
static bool is_head(const onnx_build *b, const onnx_node *n, size_t index) {
    const char *out = b->g->output[0]->name, *v = n->output[0];
    for (size_t j = index + 1; out && j <= b->g->n_node; j++) {
        if (strcmp(v, out) == 0) return true;
        if (j == b->g->n_node) break;
        const onnx_node *m = b->g->node[j];
        if (m->n_input && m->n_output && strcmp(m->input[0], v) == 0 &&
            (!strcmp(m->op_type, "Softmax") || !strcmp(m->op_type, "Add") || !strcmp(m->op_type, "Identity")))
            v = m->output[0];
    }
    return false;
}

static rg_node op_dense(onnx_build *b, const onnx_node *n, size_t index, rg_status *s) {
    const bool gemm = strcmp(n->op_type, "Gemm") == 0;
    rg_node x = input_node(b, n, 0, s);
    const onnx_tensor *w = x == RG_NONE ? NULL : input_constant(b, n, 1, true, s);
    if (!w) return RG_NONE;
    const onnx_tensor *bias = gemm ? input_constant(b, n, 2, false, s) : NULL;
    if (gemm && (attr_int(n, "transA", 0) != 0 || attr_float(n, "alpha", 1) != 1 || attr_float(n, "beta", 1) != 1))
        return *s = node_fail(b, n, "transA, alpha and beta must be 0, 1 and 1"), RG_NONE;
    if (w->n_dims != 2) return *s = node_fail(b, n, "the weight must have 2 dimensions"), RG_NONE;
    const bool out_first = gemm && attr_int(n, "transB", 0) == 1; /* (out, in) as regrad */
    int units = (int)w->dims[out_first ? 0 : 1];
    if (is_head(b, n, index) && b->opts->classes > 0) units = b->opts->classes; /* a new head */
    const char *folded = NULL; /* MatMul: the Add of a bias that is its only reader */
    if (!gemm) {
        const onnx_node *reader = NULL;
        size_t readers = 0, at = 0, k_at = 0;
        for (size_t j = index + 1; j < b->g->n_node; j++)
            for (size_t k = 0; k < b->g->node[j]->n_input; k++)
                if (strcmp(b->g->node[j]->input[k], n->output[0]) == 0) reader = b->g->node[j], readers++, at = j, k_at = k;
        const onnx_tensor *c = readers == 1 && strcmp(reader->op_type, "Add") == 0 && reader->n_input == 2
                                   ? input_constant(b, reader, 1 - k_at, false, s) : NULL;
        if (c && c->n_dims == 1 && c->dims[0] == units && reader->n_output == 1)
            bias = c, b->skip[at] = true, folded = reader->output[0];
    }
    if (node_of_ndim(b, x) != 1)
        return *s = node_fail(b, n, "needs a flat input (batch, features): Flatten before it"), RG_NONE;
    const char *name = layer_name(b, n, w);
    if (!name) return *s = RG_ERR_MEMORY, RG_NONE;
    if ((*s = put_weight(b, name, "kernel", w, !out_first, 0)) ||
        (*s = put_weight(b, name, "bias", bias, false, bias ? 0 : (size_t)units)))
        return RG_NONE;
    rg_node y = named(b, rg_dense(b->graph, x, units, RG_INIT(RG_INIT_TORCH)), name);
    if (folded && (*s = add_value(b, folded, y, NULL))) return RG_NONE;
    return y;
}

static rg_node op_conv(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    const onnx_tensor *w = x == RG_NONE ? NULL : input_constant(b, n, 1, true, s);
    if (!w) return RG_NONE;
    const onnx_tensor *bias = input_constant(b, n, 2, false, s);
    int kernel, stride, dilation;
    int64_t pads[4] = {0, 0, 0, 0};
    if (w->n_dims != 4 || w->dims[2] != w->dims[3] || node_of_ndim(b, x) != 3)
        return *s = node_fail(b, n, "2-D convolutions with square kernels on (C, H, W) only"), RG_NONE;
    if (!square(n, "kernel_shape", (int)w->dims[2], &kernel) || kernel != w->dims[2] ||
        !square(n, "strides", 1, &stride) || !square(n, "dilations", 1, &dilation))
        return *s = node_fail(b, n, "kernel_shape, strides and dilations must be equal in height and width"), RG_NONE;
    const size_t np = attr_ints(n, "pads", pads, 4);
    if (np != 0 && np != 4) return *s = node_fail(b, n, "pads must have 4 numbers"), RG_NONE;
    rg_conv_opts o = rg_conv_defaults();
    o.stride = stride, o.dilation = dilation, o.bias = bias != NULL, o.init = RG_INIT(RG_INIT_TORCH);
    o.groups = (int)attr_int(n, "group", 1);
    if (o.groups < 1 || o.groups > 65536) return *s = node_fail(b, n, "group must be positive"), RG_NONE;
    const char *name = layer_name(b, n, w);
    if (!name) return *s = RG_ERR_MEMORY, RG_NONE;
    if (attr_str_is(n, "auto_pad", "NOTSET", "SAME_UPPER")) o.padding = RG_PAD_SAME;
    else if (attr_str_is(n, "auto_pad", "NOTSET", "VALID")) o.padding = RG_PAD_VALID;
    else if (!attr_str_is(n, "auto_pad", "NOTSET", "NOTSET"))
        return *s = node_fail(b, n, "auto_pad SAME_LOWER: regrad pads the extra row at the end (SAME_UPPER)"), RG_NONE;
    else if (pads[0] == pads[1] && pads[1] == pads[2] && pads[2] == pads[3])
        o.padding = pads[0] ? RG_PAD_EXPLICIT : RG_PAD_VALID, o.pad = (int)pads[0];
    else { /* asymmetric (top, left, bottom, right): zeros around, then a valid convolution */
        char pad_name[RG_NAME_MAX + 8];
        snprintf(pad_name, sizeof pad_name, "%s_pad", name);
        for (int i = 0; i < 4; i++)
            if (pads[i] < 0 || pads[i] > 65536) return *s = node_fail(b, n, "pads out of range"), RG_NONE;
        x = named(b, rg_zero_pad2d(b->graph, x, (int)pads[0], (int)pads[2], (int)pads[1], (int)pads[3]), pad_name);
        o.padding = RG_PAD_VALID;
    }
    if ((*s = put_weight(b, name, "kernel", w, false, 0)) || (bias && (*s = put_weight(b, name, "bias", bias, false, 0))))
        return RG_NONE;
    return named(b, rg_conv2d(b->graph, x, (int)w->dims[0], kernel, &o), name);
}

static rg_node op_batch_norm(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    const onnx_tensor *t[4] = {NULL};
    for (int k = 0; k < 4 && x != RG_NONE; k++)
        if (!(t[k] = input_constant(b, n, (size_t)k + 1, true, s))) return RG_NONE;
    if (x == RG_NONE) return RG_NONE;
    if (attr_int(n, "training_mode", 0) != 0 || n->n_output != 1)
        return *s = node_fail(b, n, "training_mode must be 0 (the inference form export writes)"), RG_NONE;
    const float momentum = attr_float(n, "momentum", 0.9f), eps = attr_float(n, "epsilon", 1e-5f);
    if (!(momentum >= 0 && momentum < 1) || !(eps > 0))
        return *s = node_fail(b, n, "momentum must lie in [0, 1) and epsilon above 0"), RG_NONE;
    const char *name = layer_name(b, n, t[0]);
    static const char *const roles[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int k = 0; k < 4; k++)
        if (!name || (*s = put_weight(b, name, roles[k], t[k], false, 0))) return *s = *s ? *s : RG_ERR_MEMORY, RG_NONE;
    return named(b, rg_batch_norm(b->graph, x, 1.0f - momentum, eps), name); /* ONNX keeps 1 - momentum */
}

static rg_node op_pool(onnx_build *b, const onnx_node *n, bool max, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    int kernel, stride, dilation;
    int64_t pads[4] = {0, 0, 0, 0};
    if (x == RG_NONE) return RG_NONE;
    if (node_of_ndim(b, x) != 3 || !square(n, "kernel_shape", 0, &kernel) || !square(n, "strides", 1, &stride) ||
        !square(n, "dilations", 1, &dilation) || dilation != 1)
        return *s = node_fail(b, n, "square kernel_shape and strides, no dilation, on (C, H, W)"), RG_NONE;
    const size_t np = attr_ints(n, "pads", pads, 4);
    if ((np != 0 && np != 4) || pads[0] != pads[1] || pads[1] != pads[2] || pads[2] != pads[3] ||
        pads[0] < 0 || pads[0] > kernel / 2)
        return *s = node_fail(b, n, "pads must be equal on all sides and at most half the kernel"), RG_NONE;
    if (attr_int(n, "ceil_mode", 0) != 0 || !attr_str_is(n, "auto_pad", "NOTSET", "NOTSET"))
        return *s = node_fail(b, n, "ceil_mode and auto_pad are not available: pads are"), RG_NONE;
    if (!max && pads[0] > 0 && attr_int(n, "count_include_pad", 0) == 0)
        return *s = node_fail(b, n, "count_include_pad=0 with padding: regrad's average counts the "
                                    "padded zeros (count_include_pad=1)"), RG_NONE;
    rg_node y = max ? rg_max_pool2d(b->graph, x, kernel, stride, (int)pads[0])
                    : rg_avg_pool2d(b->graph, x, kernel, stride, (int)pads[0]);
    const char *name = layer_name(b, n, NULL);
    return name ? named(b, y, name) : (*s = RG_ERR_MEMORY, RG_NONE);
}

static rg_node op_global_pool(onnx_build *b, const onnx_node *n, bool max, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    if (x == RG_NONE) return RG_NONE;
    const int *shape = rg_node_shape(b->graph, x);
    if (node_of_ndim(b, x) != 3 || (max && shape[1] != shape[2]))
        return *s = node_fail(b, n, max ? "needs a square (C, H, W) map" : "needs (C, H, W)"), RG_NONE;
    const char *name = layer_name(b, n, NULL);
    if (!name) return *s = RG_ERR_MEMORY, RG_NONE;
    if (!max) return named(b, rg_global_avg_pool(b->graph, x), name);
    char pool[RG_NAME_MAX + 8];
    snprintf(pool, sizeof pool, "%s_pool", name);
    return named(b, rg_flatten(b->graph, named(b, rg_max_pool2d(b->graph, x, shape[1], shape[1], 0), pool)), name);
}

/* Flatten (axis 1) and Reshape to (batch, -1): one dimension per sample, NCHW order. */
static rg_node op_flatten(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    if (x == RG_NONE) return RG_NONE;
    if (strcmp(n->op_type, "Reshape") == 0) {
        int64_t v[2];
        size_t k = 0;
        const onnx_tensor *t = input_constant(b, n, 1, true, s);
        if (!t || (*s = tensor_ints(b, t, v, 2, &k))) return RG_NONE;
        const long long size = (long long)rg_node_size(b->graph, x);
        if (k != 2 || (v[1] != -1 && v[1] != size) || (v[0] != 0 && v[0] != -1 && v[1] == -1))
            return *s = node_fail(b, n, "only a reshape to (batch, -1) is available"), RG_NONE;
    } else if (attr_int(n, "axis", 1) != 1) {
        return *s = node_fail(b, n, "axis must be 1 (one dimension per sample)"), RG_NONE;
    }
    if (node_of_ndim(b, x) == 1) return x;
    const char *name = layer_name(b, n, NULL);
    return name ? named(b, rg_flatten(b->graph, x), name) : (*s = RG_ERR_MEMORY, RG_NONE);
}

static rg_node op_pad(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    int64_t p[8] = {0};
    size_t k = attr_ints(n, "pads", p, 8);
    const onnx_tensor *t = n->n_input > 1 ? input_constant(b, n, 1, true, s) : NULL;
    if (x == RG_NONE || *s || (t && (*s = tensor_ints(b, t, p, 8, &k)))) return RG_NONE;
    const onnx_tensor *value = input_constant(b, n, 2, false, s);
    size_t count = 0;
    float *v = value ? tensor_floats(b, value, &count, s) : NULL;
    const bool zero = !value || (v && count == 1 && v[0] == 0.0f);
    free(v);
    if (*s) return RG_NONE;
    if (k != 8 || !attr_str_is(n, "mode", "constant", "constant") || !zero || attr_float(n, "value", 0) != 0 ||
        p[0] || p[1] || p[4] || p[5] || node_of_ndim(b, x) != 3)
        return *s = node_fail(b, n, "only zero padding of height and width (mode constant) is available"), RG_NONE;
    for (int i = 0; i < 8; i++)
        if (p[i] < 0 || p[i] > 65536) return *s = node_fail(b, n, "pads out of range"), RG_NONE;
    const char *name = layer_name(b, n, NULL);
    return name ? named(b, rg_zero_pad2d(b->graph, x, (int)p[2], (int)p[6], (int)p[3], (int)p[7]), name)
                : (*s = RG_ERR_MEMORY, RG_NONE);
}

static rg_node op_merge(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node xs[RG_MAX_INPUTS];
    if (n->n_input < 1 || n->n_input > RG_MAX_INPUTS)
        return *s = node_fail(b, n, "1 to %d inputs", RG_MAX_INPUTS), RG_NONE;
    for (size_t k = 0; k < n->n_input; k++)
        if ((xs[k] = input_node(b, n, k, s)) == RG_NONE) return RG_NONE;
    const char *name = layer_name(b, n, NULL);
    if (!name) return *s = RG_ERR_MEMORY, RG_NONE;
    if (strcmp(n->op_type, "Concat") == 0) {
        if (attr_int(n, "axis", 0) != 1) return *s = node_fail(b, n, "axis must be 1 (channels)"), RG_NONE;
        return named(b, rg_concat(b->graph, (int)n->n_input, xs), name);
    }
    if (n->n_input != 2) return *s = node_fail(b, n, "adds two computed values"), RG_NONE;
    return named(b, rg_add(b->graph, xs[0], xs[1]), name);
}

static rg_node op_activation(onnx_build *b, const onnx_node *n, rg_act act, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    if (x == RG_NONE) return RG_NONE;
    if (act == RG_ACT_LEAKY_RELU && attr_float(n, "alpha", 0.01f) != 0.01f)
        return *s = node_fail(b, n, "alpha=%g: regrad's leaky relu has slope 0.01",
                              (double)attr_float(n, "alpha", 0.01f)), RG_NONE;
    if (act == RG_ACT_ELU && attr_float(n, "alpha", 1.0f) != 1.0f)
        return *s = node_fail(b, n, "alpha=%g: regrad's elu has alpha 1", (double)attr_float(n, "alpha", 1)), RG_NONE;
    if (act == RG_ACT_GELU && !attr_str_is(n, "approximate", "none", "none"))
        return *s = node_fail(b, n, "approximate=tanh: regrad's gelu is the exact one"), RG_NONE;
    const char *name = layer_name(b, n, NULL);
    return name ? named(b, rg_activation(b->graph, x, act), name) : (*s = RG_ERR_MEMORY, RG_NONE);
}

static rg_node op_dropout(onnx_build *b, const onnx_node *n, rg_status *s) {
    rg_node x = input_node(b, n, 0, s);
    float rate = attr_float(n, "ratio", 0.5f);
    const onnx_tensor *t = input_constant(b, n, 1, false, s);
    size_t count = 0;
    float *v = t ? tensor_floats(b, t, &count, s) : NULL;
    if (v && count == 1) rate = v[0];
    free(v);
    if (x == RG_NONE || *s) return RG_NONE;
    if (!(rate >= 0 && rate < 1)) return *s = node_fail(b, n, "ratio must lie in [0, 1)"), RG_NONE;
    const char *name = layer_name(b, n, NULL);
    return name ? named(b, rg_dropout(b->graph, x, rate), name) : (*s = RG_ERR_MEMORY, RG_NONE);
}

/* The index of the one node after `from` that reads value v, when it is an `op`; else -1. */
static long only_reader(const onnx_build *b, size_t from, const char *v, const char *op) {
    long found = -1;
    for (size_t j = from + 1; j < b->g->n_node; j++)
        for (size_t k = 0; k < b->g->node[j]->n_input; k++)
            if (strcmp(b->g->node[j]->input[k], v) == 0) {
                if (found >= 0) return -1;
                found = (long)j;
            }
    return found >= 0 && strcmp(b->g->node[found]->op_type, op) == 0 ? found : -1;
}

/* Whether input k of n is a one-value constant within 1e-6 of want. */
static bool constant_is(onnx_build *b, const onnx_node *n, size_t k, double want) {
    rg_status s = RG_OK;
    const onnx_tensor *t = input_constant(b, n, k, false, &s);
    size_t count = 0;
    float *v = t ? tensor_floats(b, t, &count, &s) : NULL;
    const bool is = v && count == 1 && fabs(v[0] - want) < 1e-6 * (1 + fabs(want));
    free(v);
    return is;
}

/* GELU as exporters write it, 0.5 x (1 + erf(x / sqrt 2)) in five nodes from a Div: one
 * exact gelu, the four after it skipped; RG_NONE (nothing done) when it is not that. */
static rg_node gelu_pattern(onnx_build *b, size_t i, rg_status *s) {
    const onnx_node *div = b->g->node[i];
    const named_value *x = div->n_input == 2 ? find_value(b, div->input[0]) : NULL;
    if (!x || x->node == RG_NONE || !constant_is(b, div, 1, M_SQRT2)) return RG_NONE;
    const long erf = only_reader(b, i, div->output[0], "Erf");
    const long add = erf < 0 ? -1 : only_reader(b, (size_t)erf, b->g->node[erf]->output[0], "Add");
    const long mul = add < 0 ? -1 : only_reader(b, (size_t)add, b->g->node[add]->output[0], "Mul");
    const long half = mul < 0 ? -1 : only_reader(b, (size_t)mul, b->g->node[mul]->output[0], "Mul");
    if (half < 0) return RG_NONE;
    const onnx_node *a = b->g->node[add], *m = b->g->node[mul], *h = b->g->node[half];
    const int one_at = strcmp(a->input[0], b->g->node[erf]->output[0]) == 0 ? 1 : 0;
    const int x_at = strcmp(m->input[0], a->output[0]) == 0 ? 1 : 0;
    const int half_at = strcmp(h->input[0], m->output[0]) == 0 ? 1 : 0;
    if (a->n_input != 2 || m->n_input != 2 || h->n_input != 2 || !constant_is(b, a, (size_t)one_at, 1.0) ||
        strcmp(m->input[x_at], div->input[0]) != 0 || !constant_is(b, h, (size_t)half_at, 0.5))
        return RG_NONE;
    const char *name = layer_name(b, h, NULL);
    if (!name) return *s = RG_ERR_MEMORY, RG_NONE;
    b->skip[erf] = b->skip[add] = b->skip[mul] = b->skip[half] = true;
    rg_node y = named(b, rg_activation(b->graph, x->node, RG_ACT_GELU), name);
    if ((*s = add_value(b, h->output[0], y, NULL))) return RG_NONE;
    return y;
}

static const char *const supported_ops =
    "Gemm, MatMul (+Add), Conv, BatchNormalization, Relu, LeakyRelu, Elu, Sigmoid, Tanh, "
    "Softplus, Gelu (also as Div, Erf, Add, Mul, Mul), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Flatten, Reshape, "
    "Add, Concat, Pad, Dropout, Identity, Constant, Softmax (on the output)";

/* One node: its outputs' values added. */
static rg_status build_node(onnx_build *b, size_t index) {
    const onnx_node *n = b->g->node[index];
    rg_status s = RG_OK;
    if (!n->op_type || n->n_output < 1) return node_fail(b, n, "no op type or no output");
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
        return node_fail(b, n, "an op of domain '%s': regrad has the default domain's", n->domain);
    const char *op = n->op_type;
    static const struct { const char *name; rg_act act; } acts[] = {
        {"Relu", RG_ACT_RELU}, {"LeakyRelu", RG_ACT_LEAKY_RELU}, {"Elu", RG_ACT_ELU},
        {"Sigmoid", RG_ACT_SIGMOID}, {"Tanh", RG_ACT_TANH}, {"Softplus", RG_ACT_SOFTPLUS},
        {"Gelu", RG_ACT_GELU}};
    rg_node y = RG_NONE;
    bool folded;
    if ((s = fold(b, n, &folded)) || folded) return s;
    if (strcmp(op, "Constant") == 0) {
        const Onnx__AttributeProto *a = attr(n, "value");
        if (!a || !a->t) return node_fail(b, n, "only a tensor 'value' is available");
        return add_value(b, n->output[0], RG_NONE, a->t);
    }
    if (strcmp(op, "Identity") == 0 || strcmp(op, "Softmax") == 0) { /* an alias */
        const named_value *v = n->n_input ? find_value(b, n->input[0]) : NULL;
        if (!v) return node_fail(b, n, "its input is not made before it");
        if (strcmp(op, "Softmax") == 0) {
            const bool output = b->g->n_output == 1 && b->g->output[0]->name &&
                                strcmp(b->g->output[0]->name, n->output[0]) == 0;
            if (!output || v->node == RG_NONE || node_of_ndim(b, v->node) != 1 || attr_int(n, "axis", -1) % 2 == 0)
                return node_fail(b, n, "softmax inside the network: regrad applies softmax only on "
                                       "the output, in the loss");
        }
        return add_value(b, n->output[0], v->node, v->constant);
    }
    if (strcmp(op, "Gemm") == 0 || strcmp(op, "MatMul") == 0) y = op_dense(b, n, index, &s);
    else if (strcmp(op, "Conv") == 0) y = op_conv(b, n, &s);
    else if (strcmp(op, "BatchNormalization") == 0) y = op_batch_norm(b, n, &s);
    else if (strcmp(op, "MaxPool") == 0 || strcmp(op, "AveragePool") == 0) y = op_pool(b, n, op[0] == 'M', &s);
    else if (strcmp(op, "GlobalAveragePool") == 0 || strcmp(op, "GlobalMaxPool") == 0)
        y = op_global_pool(b, n, op[6] == 'M', &s);
    else if (strcmp(op, "Flatten") == 0 || strcmp(op, "Reshape") == 0) y = op_flatten(b, n, &s);
    else if (strcmp(op, "Pad") == 0) y = op_pad(b, n, &s);
    else if (strcmp(op, "Add") == 0 || strcmp(op, "Concat") == 0) y = op_merge(b, n, &s);
    else if (strcmp(op, "Dropout") == 0) y = op_dropout(b, n, &s);
    else if (strcmp(op, "Div") == 0 && (y = gelu_pattern(b, index, &s)) != RG_NONE)
        return b->graph->error ? node_fail(b, n, "%s", b->graph->error_msg) : RG_OK;
    else {
        for (int i = 0; i < RG_COUNT_OF(acts) && y == RG_NONE; i++)
            if (strcmp(op, acts[i].name) == 0) {
                y = op_activation(b, n, acts[i].act, &s);
                if (y == RG_NONE && !s) s = RG_ERR_FORMAT;
                goto done;
            }
        return node_fail(b, n, "regrad has no %s (it builds %s)", op, supported_ops);
    }
done:
    if (!s && b->graph->error) s = node_fail(b, n, "%s", b->graph->error_msg);
    if (s) return s;
    return add_value(b, n->output[0], y, NULL);
}

/* The graph's input: its first input that is no initializer, (batch, C, H, W) or (batch,
 * F); a dimension given by name takes the caller's size. */
static rg_status build_input(onnx_build *b) {
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < b->g->n_input && !in; i++)
        if (b->g->input[i]->name && !(find_value(b, b->g->input[i]->name) &&
                                      find_value(b, b->g->input[i]->name)->constant))
            in = b->g->input[i];
    const Onnx__TypeProto *t = in ? in->type : NULL;
    const Onnx__TensorShapeProto *sh = t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type
                                           ? t->tensor_type->shape : NULL;
    if (!sh || (sh->n_dim != 2 && sh->n_dim != 4))
        return rg_fail(RG_ERR_FORMAT, "%s: the input must be a tensor (batch, C, H, W) or (batch, "
                                      "features)", b->path);
    const rg_model_opts *o = b->opts;
    const int given[3] = {o->c, o->h, o->w}, ndim = sh->n_dim == 4 ? 3 : 1;
    int dims[3] = {0, 0, 0};
    for (int d = 0; d < ndim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = sh->dim[d + 1];
        const bool known = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (known && (dim->dim_value < 1 || dim->dim_value > (1 << 24)))
            return rg_fail(RG_ERR_FORMAT, "%s: input dimension %d is %lld", b->path, d + 1, (long long)dim->dim_value);
        dims[d] = known ? (int)dim->dim_value : ndim == 3 ? given[d] : given[0] * given[1] * given[2];
        if (dims[d] < 1 && b->weights) dims[d] = 32; /* reading weights only: any size builds */
        if (dims[d] < 1)
            return rg_fail(RG_ERR_SHAPE, "%s: input dimension %d is named ('%s'), not sized: give the "
                                         "size (--input CxHxW)", b->path, d + 1, dim->dim_param ? dim->dim_param : "");
    }
    if (ndim == 3 && given[0] > 0 && (given[0] != dims[0] || (given[1] && given[1] != dims[1]) ||
                                      (given[2] && given[2] != dims[2])))
        return rg_fail(RG_ERR_SHAPE, "%s: the model takes %dx%dx%d inputs, the data is %dx%dx%d (use "
                                     "--input-size and --channels)", b->path, dims[0], dims[1], dims[2],
                       given[0], given[1], given[2]);
    if (ndim == 1 && given[0] > 0 && given[1] > 0 && given[2] > 0 && (long)given[0] * given[1] * given[2] != dims[0])
        return rg_fail(RG_ERR_SHAPE, "%s: the model takes %d features, the data has %dx%dx%d", b->path,
                       dims[0], given[0], given[1], given[2]);
    b->input = rg_input(b->graph, in->name, ndim, dims);
    return add_value(b, in->name, b->input, NULL);
}

/* An initializer whose data lies in a file beside the model (external_data: location,
 * offset, length) read into the tensor, as if it had been inside.  The location must name
 * a file inside the model's folder: no absolute path, no "..", no link out of it. */
static rg_status read_external(const onnx_build *b, onnx_tensor *t) {
    const char *location = NULL, *name = t->name;
    long long offset = 0, length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "location")) location = e->value;
        else if (!strcmp(e->key, "offset")) offset = atoll(e->value);
        else if (!strcmp(e->key, "length")) length = atoll(e->value);
    }
    if (!location || !*location || location[0] == '/' || strstr(location, "..") || offset < 0)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': external data '%s' is not a file inside the "
                                      "model's folder: refused", b->path, name, location ? location : "");
    char dir[4096], file[8192];
    const char *slash = strrchr(b->path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - b->path) : 1, slash ? b->path : ".");
    snprintf(file, sizeof file, "%s/%s", dir, location);
    char *real_dir = realpath(dir, NULL), *real_file = realpath(file, NULL);
    const size_t dn = real_dir ? strlen(real_dir) : 0;
    rg_status s = RG_OK;
    if (!real_dir || !real_file || strncmp(real_file, real_dir, dn) != 0 || real_file[dn] != '/')
        s = rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': external data '%s' is missing or outside the "
                                   "model's folder", b->path, name, location);
    FILE *fp = s ? NULL : fopen(real_file, "rb");
    long size = -1;
    if (!s && (!fp || fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0))
        s = rg_fail(RG_ERR_IO, "%s: tensor '%s': cannot read '%s'", b->path, name, location);
    if (!s && length < 0) length = size - offset;
    if (!s && (offset > size || length < 0 || length > size - offset || (size_t)length > 4 * MAX_FLOATS))
        s = rg_fail(RG_ERR_FORMAT, "%s: tensor '%s': %lld bytes at %lld of '%s', which holds %ld", b->path,
                    name, length, offset, location, size);
    uint8_t *data = s ? NULL : malloc(length ? (size_t)length : 1);
    if (!s && (!data || fseek(fp, offset, SEEK_SET) != 0 || fread(data, 1, (size_t)length, fp) != (size_t)length))
        s = rg_fail(RG_ERR_IO, "%s: tensor '%s': cannot read '%s'", b->path, name, location);
    if (fp) fclose(fp);
    free(real_dir), free(real_file);
    if (s) return free(data), s;
    if (t->has_raw_data) free(t->raw_data.data);
    t->has_raw_data = 1, t->raw_data.data = data, t->raw_data.len = (size_t)length;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
    return RG_OK;
}

static rg_status build_all(onnx_build *b, Onnx__ModelProto *m) {
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (!m->opset_import[i]->domain || !*m->opset_import[i]->domain || !strcmp(m->opset_import[i]->domain, "ai.onnx"))
            opset = m->opset_import[i]->version;
    if (opset < 11 || opset > 17)
        return rg_fail(RG_ERR_FORMAT, "%s: opset %lld: regrad reads opsets 11 to 17 (re-export with "
                                      "opset_version between them)", b->path, (long long)opset);
    if (!(b->g = m->graph) || b->g->n_output != 1)
        return rg_fail(RG_ERR_FORMAT, "%s: a model with %zu outputs: regrad builds one", b->path,
                       m->graph ? m->graph->n_output : 0);
    for (size_t i = 0; i < b->g->n_node; i++) /* every field later looks read as present */
        if (!b->g->node[i]->op_type || b->g->node[i]->n_output < 1)
            return rg_fail(RG_ERR_FORMAT, "%s: node %zu has no op type or no output", b->path, i);
    for (size_t i = 0; i < b->g->n_initializer; i++)
        if (!b->g->initializer[i]->name)
            return rg_fail(RG_ERR_FORMAT, "%s: initializer %zu has no name", b->path, i);
    if (!b->g->output[0]->name) return rg_fail(RG_ERR_FORMAT, "%s: the output has no name", b->path);
    rg_status s = RG_OK;
    for (size_t i = 0; i < b->g->n_initializer && !s; i++) { /* each one's size against its data */
        onnx_tensor *t = b->g->initializer[i];
        if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL &&
            (s = read_external(b, t)))
            break;
        size_t count;
        const bool ints = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        if (!(s = tensor_count(b, t, ints ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                               ints ? 8 : 4, ints ? t->n_int64_data : t->n_float_data, &count)))
            s = add_value(b, t->name, RG_NONE, t);
    }
    if (!s && !(b->skip = calloc(b->g->n_node + 1, sizeof *b->skip))) s = rg_fail(RG_ERR_MEMORY, "out of memory");
    if (!s) s = build_input(b);
    for (size_t i = 0; i < b->g->n_node && !s; i++) /* Constant nodes first: patterns read them */
        if (!strcmp(b->g->node[i]->op_type, "Constant")) s = build_node(b, i), b->skip[i] = true;
    for (size_t i = 0; i < b->g->n_node && !s; i++)
        if (!b->skip[i]) s = build_node(b, i);
    if (s) return s;
    const named_value *out = find_value(b, b->g->output[0]->name);
    if (!out || out->node == RG_NONE)
        return rg_fail(RG_ERR_FORMAT, "%s: the output '%s' is made by no node", b->path, b->g->output[0]->name);
    b->logits = out->node;
    return RG_OK;
}

/* The file read and built into graph (weights, when given, collecting the initializers). */
static rg_status onnx_build_file(const char *path, const rg_model_opts *opts, rg_graph *graph,
                                 rg_tensor_file *weights, rg_node *input, rg_node *logits) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return rg_fail(RG_ERR_IO, "%s: cannot open", path);
    unsigned char *data = NULL;
    long size = -1;
    rg_status s = RG_OK;
    if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || (size_t)size > ONNX_MAX_BYTES ||
        fseek(fp, 0, SEEK_SET) != 0)
        s = rg_fail(RG_ERR_IO, "%s: cannot read (or larger than 2 GiB)", path);
    else if (!(data = malloc((size_t)size + 1)))
        s = rg_fail(RG_ERR_MEMORY, "%s: out of memory", path);
    else if (fread(data, 1, (size_t)size, fp) != (size_t)size)
        s = rg_fail(RG_ERR_IO, "%s: read failed", path);
    fclose(fp);
    Onnx__ModelProto *m = s ? NULL : onnx__model_proto__unpack(NULL, (size_t)size, data);
    free(data);
    if (!s && !m) s = rg_fail(RG_ERR_FORMAT, "%s: not an ONNX model (the protobuf does not parse: truncated or corrupt)", path);
    const rg_model_opts none = {0};
    onnx_build b = {.path = path, .graph = graph, .opts = opts ? opts : &none, .weights = weights,
                    .input = RG_NONE, .logits = RG_NONE};
    if (!s) s = build_all(&b, m);
    if (!s) *input = b.input, *logits = b.logits;
    free(b.values), free(b.skip), free(b.layer_names);
    made_free(&b);
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    return s;
}

rg_status rg_onnx_model_build(const char *path, const rg_model_opts *opts, rg_model *m) {
    return onnx_build_file(path, opts, m->graph, NULL, &m->input, &m->logits);
}

rg_status rg_onnx_weights(const char *path, rg_tensor_file **out) {
    *out = rg_tensor_file_new();
    rg_graph *g = rg_graph_create(0);
    rg_node in, logits;
    rg_status s = !*out || !g ? rg_fail(RG_ERR_MEMORY, "out of memory")
                              : onnx_build_file(path, NULL, g, *out, &in, &logits);
    if (!s) s = rg_tensor_file_set_meta(*out, "format", "onnx");
    rg_graph_free(g);
    if (s) rg_tensor_file_free(*out), *out = NULL;
    return s;
}
