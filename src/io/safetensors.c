/*
 * safetensors.c — reading safetensors files: an 8-byte little-endian header length, a JSON
 * header {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}, then the raw little-endian data.
 *
 * Nothing in the header is trusted: its length must fit the file, offsets must lie inside
 * the data section and match dtype x shape, and tensors may not overlap.
 */
#include "../internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER_MAX (100u << 20) /* the format's own ceiling on header size */

typedef struct st_tensor {
    char *name;
    int ndim;
    int shape[RG_MAX_DIMS];
    size_t count;
    const float *data;
    size_t begin, end;
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
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
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
    if (f->size < 8) {
        s = rg_fail(RG_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, f->size);
        goto done;
    }
    /* 8 padding bytes so the header can be NUL-terminated and data 4-aligned in place. */
    if (!(f->bytes = malloc(f->size + 8))) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory reading %s (%zu bytes)", path, f->size);
        goto done;
    }
    if (fread(f->bytes, 1, f->size, fp) != f->size) {
        s = rg_fail(RG_ERR_IO, "%s: read failed", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->bytes[i];
    if (hlen > HEADER_MAX || hlen > f->size - 8) {
        s = rg_fail(RG_ERR_FORMAT, "%s: header length %llu does not fit the file (%zu bytes): "
                                   "not a safetensors file, or truncated",
                    path, (unsigned long long)hlen, f->size);
        goto done;
    }
    size_t data_off = 8 + (size_t)hlen, data_size = f->size - data_off;
    char *json = malloc(hlen + 1);
    if (!json) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory");
        goto done;
    }
    memcpy(json, f->bytes + 8, hlen);
    json[hlen] = 0;
    f->header = cJSON_Parse(json);
    free(json);
    if (!cJSON_IsObject(f->header)) {
        s = rg_fail(RG_ERR_FORMAT, "%s: the header is not a JSON object: corrupt file", path);
        goto done;
    }
    /* Align the data section to 4 bytes for float access. */
    if (data_off % 4) {
        size_t pad = 4 - data_off % 4;
        memmove(f->bytes + data_off + pad, f->bytes + data_off, data_size);
        data_off += pad;
    }
    int entries = cJSON_GetArraySize(f->header);
    if (!(f->tensors = calloc((size_t)(entries ? entries : 1), sizeof *f->tensors))) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory");
        goto done;
    }
    cJSON *e;
    cJSON_ArrayForEach(e, f->header) {
        if (strcmp(e->string, "__metadata__") == 0) {
            f->meta = e;
            continue;
        }
        if ((s = parse_entry(path, e, &f->tensors[f->n], data_size))) goto done;
        f->tensors[f->n].data = (const float *)(f->bytes + data_off + f->tensors[f->n].begin);
        f->n++;
    }
    if (f->meta && !cJSON_IsObject(f->meta)) {
        s = rg_fail(RG_ERR_FORMAT, "%s: __metadata__ is not an object", path);
        goto done;
    }
    st_tensor *sorted = malloc((size_t)(f->n ? f->n : 1) * sizeof *sorted);
    if (!sorted) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory");
        goto done;
    }
    memcpy(sorted, f->tensors, (size_t)f->n * sizeof *sorted);
    qsort(sorted, (size_t)f->n, sizeof *sorted, by_begin);
    for (int i = 1; i < f->n; i++)
        if (sorted[i].begin < sorted[i - 1].end) {
            s = rg_fail(RG_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap: corrupt file", path,
                        sorted[i - 1].name, sorted[i].name);
            break;
        }
    free(sorted);
done:
    fclose(fp);
    if (s) rg_tensor_file_free(f);
    else *out = f;
    return s;
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
