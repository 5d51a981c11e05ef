/*
 * keras.c — Keras weights files (libhdf5): the legacy HDF5 layout that model.save_weights,
 * model.save('m.h5') (under /model_weights) and the applications' ImageNet files use, read
 * into a tensor file under regrad's names and layouts, and written back.
 *
 * Layout: the weights group has an attribute layer_names (every layer, in model order; a
 * long one is split into layer_names0, layer_names1, ...), and a group per layer whose
 * attribute weight_names lists its datasets, each a path relative to the group
 * ("conv1_conv/kernel:0"; Keras 3's legacy files drop the ":0").  String attributes are
 * fixed-length (h5py 2) or variable-length (h5py 3); a layer without weights has an empty
 * float64 weight_names.  A weight's role is the last component of its name without ":N".
 *
 * Keras 3's .weights.h5 (layers/<object>/vars/0, 1, ...) is read too, when its layers carry
 * their names (Keras >= 3.6), and so are .keras archives (a zip holding model.weights.h5).
 *
 * Layouts (Keras channels_last -> regrad, PyTorch's): a conv kernel (kh, kw, in, out) ->
 * (out, in, kh, kw); a depthwise kernel (kh, kw, in, m) -> (in m, 1, kh, kw); a dense
 * kernel (in, out) -> (out, in); biases and batch norm's gamma, beta, moving_mean and
 * moving_variance as they are.  Names: LAYER.kernel, LAYER.bias, LAYER.gamma, ...
 *
 * Nothing in a file is trusted: every rank, dimension and size is checked before anything
 * is allocated, reading stops at the first problem with one line naming the file, the layer
 * and the weight, and HDF5's own error printing is off.  libhdf5 itself is not safe on a
 * malformed file, so the reading runs in a child process (rg_keras_load), which hands the
 * tensors back as a safetensors image that the parent's own checked parser reads.
 */
#include "../internal.h"

#include <hdf5.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_NAMES 100000          /* layers in a file, weights in a layer */
#define MAX_NAME 1024             /* bytes of one name */
#define MAX_FLOATS ((size_t)1 << 31) /* values in one weight: 8 GiB of float32 */
#define MODEL_CONFIG_MAX ((size_t)64 << 20) /* bytes of a model's JSON */

/* HDF5 prints its error stack by default: off while regrad reads and writes. */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static const char HDF5_MAGIC[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};

bool rg_is_hdf5(const unsigned char *head, size_t n) {
    return n >= 8 && memcmp(head, HDF5_MAGIC, 8) == 0;
}

/* A list of strings read from an attribute. */
typedef struct names {
    int n;
    char **v;
    size_t max; /* bytes of one string; 0: MAX_NAME */
} names;

static void names_free(names *l) {
    for (int i = 0; l->v && i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL, l->n = 0;
}

static rg_status names_add(names *l, const char *s, size_t len) {
    if (l->n >= MAX_NAMES || len > (l->max ? l->max : MAX_NAME)) return RG_ERR_FORMAT;
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
    if (!v) return RG_ERR_MEMORY;
    l->v = v;
    if (!(v[l->n] = strndup(s, len))) return RG_ERR_MEMORY;
    l->n++;
    return RG_OK;
}

/* Appends the strings of attribute `name` of obj: fixed- or variable-length, scalar or 1-D;
 * an empty non-string attribute (a layer without weights) adds nothing. */
static rg_status read_strings(hid_t obj, const char *name, names *out, const char *what) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return rg_fail(RG_ERR_FORMAT, "%s: no attribute %s", what, name);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a), mt = -1;
    rg_status s = RG_OK;
    const hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (ft < 0 || n < 0 || n > MAX_NAMES) {
        s = rg_fail(RG_ERR_FORMAT, "%s: attribute %s is unreadable or holds %lld names", what, name,
                    (long long)n);
    } else if (H5Tget_class(ft) != H5T_STRING) {
        if (n != 0) s = rg_fail(RG_ERR_FORMAT, "%s: attribute %s holds no strings", what, name);
    } else if (n > 0 && (mt = H5Tcopy(H5T_C_S1)) >= 0) {
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (H5Tis_variable_str(ft) > 0) {
            char **v = calloc((size_t)n, sizeof *v);
            H5Tset_size(mt, H5T_VARIABLE);
            if (!v || H5Aread(a, mt, v) < 0) s = rg_fail(RG_ERR_FORMAT, "%s: cannot read %s", what, name);
            for (hssize_t i = 0; !s && i < n; i++)
                if ((s = names_add(out, v[i] ? v[i] : "", v[i] ? strlen(v[i]) : 0)))
                    s = rg_fail(s, "%s: attribute %s: a name too long or too many", what, name);
            if (v) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, v);
            free(v);
        } else {
            const size_t size = H5Tget_size(ft);
            char *buf = size && size <= (out->max ? out->max : MAX_NAME) ? calloc((size_t)n, size + 1) : NULL;
            H5Tset_size(mt, size + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            if (!buf || H5Aread(a, mt, buf) < 0)
                s = rg_fail(RG_ERR_FORMAT, "%s: cannot read %s (strings of %zu bytes)", what, name, size);
            for (hssize_t i = 0; !s && i < n; i++) {
                const char *e = buf + (size_t)i * (size + 1);
                if ((s = names_add(out, e, strnlen(e, size))))
                    s = rg_fail(s, "%s: attribute %s: too many names", what, name);
            }
            free(buf);
        }
    }
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return s;
}

/* An attribute as Keras saves it: whole, or split into NAME0, NAME1, ... */
static rg_status read_split_strings(hid_t obj, const char *name, names *out, const char *what) {
    if (H5Aexists(obj, name) > 0) return read_strings(obj, name, out, what);
    char part[64];
    rg_status s = RG_OK;
    int k = 0;
    for (; !s; k++) {
        snprintf(part, sizeof part, "%s%d", name, k);
        if (H5Aexists(obj, part) <= 0) break;
        s = read_strings(obj, part, out, what);
    }
    if (!s && k == 0) s = rg_fail(RG_ERR_FORMAT, "%s: no attribute %s: not a Keras weights file", what, name);
    return s;
}

/* The role of weight name "conv1_conv/kernel:0": "kernel". */
static void role_of(const char *weight, char *role, size_t len) {
    const char *slash = strrchr(weight, '/');
    snprintf(role, len, "%s", slash ? slash + 1 : weight);
    char *colon = strrchr(role, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) *colon = 0;
}

/* One float32 dataset of a layer group, its dims checked (rank, the product within
 * MAX_FLOATS, and what the file stores) before its memory is allocated. */
static rg_status read_dataset(hid_t layer, const char *path, float **out, int *ndim, hsize_t dims[4],
                              const char *what) {
    *out = NULL;
    if (H5Lexists(layer, path, H5P_DEFAULT) <= 0) /* H5Lexists takes one step: check each */
        return rg_fail(RG_ERR_FORMAT, "%s: the weight '%s' its weight_names lists is missing", what, path);
    hid_t d = H5Dopen2(layer, path, H5P_DEFAULT);
    if (d < 0) return rg_fail(RG_ERR_FORMAT, "%s: '%s' is not a dataset", what, path);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    rg_status s = RG_OK;
    const int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    size_t count = 1;
    if (rank < 0 || rank > 4) {
        s = rg_fail(RG_ERR_FORMAT, "%s: '%s' has %d dimensions (at most 4)", what, path, rank);
    } else if (ty < 0 || H5Tget_class(ty) != H5T_FLOAT) {
        s = rg_fail(RG_ERR_FORMAT, "%s: '%s' does not hold floating-point values", what, path);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int k = 0; k < rank && !s; k++)
            if (dims[k] == 0 || dims[k] > MAX_FLOATS || (count *= (size_t)dims[k]) > MAX_FLOATS)
                s = rg_fail(RG_ERR_FORMAT, "%s: '%s' declares %llu values in dimension %d: too "
                                           "many", what, path, (unsigned long long)dims[k], k + 1);
    }
    /* the values must be in the file: its stored bytes, compressed at most 1032-fold
     * (deflate's ceiling), before the memory for them is taken */
    const double stored = s ? 0 : (double)H5Dget_storage_size(d);
    if (!s && (double)count * sizeof(float) > stored * 1032)
        s = rg_fail(RG_ERR_FORMAT, "%s: '%s' declares %zu values but the file stores %.0f bytes of them: the file "
                                   "is damaged or truncated", what, path, count, stored);
    float *v = s ? NULL : malloc(count * sizeof *v);
    if (!s && !v) s = rg_fail(RG_ERR_MEMORY, "%s: out of memory for '%s' (%zu values)", what, path, count);
    if (!s && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        s = rg_fail(RG_ERR_FORMAT, "%s: cannot read '%s' (truncated file?)", what, path);
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (s) free(v);
    else *out = v, *ndim = rank;
    return s;
}

/* Keras's layout of a weight to regrad's (a new array; v is freed). */
static float *to_regrad(float *v, int ndim, const hsize_t *k, const char *role, int shape[4]) {
    if (ndim == 4) { /* (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, in, m) -> (in m, 1, kh, kw) */
        const size_t kh = k[0], kw = k[1], ci = k[2], co = k[3];
        const bool depthwise = strcmp(role, "depthwise_kernel") == 0;
        float *t = malloc(kh * kw * ci * co * sizeof *t);
        if (!t) return free(v), NULL;
        for (size_t y = 0; y < kh; y++)
            for (size_t x = 0; x < kw; x++)
                for (size_t i = 0; i < ci; i++)
                    for (size_t o = 0; o < co; o++) {
                        const float w = v[((y * kw + x) * ci + i) * co + o];
                        if (depthwise) t[((i * co + o) * kh + y) * kw + x] = w;
                        else t[((o * ci + i) * kh + y) * kw + x] = w;
                    }
        free(v);
        if (depthwise) shape[0] = (int)(ci * co), shape[1] = 1;
        else shape[0] = (int)co, shape[1] = (int)ci;
        shape[2] = (int)kh, shape[3] = (int)kw;
        return t;
    }
    if (ndim == 2) { /* (in, out) -> (out, in) */
        float *t = malloc(k[0] * k[1] * sizeof *t);
        if (!t) return free(v), NULL;
        for (size_t i = 0; i < k[0]; i++)
            for (size_t o = 0; o < k[1]; o++) t[o * k[0] + i] = v[i * k[1] + o];
        free(v);
        shape[0] = (int)k[1], shape[1] = (int)k[0];
        return t;
    }
    for (int d = 0; d < ndim; d++) shape[d] = (int)k[d];
    return v;
}

/* Every weight of one layer group into f. */
static rg_status read_layer(hid_t wg, const char *layer, rg_tensor_file *f, const char *path) {
    char what[1400];
    snprintf(what, sizeof what, "%s: layer '%s'", path, layer);
    if (H5Lexists(wg, layer, H5P_DEFAULT) <= 0)
        return rg_fail(RG_ERR_FORMAT, "%s: no group for it, though layer_names lists it", what);
    hid_t g = H5Gopen2(wg, layer, H5P_DEFAULT);
    if (g < 0) return rg_fail(RG_ERR_FORMAT, "%s: not a group", what);
    names w = {0};
    rg_status s = H5Aexists(g, "weight_names") > 0 ? read_split_strings(g, "weight_names", &w, what) : RG_OK;
    for (int i = 0; i < w.n && !s; i++) {
        float *v;
        int ndim = 0;
        hsize_t dims[4];
        char role[MAX_NAME + 1], name[2 * MAX_NAME + 2];
        if ((s = read_dataset(g, w.v[i], &v, &ndim, dims, what))) break;
        role_of(w.v[i], role, sizeof role);
        snprintf(name, sizeof name, "%s.%s", layer,
                 strcmp(role, "depthwise_kernel") == 0 ? "kernel" : role);
        int shape[4];
        float *t = to_regrad(v, ndim, dims, role, shape);
        s = t ? rg_tensor_file_put(f, name, ndim, shape, t) : rg_fail(RG_ERR_MEMORY, "%s: out of memory", what);
    }
    names_free(&w);
    H5Gclose(g);
    return s;
}

/* The reading itself (in the child process of rg_keras_load). */
/* ---- Keras 3's .weights.h5: /layers/<object>/vars/0, 1, ..., the object named by type
 * ("conv2d_3"), the layer's own name in the vars group's attribute `name` (Keras >= 3.6);
 * nested models recurse through their own layers/ group. */

/* The roles of a Keras 3 layer's variables, by its object's type and how many there are. */
static const char *const *roles_of(const char *object, int n) {
    static const char *const kernel_bias[] = {"kernel", "bias"};
    static const char *const depthwise[] = {"depthwise_kernel", "bias"};
    static const char *const bn[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    char type[MAX_NAME + 1];
    snprintf(type, sizeof type, "%s", object);
    char *u = strrchr(type, '_'); /* conv2d_3 -> conv2d */
    if (u && u[1] && strspn(u + 1, "0123456789") == strlen(u + 1)) *u = 0;
    if ((!strcmp(type, "conv2d") || !strcmp(type, "dense")) && n <= 2) return kernel_bias;
    if (!strcmp(type, "depthwise_conv2d") && n <= 2) return depthwise;
    if (!strcmp(type, "batch_normalization") && n == 4) return bn;
    return NULL;
}

static rg_status read_k3_layers(hid_t layers, rg_tensor_file *f, const char *path);

/* One object of a layers/ group: its variables under its Keras name, or its own layers. */
static rg_status read_k3_object(hid_t layers, const char *object, rg_tensor_file *f, const char *path) {
    char what[1400], vars_path[MAX_NAME + 16];
    snprintf(what, sizeof what, "%s: layers/%s", path, object);
    snprintf(vars_path, sizeof vars_path, "%s/vars", object);
    hid_t obj = H5Gopen2(layers, object, H5P_DEFAULT);
    if (obj < 0) return rg_fail(RG_ERR_FORMAT, "%s: not a group", what);
    rg_status s = RG_OK;
    if (H5Lexists(obj, "layers", H5P_DEFAULT) > 0) { /* a nested model */
        hid_t inner = H5Gopen2(obj, "layers", H5P_DEFAULT);
        s = inner < 0 ? rg_fail(RG_ERR_FORMAT, "%s/layers: not a group", what) : read_k3_layers(inner, f, path);
        if (inner >= 0) H5Gclose(inner);
    }
    hid_t vars = !s && H5Lexists(obj, "vars", H5P_DEFAULT) > 0 ? H5Gopen2(obj, "vars", H5P_DEFAULT) : -1;
    H5G_info_t info = {0};
    if (vars >= 0 && H5Gget_info(vars, &info) < 0) s = rg_fail(RG_ERR_FORMAT, "%s/vars: unreadable", what);
    if (!s && vars >= 0 && info.nlinks > 0) {
        names name = {0};
        const char *const *roles = roles_of(object, (int)info.nlinks);
        if (info.nlinks > 8 || !roles)
            s = rg_fail(RG_ERR_FORMAT, "%s: a layer of %d variables of a kind regrad does not read "
                                       "(conv2d, depthwise_conv2d, dense, batch_normalization)", what,
                        (int)info.nlinks);
        else if (H5Aexists(vars, "name") <= 0)
            s = rg_fail(RG_ERR_FORMAT, "%s: no layer name (a file of Keras before 3.6): save it "
                                       "again with Keras 3.6 or later, or with save_weights('x.h5')", what);
        else if (!(s = read_strings(vars, "name", &name, what)) && name.n != 1)
            s = rg_fail(RG_ERR_FORMAT, "%s: the layer's name is not one string", what);
        for (hsize_t k = 0; !s && k < info.nlinks; k++) {
            char index[24], full[3 * MAX_NAME];
            snprintf(index, sizeof index, "%llu", (unsigned long long)k);
            float *v;
            int ndim = 0, shape[4];
            hsize_t dims[4];
            if ((s = read_dataset(vars, index, &v, &ndim, dims, what))) break;
            snprintf(full, sizeof full, "%s.%s", name.v[0],
                     strcmp(roles[k], "depthwise_kernel") == 0 ? "kernel" : roles[k]);
            float *t = to_regrad(v, ndim, dims, roles[k], shape);
            s = t ? rg_tensor_file_put(f, full, ndim, shape, t) : rg_fail(RG_ERR_MEMORY, "%s: out of memory", what);
        }
        names_free(&name);
    }
    if (vars >= 0) H5Gclose(vars);
    H5Gclose(obj);
    return s;
}

/* Every object of a layers/ group (the order of names does not matter: each comes with its
 * own). */
static rg_status read_k3_layers(hid_t layers, rg_tensor_file *f, const char *path) {
    H5G_info_t info;
    if (H5Gget_info(layers, &info) < 0 || info.nlinks > MAX_NAMES)
        return rg_fail(RG_ERR_FORMAT, "%s: layers/ is unreadable or too large", path);
    rg_status s = RG_OK;
    for (hsize_t i = 0; i < info.nlinks && !s; i++) {
        char object[MAX_NAME + 1];
        const ssize_t len = H5Lget_name_by_idx(layers, ".", H5_INDEX_NAME, H5_ITER_INC, i, object,
                                               sizeof object, H5P_DEFAULT);
        if (len <= 0 || len > MAX_NAME) s = rg_fail(RG_ERR_FORMAT, "%s: a layer object without a usable name", path);
        else s = read_k3_object(layers, object, f, path);
    }
    return s;
}

/* ---- .keras archives: a zip of metadata.json, config.json and model.weights.h5 (stored,
 * or deflated by a re-zip), read through its central directory, every offset and size
 * checked against the file. */

#define ZIP_MAX_BYTES ((size_t)8 << 30)

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The bytes of the entry `want` of the zip z (n bytes) into a new buffer. */
static rg_status zip_entry(const unsigned char *z, size_t n, const char *want, unsigned char **out,
                           size_t *len, const char *path) {
    *out = NULL;
    size_t eocd = n >= 22 ? n - 22 : 0;
    while (n >= 22 && eocd > 0 && le32(z + eocd) != 0x06054b50 && n - eocd < 22 + 65535) eocd--;
    if (n < 22 || le32(z + eocd) != 0x06054b50)
        return rg_fail(RG_ERR_FORMAT, "%s: not a zip archive (no end of central directory)", path);
    const size_t entries = le16(z + eocd + 10), cd = le32(z + eocd + 16);
    for (size_t i = 0, at = cd; i < entries; i++) {
        if (at > n || n - at < 46 || le32(z + at) != 0x02014b50)
            return rg_fail(RG_ERR_FORMAT, "%s: a corrupt central directory (entry %zu)", path, i);
        const unsigned method = le16(z + at + 10);
        const uint32_t crc = le32(z + at + 16);
        const size_t csize = le32(z + at + 20), usize = le32(z + at + 24), name_len = le16(z + at + 28);
        const size_t skip = 46 + name_len + le16(z + at + 30) + le16(z + at + 32), local = le32(z + at + 42);
        if (n - at < skip) return rg_fail(RG_ERR_FORMAT, "%s: a corrupt central directory", path);
        const bool match = name_len == strlen(want) && memcmp(z + at + 46, want, name_len) == 0;
        at += skip;
        if (!match) continue;
        if (local > n || n - local < 30 || le32(z + local) != 0x04034b50)
            return rg_fail(RG_ERR_FORMAT, "%s: %s: a corrupt local header", path, want);
        /* DEFLATE expands at most 1032-fold: a larger declared size is a lie */
        const size_t data = local + 30 + le16(z + local + 26) + le16(z + local + 28);
        if (data > n || csize > n - data || usize > ZIP_MAX_BYTES || (method != 0 && method != 8) ||
            (method == 0 && csize != usize) || (method == 8 && usize / 1032 > csize))
            return rg_fail(RG_ERR_FORMAT, "%s: %s declares %zu bytes (%zu stored, method %u): not "
                                          "what the archive holds", path, want, usize, csize, method);
        unsigned char *b = malloc(usize ? usize : 1);
        if (!b) return rg_fail(RG_ERR_MEMORY, "%s: out of memory for %s (%zu bytes)", path, want, usize);
        if (method == 0) {
            memcpy(b, z + data, usize);
        } else { /* raw DEFLATE */
            z_stream st = {.next_in = (Bytef *)(z + data), .avail_in = (uInt)csize, .next_out = b,
                           .avail_out = (uInt)usize};
            const int r = inflateInit2(&st, -15) == Z_OK ? inflate(&st, Z_FINISH) : Z_DATA_ERROR;
            inflateEnd(&st);
            if (r != Z_STREAM_END || st.total_out != usize) {
                free(b);
                return rg_fail(RG_ERR_FORMAT, "%s: %s does not inflate to its %zu bytes", path, want, usize);
            }
        }
        if (crc32(0L, b, (uInt)usize) != crc) {
            free(b);
            return rg_fail(RG_ERR_FORMAT, "%s: %s fails its checksum: a damaged archive", path, want);
        }
        *out = b, *len = usize;
        return RG_OK;
    }
    return rg_fail(RG_ERR_FORMAT, "%s: a zip without %s: not a .keras archive", path, want);
}

/* A whole file into a new buffer (a NUL after it), refused past max bytes. */
static rg_status read_file(const char *path, size_t max, unsigned char **out, size_t *n) {
    *out = NULL, *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return rg_fail(RG_ERR_IO, "%s: cannot open", path);
    rg_status s = RG_OK;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 || (size_t)size > max ||
        fseek(fp, 0, SEEK_SET) != 0)
        s = rg_fail(RG_ERR_IO, "%s: cannot read (or larger than %zu MiB)", path, max >> 20);
    else if (!(*out = malloc((size_t)size + 1)))
        s = rg_fail(RG_ERR_MEMORY, "%s: out of memory", path);
    else if (fread(*out, 1, (size_t)size, fp) != (size_t)size)
        s = rg_fail(RG_ERR_IO, "%s: read failed", path);
    fclose(fp);
    if (s) free(*out), *out = NULL;
    else (*out)[size] = 0, *n = (size_t)size;
    return s;
}

#define KERAS_TMP_MAX 4096

/* A .keras archive's model.weights.h5 copied to a private temporary file in $TMPDIR (else
 * /tmp), named in tmp. */
static rg_status keras_archive_extract(const char *path, char tmp[KERAS_TMP_MAX]) {
    unsigned char *z = NULL, *h5 = NULL;
    size_t n = 0, len = 0;
    rg_status s = read_file(path, ZIP_MAX_BYTES, &z, &n);
    if (!s) s = zip_entry(z, n, "model.weights.h5", &h5, &len, path);
    free(z);
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    /* mkstemp replaces the Xs with a name no other file has */
    if (!s && snprintf(tmp, KERAS_TMP_MAX, "%s/regrad-keras-XXXXXX", dir) >= KERAS_TMP_MAX)
        s = rg_fail(RG_ERR_ARG, "%s: TMPDIR is too long a path: set it to a shorter folder", path);
    errno = 0;
    const int fd = s ? -1 : mkstemp(tmp);
    size_t done = 0; /* write may take fewer bytes than asked: on until all are written */
    while (!s && fd >= 0 && done < len) {
        const ssize_t w = write(fd, h5 + done, len - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    if (!s && (fd < 0 || done < len)) {
        const int err = errno ? errno : ENOSPC; /* a write of 0 bytes: the disk is full */
        if (fd >= 0) unlink(tmp);
        s = rg_fail(RG_ERR_IO, "%s: cannot write its weights to a temporary file in %s: %s (set "
                               "TMPDIR to a writable folder)", path, dir, strerror(err));
    }
    if (fd >= 0) close(fd);
    free(h5);
    return s;
}

static rg_status keras_read(const char *path, rg_tensor_file **out) {
    *out = NULL;
    quiet();
    if (H5Fis_hdf5(path) <= 0) return rg_fail(RG_ERR_FORMAT, "%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return rg_fail(RG_ERR_IO, "%s: cannot open as HDF5 (truncated or corrupt?)", path);
    /* the legacy weights group: the root, or /model_weights in a whole-model file; else
     * Keras 3's layers/ (Keras 2.13-2.15: _layer_checkpoint_dependencies/) */
    const bool root = H5Aexists(file, "layer_names") > 0 || H5Aexists(file, "layer_names0") > 0;
    hid_t wg = root ? H5Gopen2(file, "/", H5P_DEFAULT)
               : H5Lexists(file, "model_weights", H5P_DEFAULT) > 0 ? H5Gopen2(file, "model_weights", H5P_DEFAULT)
                                                                 : -1;
    const char *k3 = H5Lexists(file, "layers", H5P_DEFAULT) > 0 ? "layers"
                     : H5Lexists(file, "_layer_checkpoint_dependencies", H5P_DEFAULT) > 0
                         ? "_layer_checkpoint_dependencies" : NULL;
    hid_t k3g = wg < 0 && k3 ? H5Gopen2(file, k3, H5P_DEFAULT) : -1;
    rg_status s = RG_OK;
    rg_tensor_file *f = rg_tensor_file_new();
    names layers = {0};
    if (!f) s = RG_ERR_MEMORY;
    else if (wg < 0 && k3g < 0)
        s = rg_fail(RG_ERR_FORMAT, "%s: an HDF5 file without Keras weights (no layer_names, no "
                                   "model_weights, no layers/)", path);
    else if (k3g >= 0)
        s = read_k3_layers(k3g, f, path);
    else if (!(s = read_split_strings(wg, "layer_names", &layers, path)))
        for (int i = 0; i < layers.n && !s; i++) s = read_layer(wg, layers.v[i], f, path);
    if (!s) s = rg_tensor_file_set_meta(f, "format", k3g >= 0 ? "keras3-weights-h5" : "keras-h5");
    names config = {.max = MODEL_CONFIG_MAX}; /* a whole-model file's architecture */
    if (!s && H5Aexists(file, "model_config") > 0 &&
        !(s = read_strings(file, "model_config", &config, path)) && config.n == 1)
        s = rg_tensor_file_set_meta(f, "model_config", config.v[0]);
    names_free(&config);
    names_free(&layers);
    if (wg >= 0) H5Gclose(wg);
    if (k3g >= 0) H5Gclose(k3g);
    H5Fclose(file);
    if (s) rg_tensor_file_free(f);
    else *out = f;
    return s;
}

/* ---------------------------------------------------------------- writing */

/* A string attribute (variable-length, as h5py 3 writes them) of n strings; n 0: Keras's
 * empty weight_names, an empty float64 array. */
static bool write_strings(hid_t obj, const char *name, const char *const *v, int n, bool scalar) {
    if (n == 0) {
        const hsize_t zero = 0;
        hid_t sp = H5Screate_simple(1, &zero, NULL);
        hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        const bool ok = a >= 0;
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        return ok;
    }
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, H5T_VARIABLE);
    const hsize_t count = (hsize_t)n;
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, NULL);
    hid_t a = H5Acreate2(obj, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    const bool ok = a >= 0 && H5Awrite(a, ty, v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(ty);
    return ok;
}

/* One weight in Keras's layout at `path` (relative, intermediate groups made) in group g. */
static bool write_weight(hid_t g, const char *path, const float *v, int ndim, const int *shape,
                         bool depthwise) {
    hsize_t dims[4];
    size_t count = 1;
    for (int d = 0; d < ndim; d++) count *= (size_t)shape[d];
    float *t = malloc((count ? count : 1) * sizeof *t);
    if (!t) return false;
    if (ndim == 4) { /* (out, in, kh, kw) -> (kh, kw, in, out); depthwise (c m, 1, kh, kw) -> (kh, kw, c, m) */
        const size_t co = (size_t)shape[0], ci = (size_t)shape[1], kh = (size_t)shape[2], kw = (size_t)shape[3];
        const size_t c = depthwise ? co : ci, m = depthwise ? 1 : co; /* regrad's depthwise: m = 1 */
        for (size_t o = 0; o < co; o++)
            for (size_t i = 0; i < ci; i++)
                for (size_t y = 0; y < kh; y++)
                    for (size_t x = 0; x < kw; x++) {
                        const float w = v[((o * ci + i) * kh + y) * kw + x];
                        if (depthwise) t[((y * kw + x) * c + o) * m] = w;
                        else t[((y * kw + x) * ci + i) * co + o] = w;
                    }
        dims[0] = kh, dims[1] = kw, dims[2] = c, dims[3] = m;
    } else if (ndim == 2) { /* (out, in) -> (in, out) */
        for (int o = 0; o < shape[0]; o++)
            for (int i = 0; i < shape[1]; i++) t[(size_t)i * shape[0] + o] = v[(size_t)o * shape[1] + i];
        dims[0] = (hsize_t)shape[1], dims[1] = (hsize_t)shape[0];
    } else {
        memcpy(t, v, count * sizeof *t);
        for (int d = 0; d < ndim; d++) dims[d] = (hsize_t)shape[d];
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(g, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    const bool ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(lcpl);
    free(t);
    return ok;
}

/* The layers with weights that a Keras model has (auxiliary heads are regrad's own). */
static bool exported(const rg_graph *g, int i) {
    return g->nodes[i].n_params > 0 && strncmp(g->nodes[i].name, "aux_head_", 9) != 0;
}

/* One layer group: its weight_names and datasets, in Keras's order (regrad declares them in
 * it: kernel, bias; gamma, beta, moving_mean, moving_variance). */
static bool write_layer(hid_t root, const rg_graph *g, const rg_node_impl *n) {
    int groups = 1;
    const struct rg_conv_geom *q = n->op == RG_OP_CONV2D ? rg_conv_geometry(n, &groups) : NULL;
    const bool depthwise = q && groups > 1 && groups == rg_conv_channels(q) && groups == n->shape[0];
    hid_t lg = H5Gcreate2(root, n->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (lg < 0) return false;
    char paths[8][RG_NAME_MAX + 48];
    const char *names_v[8];
    bool ok = n->n_params <= 8;
    for (int k = 0; ok && k < n->n_params; k++) {
        const rg_param_impl *p = &g->params[n->first_param + k];
        const bool dw = depthwise && strcmp(p->suffix, "kernel") == 0;
        snprintf(paths[k], sizeof paths[k], "%s/%s:0", n->name, dw ? "depthwise_kernel" : p->suffix);
        names_v[k] = paths[k];
        const float *v = (p->state ? g->state_buf : g->param_buf) + p->offset;
        ok = write_weight(lg, paths[k], rg_host(g, v, p->size), p->ndim, p->shape, dw);
    }
    ok = ok && write_strings(lg, "weight_names", names_v, n->n_params, false);
    H5Gclose(lg);
    return ok;
}

/* ---- Keras 3's .weights.h5: layers/<class>[_N]/vars/0, 1, ...  Keras finds a layer's
 * group by the position of the layer among those of its class in model.layers, and orders
 * model.layers as its Functional graph does: by depth (the longest path to the output),
 * deepest first, ties by a depth-first walk from the output through each layer's inputs in
 * order.  That order is computed here on the graph; the helper nodes that regrad adds for
 * one Keras layer (NAME_act after a Conv2D or Dense, NAME_N in a chain of sums) do not
 * count as layers. */

/* Whether regrad node c, reading node in, is part of the same Keras layer. */
static bool same_layer(const rg_node_impl *c, const rg_node_impl *in) {
    const size_t n = strlen(in->name), k = strlen(c->name);
    if (c->op == RG_OP_ACTIVATION && k == n + 4 && strncmp(c->name, in->name, n) == 0 &&
        strcmp(c->name + n, "_act") == 0)
        return true;
    if (in->op != RG_OP_ADD || c->op != RG_OP_ADD || n <= k + 1 || strncmp(in->name, c->name, k) != 0 ||
        in->name[k] != '_')
        return false;
    return strspn(in->name + k + 1, "0123456789") == n - k - 1; /* NAME_N feeding NAME */
}

static void walk_from_output(const rg_graph *g, int v, int *index, int *next) {
    if (index[v] >= 0) return;
    index[v] = (*next)++;
    for (int k = 0; k < g->nodes[v].n_inputs; k++) walk_from_output(g, g->nodes[v].inputs[k], index, next);
}

/* The exported nodes in Keras's model.layers order into order; returns their count. */
static int keras_layer_order(const rg_model *m, int *order) {
    const rg_graph *g = m->graph;
    const int n = g->n_nodes;
    int *index = malloc((size_t)n * sizeof *index), *depth = malloc((size_t)n * sizeof *depth), count = 0, next = 0;
    if (!index || !depth) return free(index), free(depth), -1;
    for (int i = 0; i < n; i++) index[i] = depth[i] = -1;
    walk_from_output(g, m->logits, index, &next);
    depth[m->logits] = 0;
    for (int i = n - 1; i >= 0; i--) /* consumers come after their inputs */
        for (int k = 0; depth[i] >= 0 && k < g->nodes[i].n_inputs; k++) {
            const int in = g->nodes[i].inputs[k];
            const int d = depth[i] + !same_layer(&g->nodes[i], &g->nodes[in]);
            if (d > depth[in]) depth[in] = d;
        }
    for (int i = 0; i < n; i++) {
        if (depth[i] < 0 || !exported(g, i)) continue;
        int j = count++; /* insertion: deeper first, then earlier in the walk */
        while (j > 0 && (depth[order[j - 1]] < depth[i] ||
                         (depth[order[j - 1]] == depth[i] && index[order[j - 1]] > index[i])))
            order[j] = order[j - 1], j--;
        order[j] = i;
    }
    free(index), free(depth);
    return count;
}

/* One layer's group layers/<class>[_N]/vars: datasets 0, 1, ... and its name (Keras >= 3.6). */
static bool write_k3_layer(hid_t layers, const rg_graph *g, const rg_node_impl *n, int *counts) {
    int groups = 1;
    const struct rg_conv_geom *q = n->op == RG_OP_CONV2D ? rg_conv_geometry(n, &groups) : NULL;
    const bool depthwise = q && groups > 1 && groups == rg_conv_channels(q) && groups == n->shape[0];
    const char *cls = n->op == RG_OP_DENSE ? "dense" : n->op == RG_OP_BATCH_NORM ? "batch_normalization"
                      : depthwise ? "depthwise_conv2d" : "conv2d";
    int *c = &counts[n->op == RG_OP_DENSE ? 0 : n->op == RG_OP_BATCH_NORM ? 1 : depthwise ? 2 : 3];
    char path[96];
    if (*c) snprintf(path, sizeof path, "%s_%d/vars", cls, *c);
    else snprintf(path, sizeof path, "%s/vars", cls);
    ++*c;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t v = H5Gcreate2(layers, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    const char *name = n->name;
    bool ok = v >= 0 && write_strings(v, "name", &name, 1, true);
    for (int k = 0; ok && k < n->n_params; k++) {
        const rg_param_impl *p = &g->params[n->first_param + k];
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        const float *w = (p->state ? g->state_buf : g->param_buf) + p->offset;
        ok = write_weight(v, idx, rg_host(g, w, p->size), p->ndim, p->shape, depthwise && k == 0);
    }
    if (v >= 0) H5Gclose(v);
    return ok;
}

static bool write_keras3(hid_t f, const rg_model *m) {
    int *order = malloc((size_t)(m->graph->n_nodes ? m->graph->n_nodes : 1) * sizeof *order);
    const int n = order ? keras_layer_order(m, order) : -1;
    hid_t vars = H5Gcreate2(f, "vars", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = n >= 0 && vars >= 0 && layers >= 0;
    int counts[4] = {0};
    for (int i = 0; ok && i < n; i++) ok = write_k3_layer(layers, m->graph, &m->graph->nodes[order[i]], counts);
    if (vars >= 0) H5Gclose(vars);
    if (layers >= 0) H5Gclose(layers);
    free(order);
    return ok;
}

static bool ends_with(const char *s, const char *tail) {
    const size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

rg_status rg_keras_save(const rg_model *m, const char *path) {
    const rg_graph *g = m->graph;
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before exporting it");
    quiet();
    const size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    const char **layer_names = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *layer_names);
    if (!tmp || !layer_names) {
        free(tmp), free(layer_names);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    snprintf(tmp, len + 16, "%s.tmp-%d", path, (int)getpid());
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = f >= 0;
    int n = 0;
    const bool keras3 = ends_with(path, ".weights.h5");
    if (keras3) ok = ok && write_keras3(f, m);
    for (int i = 0; ok && !keras3 && i < g->n_nodes; i++)
        if (exported(g, i)) {
            layer_names[n++] = g->nodes[i].name;
            ok = write_layer(f, g, &g->nodes[i]);
        }
    const char *backend = "tensorflow", *version = "2.15.0";
    ok = ok && (keras3 || (write_strings(f, "layer_names", layer_names, n, false) &&
                           write_strings(f, "backend", &backend, 1, true) &&
                           write_strings(f, "keras_version", &version, 1, true)));
    if (f >= 0 && H5Fclose(f) < 0) ok = false;
    rg_status s = RG_OK;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        s = rg_fail(RG_ERR_IO, "cannot write '%s' (check the folder exists and is writable)", path);
    }
    free(tmp);
    free(layer_names);
    return s;
}

/* Seconds a child may take: reading the ImageNet ResNet50V2 file takes about one, and a
 * malformed file can send libhdf5 round a loop for good. */
static unsigned read_seconds = 60;

void rg_keras_time_limit(unsigned seconds) { read_seconds = seconds; }

/* The child: the file read, its tensors to the pipe as a safetensors image after 'T', or
 * 'E', the status and the message. */
static void child_reads(const char *path, int fd) {
    signal(SIGALRM, SIG_DFL); /* whatever the parent made of it: SIGALRM ends a reading */
    alarm(read_seconds);      /* that never does */
    rg_tensor_file *f;
    rg_status s = keras_read(path, &f);
    rg_tensor_writer *w = s ? NULL : rg_tensor_writer_create();
    if (!s && !w) s = RG_ERR_MEMORY;
    for (int i = 0; !s && i < rg_tensor_file_count(f); i++) {
        int ndim, shape[RG_MAX_DIMS];
        const char *name = rg_tensor_file_name(f, i);
        rg_tensor_file_shape(f, i, &ndim, shape);
        s = rg_tensor_writer_add(w, name, rg_tensor_file_find(f, name, NULL, NULL, NULL), ndim, shape);
    }
    if (!s) s = rg_tensor_writer_meta(w, "format", rg_tensor_file_meta(f, "format"));
    const char *config = s ? NULL : rg_tensor_file_meta(f, "model_config");
    if (config) s = rg_tensor_writer_meta(w, "model_config", config);
    if (!s && write(fd, "T", 1) == 1 && rg_tensor_writer_to_fd(w, fd) == RG_OK) _exit(0);
    const char *msg = rg_last_error();
    const unsigned char head[2] = {'E', (unsigned char)(s ? s : RG_ERR_IO)};
    if (write(fd, head, 2) == 2 && write(fd, msg, strlen(msg)) >= 0) _exit(1);
    _exit(1);
}

/* Everything the child sends, until it closes the pipe. */
static unsigned char *read_pipe(int fd, size_t *n) {
    size_t cap = 1 << 16;
    unsigned char *b = malloc(cap);
    *n = 0;
    for (ssize_t got; b; *n += (size_t)got) {
        if (*n == cap) {
            unsigned char *t = realloc(b, cap *= 2);
            if (!t) return free(b), NULL;
            b = t;
        }
        if ((got = read(fd, b + *n, cap - *n)) <= 0) {
            if (got < 0 && errno == EINTR) {
                got = 0;
                continue;
            }
            break;
        }
    }
    return b;
}

/* libhdf5 trusts what it reads (malformed files make it read and write out of bounds), so
 * the file is read in a child process: a crash there is an error here, never a crash. */
static rg_status load_in_child(const char *path, rg_tensor_file **out) {
    *out = NULL;
    int fds[2];
    if (pipe(fds) != 0) return rg_fail(RG_ERR_IO, "%s: cannot open a pipe: %s", path, strerror(errno));
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return rg_fail(RG_ERR_MEMORY, "%s: cannot start a process to read it: %s", path, strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child_reads(path, fds[1]);
    }
    close(fds[1]);
    size_t n;
    unsigned char *b = read_pipe(fds[0], &n);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) continue;
    rg_status s;
    if (!b) s = rg_fail(RG_ERR_MEMORY, "%s: out of memory", path);
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && n > 1 && b[0] == 'T')
        s = rg_safetensors_parse(b + 1, n - 1, path, out);
    else if (WIFEXITED(status) && n >= 2 && b[0] == 'E')
        s = rg_fail(b[1] > RG_OK && b[1] < RG_STOPPED ? (rg_status)b[1] : RG_ERR_FORMAT, "%.*s",
                    (int)(n - 2 < 1000 ? n - 2 : 1000), (const char *)b + 2);
    else
        s = WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
                ? rg_fail(RG_ERR_FORMAT, "%s: libhdf5 did not finish reading it in %u s: a corrupt "
                                         "file", path, read_seconds)
                : rg_fail(RG_ERR_FORMAT, "%s: libhdf5 failed reading it (%s %d): a corrupt file", path,
                          WIFSIGNALED(status) ? "signal" : "exit",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    free(b);
    return s;
}

bool rg_is_zip(const unsigned char *head, size_t n) { return n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0; }

rg_status rg_keras_load(const char *path, rg_tensor_file **out) {
    *out = NULL;
    unsigned char head[4] = {0};
    FILE *fp = fopen(path, "rb");
    const bool zip = fp && rg_is_zip(head, fread(head, 1, 4, fp));
    if (fp) fclose(fp);
    if (!zip) return load_in_child(path, out);
    char tmp[KERAS_TMP_MAX]; /* a .keras archive: the zip read here, its HDF5 in the child */
    rg_status s = keras_archive_extract(path, tmp);
    if (s) return s;
    if ((s = load_in_child(tmp, out))) s = rg_fail(s, "%s (model.weights.h5): %s", path, rg_last_error());
    unlink(tmp);
    return s;
}

rg_status rg_keras_model_config(const char *path, char **json) {
    *json = NULL;
    unsigned char head[8] = {0}, *b = NULL;
    FILE *fp = fopen(path, "rb");
    const size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
    if (fp) fclose(fp);
    rg_status s = RG_OK;
    if (rg_is_hdf5(head, got)) { /* a whole-model .h5: its model_config, read in the child */
        rg_tensor_file *f = NULL;
        if ((s = rg_keras_load(path, &f))) return s;
        const char *config = rg_tensor_file_meta(f, "model_config");
        if (!config)
            s = rg_fail(RG_ERR_FORMAT, "%s: Keras weights without the model (save_weights writes "
                                       "those): give the architecture as model.to_json() or a "
                                       ".keras file, and this file to --weights", path);
        else if (!(*json = strdup(config)))
            s = rg_fail(RG_ERR_MEMORY, "%s: out of memory", path);
        rg_tensor_file_free(f);
        return s;
    }
    size_t n = 0;
    const bool zip = rg_is_zip(head, got);
    if ((s = read_file(path, zip ? ZIP_MAX_BYTES : MODEL_CONFIG_MAX, &b, &n))) return s;
    if (zip) { /* a .keras archive: its config.json */
        unsigned char *c = NULL;
        size_t len = 0;
        s = zip_entry(b, n, "config.json", &c, &len, path);
        free(b);
        if (s) return s;
        char *t = realloc(c, len + 1);
        if (!t) return free(c), rg_fail(RG_ERR_MEMORY, "%s: out of memory", path);
        t[len] = 0;
        *json = t;
        return RG_OK;
    }
    *json = (char *)b; /* JSON text, as model.to_json() writes it */
    return RG_OK;
}
