/*
 * dataset.c — one interface over every dataset: opening a spec (IDX or an image folder),
 * producing samples (from memory or by decoding a file) through the transform chain,
 * batches, the PNG export and the augmentation preview.
 */
#include "../internal.h"
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void rg_dataset_free(rg_dataset *d) {
    if (!d) return;
    if (d->paths)
        for (int i = 0; i < d->n; i++) free(d->paths[i]);
    if (d->class_names)
        for (int k = 0; k < d->classes; k++) free(d->class_names[k]);
    free(d->paths);
    free(d->class_names);
    free(d->root);
    free(d->bad);
    free(d->pixels);
    free(d->features);
    free(d->labels);
    free(d);
}

rg_status rg_dataset_from_floats(int n, int ndim, const int *shape, const float *x,
                                 const int *labels, int classes, rg_dataset **out) {
    *out = NULL;
    if (n < 1 || !x || !labels || !shape)
        return rg_fail(RG_ERR_ARG, "a dataset from floats needs at least one sample, its "
                                   "features and its labels");
    if (ndim < 1 || ndim > 3)
        return rg_fail(RG_ERR_SHAPE, "samples of %d dimensions: give 1 to 3 (features, (C, L) "
                                     "or (C, H, W))", ndim);
    int dims[3] = {1, 1, 1};
    size_t sample = 1;
    for (int k = 0; k < ndim; k++) {
        dims[k] = shape[k];
        if (shape[k] < 1 || !rg_mul_size(sample, (size_t)shape[k], &sample) || sample > (1u << 30))
            return rg_fail(RG_ERR_SHAPE, "sample dimension %d is %d: every dimension must be at "
                                         "least 1 and a sample under 2^30 values", k + 1, shape[k]);
    }
    size_t total;
    if (!rg_mul_size(sample, (size_t)n, &total) || total > SIZE_MAX / sizeof(float))
        return rg_fail(RG_ERR_MEMORY, "%d samples of %zu values do not fit in memory", n, sample);
    for (size_t i = 0; i < total; i++)
        if (!isfinite(x[i]))
            return rg_fail(RG_ERR_NUMERIC, "feature %zu of sample %zu is %g: a dataset takes "
                                           "finite values", i % sample, i / sample, (double)x[i]);
    int largest = 0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0) return rg_fail(RG_ERR_ARG, "sample %d has label %d: labels are 0 or more", i, labels[i]);
        if (labels[i] > largest) largest = labels[i];
    }
    if (classes <= 0) classes = largest + 1;
    rg_dataset *d = calloc(1, sizeof *d);
    if (!d) return rg_fail(RG_ERR_MEMORY, "out of memory");
    d->n = n, d->c = dims[0], d->h = dims[1], d->w = dims[2], d->classes = classes;
    d->features = malloc(total * sizeof(float));
    d->labels = malloc((size_t)n * sizeof(int));
    if (!d->features || !d->labels) {
        rg_dataset_free(d);
        return rg_fail(RG_ERR_MEMORY, "out of memory copying %d samples", n);
    }
    memcpy(d->features, x, total * sizeof(float));
    memcpy(d->labels, labels, (size_t)n * sizeof(int));
    d->opt.max_pixels = RG_DEFAULT_MAX_PIXELS;
    rg_status s = rg_dataset_check_labels(d, classes);
    if (s) rg_dataset_free(d);
    else *out = d;
    return s;
}

void rg_dataset_truncate(rg_dataset *d, int n) {
    if (n < 0 || n >= d->n) return;
    if (d->paths)
        for (int i = n; i < d->n; i++) free(d->paths[i]), d->paths[i] = NULL;
    d->n = n;
}

/* Whether folder name `a` is class `b` (number j): the same name, or export-images'
 * "j_b" (its folders carry the class number so they sort in label order). */
static bool same_class(const char *a, const char *b, int j) {
    if (strcmp(a, b) == 0) return true;
    char *end;
    long k = strtol(a, &end, 10);
    return end != a && *end == '_' && k == j && strcmp(end + 1, b) == 0;
}

rg_status rg_dataset_match_classes(rg_dataset *d, const rg_dataset *ref) {
    if (!d->class_names || !ref->class_names) {
        if (d->classes > ref->classes)
            return rg_fail(RG_ERR_SHAPE, "the test data has %d classes, the training data %d",
                           d->classes, ref->classes);
        return RG_OK;
    }
    int *map = malloc((size_t)d->classes * sizeof *map);
    if (!map) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int k = 0; k < d->classes; k++) {
        map[k] = -1;
        for (int j = 0; j < ref->classes && map[k] < 0; j++)
            if (same_class(d->class_names[k], ref->class_names[j], j)) map[k] = j;
        if (map[k] < 0) {
            free(map);
            return rg_fail(RG_ERR_ARG, "the test data has a class '%s' the training data does "
                                       "not: give both the same class folders", d->class_names[k]);
        }
    }
    for (int i = 0; i < d->n; i++) d->labels[i] = map[d->labels[i]];
    free(map);
    for (int k = 0; k < d->classes; k++) free(d->class_names[k]);
    free(d->class_names);
    d->class_names = NULL;
    d->classes = ref->classes;
    return rg_dataset_set_names(d, (const char *const *)ref->class_names, ref->classes);
}

rg_status rg_dataset_set_names(rg_dataset *d, const char *const *names, int k) {
    char **v = calloc((size_t)k, sizeof *v);
    if (!v) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int i = 0; i < k; i++)
        if (!(v[i] = strdup(names[i]))) {
            for (int j = 0; j < i; j++) free(v[j]);
            free(v);
            return rg_fail(RG_ERR_MEMORY, "out of memory");
        }
    d->class_names = v;
    return RG_OK;
}

const char *rg_dataset_class_name(const rg_dataset *d, int k, char *buf, size_t len) {
    if (d->class_names && k >= 0 && k < d->classes) return d->class_names[k];
    snprintf(buf, len, "%d", k);
    return buf;
}

/* Sets the output shape of an in-memory dataset from the options. */
static rg_status apply_options(rg_dataset *d, const rg_data_options *o) {
    d->src_c = d->src_c ? d->src_c : d->c;
    d->src_h = d->src_h ? d->src_h : d->h;
    d->src_w = d->src_w ? d->src_w : d->w;
    if (o->channels && o->channels != 1 && o->channels != 3)
        return rg_fail(RG_ERR_ARG, "--channels must be 1 or 3, not %d", o->channels);
    if (o->channels) d->c = o->channels;
    if (o->height) d->h = o->height, d->w = o->width;
    d->opt = *o;
    if (!d->opt.max_pixels) d->opt.max_pixels = RG_DEFAULT_MAX_PIXELS;
    return RG_OK;
}

rg_status rg_dataset_check_labels(const rg_dataset *d, int classes) {
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= classes)
            return rg_fail(RG_ERR_ARG, "sample %d has label %d, outside the model's %d classes "
                                       "(0..%d): fix the label, or give the model more classes "
                                       "(--classes)", i, d->labels[i], classes, classes - 1);
    return RG_OK;
}

/* One warning when some of d's classes have no sample at all (a stray label makes a class
 * count of 1 + that label): how many, and which, as ranges. */
static rg_status warn_empty_classes(const rg_dataset *d) {
    bool *seen = calloc((size_t)d->classes, sizeof *seen);
    if (!seen) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] >= 0 && d->labels[i] < d->classes) seen[d->labels[i]] = true;
    char which[160] = "";
    size_t len = 0;
    int empty = 0;
    for (int k = 0; k < d->classes; k++) {
        if (seen[k]) continue;
        int last = k;
        while (last + 1 < d->classes && !seen[last + 1]) last++;
        empty += last - k + 1;
        if (len < sizeof which - 24) {
            len += (size_t)(last > k ? snprintf(which + len, sizeof which - len, "%s%d-%d", len ? ", " : "", k, last)
                                     : snprintf(which + len, sizeof which - len, "%s%d", len ? ", " : "", k));
        } else if (len < sizeof which - 4) {
            len += (size_t)snprintf(which + len, sizeof which - len, ", ...");
        }
        k = last;
    }
    free(seen);
    if (empty)
        rg_data_warn(&d->opt, "%d of the %d classes (1 + the largest label) have no samples: %s; "
                              "check the labels", empty, d->classes, which);
    return RG_OK;
}

rg_status rg_dataset_open(const char *spec, const rg_data_options *opt, rg_dataset **train_out,
                          rg_dataset **test_out) {
    rg_data_options o = opt ? *opt : (rg_data_options){0};
    *train_out = NULL;
    if (test_out) *test_out = NULL;
    if (!spec) return rg_fail(RG_ERR_ARG, "missing data spec");
    if (o.channels && o.channels != 1 && o.channels != 3)
        return rg_fail(RG_ERR_ARG, "channels must be 1 or 3, not %d", o.channels);
    if (o.limit < 0) return rg_fail(RG_ERR_ARG, "limit must be 0 (all samples) or more, not %d", o.limit);
    struct stat st;
    if (strncmp(spec, "idx:", 4) != 0 && strncmp(spec, "fashion-mnist", 13) != 0) {
        if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
            rg_status s = rg_folder_open(spec, &o, train_out);
            if (!s && o.limit) rg_dataset_truncate(*train_out, o.limit);
            return s;
        }
        if (strchr(spec, '/') || errno != ENOENT)
            return rg_fail(RG_ERR_IO, "cannot open data folder '%s': %s", spec,
                           stat(spec, &st) == 0 ? "not a folder" : strerror(errno));
    }
    rg_status s = rg_idx_spec_open(spec, o.classes, o.limit, train_out, test_out);
    if (!s) s = apply_options(*train_out, &o);
    if (!s && test_out && *test_out) s = apply_options(*test_out, &o);
    if (!s) s = warn_empty_classes(*train_out);
    if (!s && o.limit) rg_dataset_truncate(*train_out, o.limit);
    if (s) {
        rg_dataset_free(*train_out);
        if (test_out) rg_dataset_free(*test_out), *test_out = NULL;
        *train_out = NULL;
    }
    return s;
}

/* A file that failed: an error when strict, else zeros and one warning per file. */
static rg_status bad_file(const rg_dataset *d, int i, bool pre, float *x) {
    rg_dataset *md = (rg_dataset *)d; /* flags and counter: atomics on the shared dataset */
    if (d->opt.strict)
        return rg_fail(RG_ERR_FORMAT, "'%s': %s (remove or fix the file; with strict "
                                      "checking off it is skipped)", d->paths[i], rg_last_error());
    if (__atomic_exchange_n(&md->bad[i], 1, __ATOMIC_RELAXED) == 0) {
        __atomic_add_fetch(&md->skipped, 1, __ATOMIC_RELAXED);
        rg_data_warn(&d->opt, "skipping '%s' (zeros in its place): %s", d->paths[i], rg_last_error());
    }
    static const uint8_t black = 0;
    rg_pixels px = {.px = &black, .w = 1, .h = 1, .c = 1};
    rg_transform(d, &px, NULL, 0, pre, x);
    return RG_OK;
}

rg_status rg_dataset_sample_pre(const rg_dataset *d, int i, const rg_augment *aug,
                                uint64_t seed, bool pre, float *x) {
    if (d->features) {
        const size_t sample = (size_t)d->c * d->h * d->w;
        memcpy(x, d->features + (size_t)i * sample, sample * sizeof *x);
        return RG_OK;
    }
    if (d->pixels) {
        const int c = d->src_c ? d->src_c : d->c, h = d->src_h ? d->src_h : d->h;
        const int w = d->src_w ? d->src_w : d->w;
        rg_pixels px = {.px = d->pixels + (size_t)i * c * h * w, .w = w, .h = h, .c = c,
                        .row = (size_t)w, .col = 1, .plane = (size_t)h * w};
        rg_transform(d, &px, aug, seed, pre, x);
        return RG_OK;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    rg_image im = {0};
    /* a random crop wants the full resolution; a plain resize only what covers the input */
    const bool full = aug && aug->resized_crop;
    rg_status s = rg_file_read(d->paths[i], RG_MAX_FILE_BYTES, &buf, &len);
    if (!s) s = rg_image_decode(buf, len, d->c, full ? 0 : d->w, full ? 0 : d->h,
                                d->opt.max_pixels, &im);
    free(buf);
    if (s) return bad_file(d, i, pre, x);
    rg_pixels px = {.px = im.px, .w = im.w, .h = im.h, .c = im.c, .row = (size_t)im.w * im.c,
                    .col = (size_t)im.c, .plane = 1};
    rg_transform(d, &px, aug, seed, pre, x);
    rg_image_free(&im);
    return RG_OK;
}

rg_status rg_dataset_sample(const rg_dataset *d, int i, const rg_augment *aug, uint64_t seed,
                            float *x) {
    if (i < 0 || i >= d->n) return rg_fail(RG_ERR_ARG, "sample %d is outside 0..%d", i, d->n - 1);
    return rg_dataset_sample_pre(d, i, aug, seed, true, x);
}

rg_status rg_dataset_batch(const rg_dataset *d, const int *idx, int n, float *x, int *y) {
    const size_t sample = (size_t)d->c * d->h * d->w;
    const bool plain = d->pixels && d->opt.preprocess == RG_PRE_SCALE01 &&
                       (!d->src_c || d->src_c == d->c) && (!d->src_h || d->src_h == d->h) &&
                       (!d->src_w || d->src_w == d->w);
    if (d->features) {
        for (int b = 0; b < n; b++) {
            memcpy(x + (size_t)b * sample, d->features + (size_t)idx[b] * sample, sample * sizeof *x);
            y[b] = d->labels[idx[b]];
        }
        return RG_OK;
    }
    if (plain) { /* bytes to [0, 1]: the common case, kept tight */
        for (int b = 0; b < n; b++) {
            const uint8_t *src = d->pixels + (size_t)idx[b] * sample;
            float *dst = x + (size_t)b * sample;
            for (size_t j = 0; j < sample; j++) dst[j] = src[j] * (1.0f / 255.0f);
            y[b] = d->labels[idx[b]];
        }
        return RG_OK;
    }
    rg_status s = RG_OK;
    char why[1024] = "";
#pragma omp parallel for schedule(dynamic, 1) if (d->paths)
    for (int b = 0; b < n; b++) {
        rg_status sb = rg_dataset_sample_pre(d, idx[b], NULL, 0, true, x + (size_t)b * sample);
        y[b] = d->labels[idx[b]];
        if (sb) {
#pragma omp critical(rg_dataset_batch_error)
            if (!s) {
                s = sb;
                snprintf(why, sizeof why, "%s", rg_last_error()); /* the worker's message */
            }
        }
    }
    return s ? rg_fail(s, "%s", why) : RG_OK;
}

int rg_dataset_split(const rg_dataset *d, float frac, rg_rng *rng, int *order) {
    for (int i = 0; i < d->n; i++) order[i] = i;
    rg_rng_shuffle(rng, order, d->n);
    if (frac <= 0) return 0;
    int *count = calloc((size_t)d->classes + 1, sizeof *count);
    int *want = calloc((size_t)d->classes + 1, sizeof *want);
    int *tmp = malloc((size_t)d->n * sizeof *tmp);
    if (!count || !want || !tmp) {
        free(count), free(want), free(tmp);
        return -1;
    }
    for (int i = 0; i < d->n; i++) count[d->labels[i]]++;
    int n_val = 0;
    for (int k = 0; k < d->classes; k++) n_val += want[k] = (int)floor(count[k] * (double)frac + 0.5);
    int t = 0, v = d->n - n_val;
    for (int i = 0; i < d->n; i++) {
        const int j = order[i], k = d->labels[j];
        if (want[k] > 0) {
            want[k]--;
            tmp[v++] = j;
        } else {
            tmp[t++] = j;
        }
    }
    memcpy(order, tmp, (size_t)d->n * sizeof *order);
    free(count), free(want), free(tmp);
    return n_val;
}

/* ---------------------------------------------------------------- export and preview */

static rg_status make_dir(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return rg_fail(RG_ERR_IO, "cannot create folder '%s': %s", path, strerror(errno));
    return RG_OK;
}

rg_status rg_dataset_export(const rg_dataset *d, const char *dir, int limit) {
    const int n = limit > 0 && limit < d->n ? limit : d->n;
    const int digits = d->classes > 1 ? (int)floor(log10(d->classes - 1)) + 1 : 1;
    char path[4096], name[64];
    rg_status s = make_dir(dir);
    for (int k = 0; !s && k < d->classes; k++) {
        const char *cls = rg_dataset_class_name(d, k, name, sizeof name);
        int len = d->class_names ? snprintf(path, sizeof path, "%s/%0*d_%s", dir, digits & 15, k, cls)
                                 : snprintf(path, sizeof path, "%s/%0*d", dir, digits & 15, k);
        s = len < 0 || len >= (int)sizeof path - 16 ? rg_fail(RG_ERR_ARG, "output path too long")
                                                    : make_dir(path);
    }
    float *x = malloc((size_t)d->c * d->h * d->w * sizeof(float));
    uint8_t *px = malloc((size_t)d->c * d->h * d->w);
    if (!s && (!x || !px)) s = rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int i = 0; !s && i < n; i++) {
        const int k = d->labels[i];
        const char *cls = rg_dataset_class_name(d, k, name, sizeof name);
        if (d->class_names)
            snprintf(path, sizeof path, "%s/%0*d_%s/%06d.png", dir, digits & 15, k, cls, i);
        else snprintf(path, sizeof path, "%s/%0*d/%06d.png", dir, digits & 15, k, i);
        if (!(s = rg_dataset_sample_pre(d, i, NULL, 0, false, x))) {
            rg_to_bytes(x, d->c, d->h, d->w, px);
            s = rg_png_write(path, px, d->w, d->h, d->c);
        }
    }
    free(x);
    free(px);
    return s;
}

rg_status rg_augment_preview(const rg_dataset *d, const rg_augment *aug, uint64_t seed,
                             int rows, const char *path) {
    enum { COLS = 8, GAP = 2 };
    if (rows < 1) return rg_fail(RG_ERR_ARG, "the preview needs at least one row");
    if (rows > d->n) rows = d->n;
    const int c = d->c, h = d->h, w = d->w;
    const int zoom = h < 96 && w < 96 ? 96 / (h > w ? h : w) : 1; /* small images: enlarged */
    const int cw = w * zoom, ch = h * zoom;
    const int W = COLS * (cw + GAP) + GAP, H = rows * (ch + GAP) + GAP;
    uint8_t *grid = malloc((size_t)W * H * c), *cell = malloc((size_t)w * h * c);
    float *x = malloc((size_t)c * h * w * sizeof(float));
    rg_status s = RG_OK;
    if (!grid || !cell || !x) s = rg_fail(RG_ERR_MEMORY, "out of memory for the preview");
    if (!s) memset(grid, 255, (size_t)W * H * c);
    rg_rng pick;
    rg_rng_seed(&pick, seed);
    for (int r = 0; !s && r < rows; r++) {
        const int i = (int)rg_rng_below(&pick, (uint32_t)d->n);
        for (int col = 0; !s && col < COLS; col++) {
            /* column 0: the sample as it is; then augmented draws */
            s = rg_dataset_sample_pre(d, i, col ? aug : NULL, seed + 1000003ull * r + col, false, x);
            rg_to_bytes(x, c, h, w, cell);
            const int ox = GAP + col * (cw + GAP), oy = GAP + r * (ch + GAP);
            for (int y = 0; y < ch; y++)
                for (int xx = 0; xx < cw; xx++)
                    memcpy(grid + ((size_t)(oy + y) * W + ox + xx) * c,
                           cell + ((size_t)(y / zoom) * w + xx / zoom) * c, (size_t)c);
        }
    }
    if (!s) s = rg_png_write(path, grid, W, H, c);
    free(grid);
    free(cell);
    free(x);
    return s;
}
