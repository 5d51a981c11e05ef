/*
 * safetensors.c — safetensors files: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}, then the raw little-endian data.
 *
 * Reading trusts nothing in the header: its length must fit the file, offsets must lie
 * inside the data section and match dtype x shape, names must be unique, metadata values
 * strings, and tensors may not overlap.  Writing is atomic: a temporary file in the same
 * folder, fsync, rename over the target, fsync of the folder, so a crash at any moment
 * leaves either the old file or the new one, whole.
 */
#include "../internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_MAX (100u << 20) /* the format's own ceiling on header size */

typedef struct st_tensor {
    char *name;
    int ndim;
    int shape[RG_MAX_DIMS];
    size_t count;
    const float *data;
    size_t begin, end;
    float *owned; /* a tensor made in memory (rg_tensor_file_put): its data, freed with it */
} st_tensor;

struct rg_tensor_file {
    unsigned char *bytes;
    size_t size;
    st_tensor *tensors;
    int n;
    cJSON *meta;
    cJSON *header;
};

void rg_tensor_file_free(rg_tensor_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name), free(f->tensors[i].owned);
    free(f->tensors);
    cJSON_Delete(f->header);
    free(f->bytes);
    free(f);
}

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static rg_status parse_entry(const char *path, cJSON *e, st_tensor *t, size_t data_size) {
    cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' needs dtype, shape and data_offsets",
                       path, e->string);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' has dtype %s; regrad reads F32 tensors "
                                      "(convert with torch: t.float())", path, e->string,
                       dtype->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > RG_MAX_DIMS)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, at most %d supported",
                       path, e->string, t->ndim, RG_MAX_DIMS);
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        cJSON *v = cJSON_GetArrayItem(shape, d);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)(1u << 31) ||
            v->valuedouble != (double)(long)v->valuedouble ||
            !rg_mul_size(count, (size_t)v->valuedouble, &count))
            return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' has a bad shape", path, e->string);
        t->shape[d] = (int)v->valuedouble;
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) ||
        b < 0 || en < b || en > (double)data_size)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' lies outside the file's data section "
                                      "(truncated or corrupt file)", path, e->string);
    t->begin = (size_t)b;
    t->end = (size_t)en;
    size_t bytes;
    if (!rg_mul_size(count, 4, &bytes) || bytes != t->end - t->begin)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' has %zu bytes for a shape of %zu floats",
                       path, e->string, t->end - t->begin, count);
    if (t->begin % 4)
        return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' is not aligned to 4 bytes", path, e->string);
    t->count = count;
    if (!(t->name = strdup(e->string))) return rg_fail(RG_ERR_MEMORY, "out of memory");
    return RG_OK;
}

/* Parses f->bytes (f->size bytes, 8 spare at the end) in place. */
static rg_status parse(rg_tensor_file *f, const char *path) {
    if (f->size < 8)
        return rg_fail(RG_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path,
                       f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->bytes[i];
    if (hlen > HEADER_MAX || hlen > f->size - 8)
        return rg_fail(RG_ERR_FORMAT, "%s: header length %llu does not fit the file (%zu bytes): "
                                      "not a safetensors file, or truncated",
                       path, (unsigned long long)hlen, f->size);
    size_t data_off = 8 + (size_t)hlen, data_size = f->size - data_off;
    char *json = malloc(hlen + 1);
    if (!json) return rg_fail(RG_ERR_MEMORY, "out of memory");
    memcpy(json, f->bytes + 8, hlen);
    json[hlen] = 0;
    f->header = cJSON_ParseWithLength(json, hlen);
    free(json);
    if (!cJSON_IsObject(f->header))
        return rg_fail(RG_ERR_FORMAT, "%s: the header is not a JSON object: corrupt file", path);
    /* Align the data section to 4 bytes for float access. */
    if (data_off % 4) {
        size_t pad = 4 - data_off % 4;
        memmove(f->bytes + data_off + pad, f->bytes + data_off, data_size);
        data_off += pad;
    }
    int entries = cJSON_GetArraySize(f->header);
    if (!(f->tensors = calloc((size_t)(entries ? entries : 1), sizeof *f->tensors)))
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    cJSON *e;
    rg_status s;
    cJSON_ArrayForEach(e, f->header) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta) return rg_fail(RG_ERR_FORMAT, "%s: two __metadata__ entries", path);
            f->meta = e;
            continue;
        }
        for (int i = 0; i < f->n; i++)
            if (strcmp(f->tensors[i].name, e->string) == 0)
                return rg_fail(RG_ERR_FORMAT, "%s: tensor '%s' appears twice: corrupt file", path,
                               e->string);
        if ((s = parse_entry(path, e, &f->tensors[f->n], data_size))) return s;
        f->tensors[f->n].data = (const float *)(f->bytes + data_off + f->tensors[f->n].begin);
        f->n++;
    }
    if (f->meta) {
        if (!cJSON_IsObject(f->meta))
            return rg_fail(RG_ERR_FORMAT, "%s: __metadata__ is not an object", path);
        cJSON_ArrayForEach(e, f->meta) if (!cJSON_IsString(e))
            return rg_fail(RG_ERR_FORMAT, "%s: metadata value '%s' is not a string", path, e->string);
    }
    st_tensor *sorted = malloc((size_t)(f->n ? f->n : 1) * sizeof *sorted);
    if (!sorted) return rg_fail(RG_ERR_MEMORY, "out of memory");
    memcpy(sorted, f->tensors, (size_t)f->n * sizeof *sorted);
    qsort(sorted, (size_t)f->n, sizeof *sorted, by_begin);
    s = RG_OK;
    for (int i = 1; i < f->n && !s; i++)
        if (sorted[i].begin < sorted[i - 1].end)
            s = rg_fail(RG_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap: corrupt file", path,
                        sorted[i - 1].name, sorted[i].name);
    free(sorted);
    return s;
}

rg_status rg_safetensors_parse(const void *bytes, size_t n, const char *what, rg_tensor_file **out) {
    *out = NULL;
    rg_tensor_file *f = calloc(1, sizeof *f);
    if (!f || !(f->bytes = malloc(n + 8))) {
        free(f);
        return rg_fail(RG_ERR_MEMORY, "out of memory reading %s (%zu bytes)", what, n);
    }
    memcpy(f->bytes, bytes, n);
    f->size = n;
    rg_status s = parse(f, what);
    if (s) rg_tensor_file_free(f);
    else *out = f;
    return s;
}

rg_status rg_safetensors_load(const char *path, rg_tensor_file **out) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return rg_fail(RG_ERR_IO, "%s: cannot open (missing or not a regular file)", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return rg_fail(RG_ERR_IO, "%s: cannot open for reading", path);
    rg_tensor_file *f = calloc(1, sizeof *f);
    rg_status s = RG_OK;
    if (!f) {
        fclose(fp);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    f->size = (size_t)st.st_size;
    /* 8 padding bytes so the data can be 4-aligned in place. */
    if (!(f->bytes = malloc(f->size + 8)))
        s = rg_fail(RG_ERR_MEMORY, "out of memory reading %s (%zu bytes)", path, f->size);
    else if (fread(f->bytes, 1, f->size, fp) != f->size)
        s = rg_fail(RG_ERR_IO, "%s: read failed", path);
    else
        s = parse(f, path);
    fclose(fp);
    if (s) rg_tensor_file_free(f);
    else *out = f;
    return s;
}

rg_tensor_file *rg_tensor_file_new(void) {
    rg_tensor_file *f = calloc(1, sizeof *f);
    if (f && (!(f->header = cJSON_CreateObject()) ||
              !(f->meta = cJSON_AddObjectToObject(f->header, "__metadata__")))) {
        cJSON_Delete(f->header);
        free(f);
        f = NULL;
    }
    if (!f) rg_fail(RG_ERR_MEMORY, "out of memory");
    return f;
}

rg_status rg_tensor_file_put(rg_tensor_file *f, const char *name, int ndim, const int *shape,
                             float *data) {
    if (ndim < 0 || ndim > RG_MAX_DIMS) {
        free(data);
        return rg_fail(RG_ERR_SHAPE, "tensor '%s' has %d dimensions: at most %d", name, ndim, RG_MAX_DIMS);
    }
    if (rg_tensor_file_find(f, name, NULL, NULL, NULL)) {
        free(data);
        return rg_fail(RG_ERR_FORMAT, "two tensors named '%s'", name);
    }
    st_tensor *t = realloc(f->tensors, (size_t)(f->n + 1) * sizeof *t);
    char *copy = strdup(name);
    if (!t || !copy) {
        if (t) f->tensors = t;
        free(copy), free(data);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    f->tensors = t;
    t = &f->tensors[f->n++];
    *t = (st_tensor){.name = copy, .ndim = ndim, .count = 1, .data = data, .owned = data};
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->count *= (size_t)shape[d];
    return RG_OK;
}

rg_status rg_tensor_file_set_meta(rg_tensor_file *f, const char *key, const char *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(f->meta, key);
    return cJSON_AddStringToObject(f->meta, key, value) ? RG_OK : rg_fail(RG_ERR_MEMORY, "out of memory");
}

int rg_tensor_file_count(const rg_tensor_file *f) { return f ? f->n : 0; }

const char *rg_tensor_file_name(const rg_tensor_file *f, int i) {
    return (f && i >= 0 && i < f->n) ? f->tensors[i].name : NULL;
}

const float *rg_tensor_file_find(const rg_tensor_file *f, const char *name, size_t *count,
                                 int *ndim, int shape[RG_MAX_DIMS]) {
    for (int i = 0; f && i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) {
            if (count) *count = f->tensors[i].count;
            if (ndim) *ndim = f->tensors[i].ndim;
            if (shape) memcpy(shape, f->tensors[i].shape, sizeof f->tensors[i].shape);
            return f->tensors[i].data;
        }
    return NULL;
}

const char *rg_tensor_file_meta(const rg_tensor_file *f, const char *key) {
    if (!f || !f->meta) return NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *rg_tensor_file_meta_key(const rg_tensor_file *f, int i) {
    if (!f || !f->meta || i < 0) return NULL;
    cJSON *e = cJSON_GetArrayItem(f->meta, i);
    return e ? e->string : NULL;
}

rg_status rg_tensor_file_shape(const rg_tensor_file *f, int i, int *ndim, int shape[RG_MAX_DIMS]) {
    if (!f || i < 0 || i >= f->n) return rg_fail(RG_ERR_ARG, "no tensor %d", i);
    *ndim = f->tensors[i].ndim;
    memcpy(shape, f->tensors[i].shape, sizeof f->tensors[i].shape);
    return RG_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct wr_tensor {
    char *name;
    const float *data;
    int ndim;
    int shape[RG_MAX_DIMS];
    size_t count;
} wr_tensor;

struct rg_tensor_writer {
    wr_tensor *t;
    int n, cap;
    cJSON *meta;
};

rg_tensor_writer *rg_tensor_writer_create(void) {
    rg_tensor_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = cJSON_CreateObject())) {
        free(w);
        w = NULL;
    }
    if (!w) rg_fail(RG_ERR_MEMORY, "out of memory");
    return w;
}

void rg_tensor_writer_free(rg_tensor_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    cJSON_Delete(w->meta);
    free(w);
}

rg_status rg_tensor_writer_add(rg_tensor_writer *w, const char *name, const float *data, int ndim,
                               const int *shape) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0 || ndim < 0 || ndim > RG_MAX_DIMS)
        return rg_fail(RG_ERR_ARG, "bad tensor name or rank for '%s'", name ? name : "");
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return rg_fail(RG_ERR_ARG, "tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wr_tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return rg_fail(RG_ERR_MEMORY, "out of memory");
        w->t = t, w->cap = cap;
    }
    wr_tensor *t = &w->t[w->n];
    if (!(t->name = strdup(name))) return rg_fail(RG_ERR_MEMORY, "out of memory");
    t->data = data;
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->count *= (size_t)shape[d];
    }
    w->n++;
    return RG_OK;
}

rg_status rg_tensor_writer_meta(rg_tensor_writer *w, const char *key, const char *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    if (!cJSON_AddStringToObject(w->meta, key, value ? value : ""))
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    return RG_OK;
}

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

/* Fault injection for the crash-safety test (tests/test_crash.sh): REGRAD_FAULT=write:N
 * kills the process with SIGKILL in the middle of its N-th file write, after the header
 * and half the data.  Nothing else reads this variable. */
static bool fault_now(void) {
    static int writes;
    const char *f = getenv("REGRAD_FAULT");
    int n;
    return f && sscanf(f, "write:%d", &n) == 1 && ++writes == n;
}

/* The header (JSON, then spaces to a multiple of 8 bytes), malloc'd; NULL without memory. */
static char *header_json(const rg_tensor_writer *w, size_t *hlen, size_t *padded) {
    cJSON *h = cJSON_CreateObject();
    if (!h) return NULL;
    if (cJSON_GetArraySize(w->meta) > 0)
        cJSON_AddItemReferenceToObject(h, "__metadata__", w->meta);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, w->t[i].name);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", "F32");
        for (int d = 0; d < w->t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber(w->t[i].shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += w->t[i].count * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (json) *hlen = strlen(json), *padded = (*hlen + 7) / 8 * 8;
    return json;
}

/* The whole file to fd: header length, header, every tensor's data.  A fault injected by
 * REGRAD_FAULT kills the process half way through the data. */
static bool write_image(const rg_tensor_writer *w, int fd, const char *json, size_t hlen,
                        size_t padded, bool fault) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = write_all(fd, len8, 8) && write_all(fd, json, hlen) &&
              write_all(fd, "        ", padded - hlen);
    for (int i = 0; ok && i < w->n; i++) {
        if (fault && i == w->n / 2) raise(SIGKILL);
        ok = write_all(fd, w->t[i].data, w->t[i].count * 4);
    }
    return ok;
}

rg_status rg_tensor_writer_to_fd(const rg_tensor_writer *w, int fd) {
    size_t hlen, padded;
    char *json = header_json(w, &hlen, &padded);
    if (!json) return rg_fail(RG_ERR_MEMORY, "out of memory");
    const bool ok = write_image(w, fd, json, hlen, padded, false);
    free(json);
    return ok ? RG_OK : rg_fail(RG_ERR_IO, "cannot write tensors: %s", strerror(errno));
}

rg_status rg_tensor_writer_save(rg_tensor_writer *w, const char *path) {
    size_t hlen, padded;
    char *json = header_json(w, &hlen, &padded);
    if (!json) return rg_fail(RG_ERR_MEMORY, "out of memory");
    /* the temporary file sits beside the target, so the rename cannot cross file systems */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dir_copy = strdup(path);
    if (!tmp || !dir_copy) {
        free(json), free(tmp), free(dir_copy);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    rg_status s = RG_OK;
    if (fd < 0) {
        s = rg_fail(RG_ERR_IO, "cannot write '%s': %s (check the folder exists and is writable)",
                    path, strerror(errno));
        goto done;
    }
    bool ok = write_image(w, fd, json, hlen, padded, fault_now());
    if (ok) ok = fchmod(fd, 0644) == 0 && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        unlink(tmp);
        s = rg_fail(RG_ERR_IO, "cannot write '%s': %s (disk full?); any earlier file there is "
                               "untouched", path, strerror(err));
        goto done;
    }
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself, durably */
        close(dfd);
    }
done:
    free(json);
    free(tmp);
    free(dir_copy);
    return s;
}
