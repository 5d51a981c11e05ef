/*
 * idx.c — IDX files (the MNIST family's format), raw or gzip, and the dataset specs that
 * name them.
 *
 * An IDX file is a 4-byte magic (0, 0, type, ndim), ndim big-endian 32-bit dimensions, then
 * the data.  Every header value is checked before anything is allocated: the claimed size
 * must fit the file (for gzip, the compressed size times deflate's 1032:1 ceiling), so a
 * hostile header cannot make regrad allocate gigabytes.
 */
#include "../internal.h"
#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_UBYTE 0x08
#define DEFLATE_MAX_RATIO 1032u
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct idx_file {
    gzFile gz;
    const char *path;
    int ndim;
    uint32_t dims[3];
    size_t bytes;   /* data bytes the header claims */
} idx_file;

static rg_status read_exact(idx_file *f, void *dst, size_t n, const char *what) {
    unsigned char *p = dst;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f->gz, p, chunk);
        if (got <= 0) {
            int err = 0;
            const char *msg = gzerror(f->gz, &err);
            if (err != Z_OK && err != Z_BUF_ERROR)
                return rg_fail(RG_ERR_FORMAT, "%s: corrupt compressed data while reading the %s "
                                              "(%s): download the file again", f->path, what, msg);
            return rg_fail(RG_ERR_FORMAT, "%s: truncated: the header promises %zu more bytes "
                                          "of %s than the file holds; download it again",
                           f->path, n, what);
        }
        p += got;
        n -= (size_t)got;
    }
    return RG_OK;
}

/* Opens path and validates its header: expect_ndim dimensions of unsigned bytes. */
static rg_status idx_open(idx_file *f, const char *path, int expect_ndim, const char *kind) {
    memset(f, 0, sizeof *f);
    f->path = path;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return rg_fail(RG_ERR_IO, "%s: cannot open the %s file (missing or not a regular file)%s",
                       path, kind,
                       strstr(path, "fashion-mnist") ? "; install it with: apt-get install "
                                                       "dataset-fashion-mnist" : "");
    f->gz = gzopen(path, "rb");
    if (!f->gz) return rg_fail(RG_ERR_IO, "%s: cannot open the %s file", path, kind);
    unsigned char head[16];
    rg_status s = read_exact(f, head, 4, "header");
    if (s) return s;
    if (head[0] != 0 || head[1] != 0)
        return rg_fail(RG_ERR_FORMAT, "%s: not an IDX file (bad magic %02x%02x%02x%02x): give "
                                      "an IDX %s file, raw or gzip", path, head[0], head[1],
                       head[2], head[3], kind);
    if (head[2] != IDX_UBYTE)
        return rg_fail(RG_ERR_FORMAT, "%s: IDX element type 0x%02x is not supported: %s must "
                                      "be unsigned bytes (0x08)", path, head[2], kind);
    if (head[3] != expect_ndim)
        return rg_fail(RG_ERR_FORMAT, "%s: %s file has %d dimensions, expected %d (%s)", path,
                       kind, head[3], expect_ndim, expect_ndim == 3 ? "count, rows, columns" : "count");
    f->ndim = expect_ndim;
    if ((s = read_exact(f, head + 4, (size_t)4 * expect_ndim, "header"))) return s;
    size_t bytes = 1;
    for (int d = 0; d < expect_ndim; d++) {
        const unsigned char *b = head + 4 + 4 * d;
        f->dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (f->dims[d] == 0 || f->dims[d] > (1u << 30))
            return rg_fail(RG_ERR_FORMAT, "%s: dimension %d is %u, outside 1..2^30: the header "
                                          "is corrupt", path, d + 1, f->dims[d]);
        if (!rg_mul_size(bytes, f->dims[d], &bytes))
            return rg_fail(RG_ERR_FORMAT, "%s: dimensions overflow: the header is corrupt", path);
    }
    /* The data cannot be larger than the file allows. */
    size_t header = 4 + 4 * (size_t)expect_ndim, on_disk = (size_t)st.st_size;
    bool gz = !gzdirect(f->gz);
    size_t ceiling = gz ? on_disk * DEFLATE_MAX_RATIO : on_disk - header;
    if (bytes > ceiling)
        return rg_fail(RG_ERR_FORMAT, "%s: the header claims %zu bytes of data but the file "
                                      "can hold at most %zu: truncated or corrupt", path, bytes,
                       ceiling);
    f->bytes = bytes;
    return RG_OK;
}

/* Reads the data, or only its first `bytes` (0: all, checking that nothing follows it). */
static rg_status idx_read_data(idx_file *f, void *dst, size_t bytes, const char *what) {
    rg_status s = read_exact(f, dst, bytes ? bytes : f->bytes, what);
    if (s || bytes) return s;
    unsigned char extra;
    if (gzread(f->gz, &extra, 1) > 0)
        return rg_fail(RG_ERR_FORMAT, "%s: the file is longer than its header says: corrupt or "
                                      "not an IDX file", f->path);
    return RG_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* rg_idx_load, reading only the first `limit` images when 0 < limit < the count: n still
 * counts every label, for the caller to truncate. */
static rg_status idx_load(const char *images_path, const char *labels_path, int max_classes,
                          int limit, rg_dataset **out) {
    *out = NULL;
    idx_file fi = {0}, fl = {0};
    rg_dataset *d = NULL;
    unsigned char *raw_labels = NULL;
    rg_status s = idx_open(&fi, images_path, 3, "images");
    if (s) goto done;
    if ((s = idx_open(&fl, labels_path, 1, "labels"))) goto done;
    if (fi.dims[0] != fl.dims[0]) {
        s = rg_fail(RG_ERR_FORMAT, "%s holds %u images but %s holds %u labels: use the labels "
                                   "file that belongs to these images", images_path, fi.dims[0],
                    labels_path, fl.dims[0]);
        goto done;
    }
    const size_t image_bytes = (size_t)fi.dims[1] * fi.dims[2];
    const size_t read_bytes = limit > 0 && (uint32_t)limit < fi.dims[0] ? (size_t)limit * image_bytes : 0;
    d = calloc(1, sizeof *d);
    raw_labels = malloc(fl.bytes);
    if (d) {
        d->pixels = malloc(read_bytes ? read_bytes : fi.bytes);
        d->labels = malloc(fl.bytes * sizeof *d->labels);
    }
    if (!d || !raw_labels || !d->pixels || !d->labels) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory loading %s (%zu bytes)", images_path, fi.bytes);
        goto done;
    }
    d->n = (int)fi.dims[0];
    d->c = 1;
    d->h = (int)fi.dims[1];
    d->w = (int)fi.dims[2];
    if ((s = idx_read_data(&fi, d->pixels, read_bytes, "image data"))) goto done;
    if ((s = idx_read_data(&fl, raw_labels, 0, "labels"))) goto done;
    for (int i = 0; i < d->n; i++) {
        if (max_classes > 0 && raw_labels[i] >= max_classes) {
            s = rg_fail(RG_ERR_FORMAT, "%s: label %d of sample %d is out of range (this dataset "
                                       "has %d classes, 0..%d): fix the label, or ask for more "
                                       "classes", labels_path, raw_labels[i], i, max_classes,
                        max_classes - 1);
            goto done;
        }
        d->labels[i] = raw_labels[i];
        if (raw_labels[i] + 1 > d->classes) d->classes = raw_labels[i] + 1;
    }
    if (max_classes > 0) d->classes = max_classes;
    *out = d;
    d = NULL;
done:
    idx_close(&fi);
    idx_close(&fl);
    free(raw_labels);
    rg_dataset_free(d);
    return s;
}

rg_status rg_idx_load(const char *images_path, const char *labels_path, int max_classes,
                      rg_dataset **out) {
    return idx_load(images_path, labels_path, max_classes, 0, out);
}

rg_status rg_idx_spec_open(const char *spec, int classes, int limit, rg_dataset **train_out,
                           rg_dataset **test_out) {
    *train_out = NULL;
    if (test_out) *test_out = NULL;
    char paths[4][1024];
    int n_paths = 0;
    if (!spec) return rg_fail(RG_ERR_ARG, "missing data spec");
    if (strcmp(spec, "fashion-mnist") == 0 || strncmp(spec, "fashion-mnist:", 14) == 0) {
        const char *dir = spec[13] == ':' ? spec + 14 : FASHION_MNIST_DIR;
        static const char *const files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
        for (int k = 0; k < 4; k++) { /* each file as it is downloaded, or else unpacked */
            struct stat st;
            const int len = snprintf(paths[k], sizeof paths[k], "%s/%s.gz", dir, files[k]);
            if (len >= (int)sizeof paths[k]) return rg_fail(RG_ERR_ARG, "data directory path too long");
            if (stat(paths[k], &st) != 0) {
                paths[k][len - 3] = 0;
                if (stat(paths[k], &st) != 0) paths[k][len - 3] = '.'; /* named as usual when missing */
            }
        }
        n_paths = 4;
        if (!classes) classes = 10;
    } else if (strncmp(spec, "idx:", 4) == 0) {
        const char *p = spec + 4;
        while (*p && n_paths < 4) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 0 || len >= sizeof paths[0]) break;
            memcpy(paths[n_paths], p, len);
            paths[n_paths++][len] = 0;
            if (!comma) {
                p += len;
                break;
            }
            p = comma + 1;
        }
        if (*p || (n_paths != 2 && n_paths != 4))
            return rg_fail(RG_ERR_ARG, "bad data spec '%s': use idx:IMAGES,LABELS or "
                                       "idx:IMAGES,LABELS,TEST_IMAGES,TEST_LABELS", spec);
    } else {
        return rg_fail(RG_ERR_ARG, "unknown data spec '%s': use fashion-mnist, "
                                   "fashion-mnist:DIR, idx:IMAGES,LABELS or an image folder", spec);
    }
    static const char *const fashion_names[10] = {
        "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"};
    const char *const *names = strncmp(spec, "fashion-mnist", 13) == 0 && classes == 10
                                   ? fashion_names : NULL;
    rg_status s = idx_load(paths[0], paths[1], classes, limit, train_out);
    if (!s && names) s = rg_dataset_set_names(*train_out, names, 10);
    if (s || n_paths < 4 || !test_out) return s;
    s = rg_idx_load(paths[2], paths[3], classes, test_out);
    if (!s && names) s = rg_dataset_set_names(*test_out, names, 10);
    if (s) {
        rg_dataset_free(*train_out);
        *train_out = NULL;
        return s;
    }
    if ((*test_out)->h != (*train_out)->h || (*test_out)->w != (*train_out)->w) {
        rg_dataset_free(*train_out);
        rg_dataset_free(*test_out);
        *train_out = *test_out = NULL;
        return rg_fail(RG_ERR_FORMAT, "%s: test images differ in size from the training images",
                       paths[2]);
    }
    if ((*test_out)->classes > (*train_out)->classes) (*train_out)->classes = (*test_out)->classes;
    (*test_out)->classes = (*train_out)->classes;
    return RG_OK;
}
