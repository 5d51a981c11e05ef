/*
 * folder.c — image folders: one subfolder per class (classes numbered by sorted folder
 * name, as Keras flow_from_directory and torchvision ImageFolder do), image files found
 * recursively below each, every file's header checked once when the folder is opened.
 *
 * Only regular files are opened (a FIFO or device would block), hidden entries are skipped,
 * recursion is bounded, and files are sorted so the sample order does not depend on the
 * file system.  A file whose header fails is skipped with a warning; the pixels are decoded
 * later, by the loader, which deals with corrupt data past the header the same way.
 */
#define _GNU_SOURCE
#include "../internal.h"
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 32
#define MAX_WARNINGS 20       /* individual lines, then a count */
#define PROBE_BYTES (64 << 10)
#define PROBE_BYTES_MAX (1 << 20) /* JPEG frame headers behind large EXIF/ICC blocks */

typedef struct strings {
    char **v;
    int n, cap;
} strings;

static bool strings_push(strings *s, const char *text) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        s->v = v, s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(text))) return false;
    s->n++;
    return true;
}

static void strings_free(strings *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (strings){0};
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void rg_data_warn(const rg_data_options *o, const char *fmt, ...) {
    if (!o || !o->warn) return;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->warn(o->user, line);
}

/* Lists the entries of dir (not hidden): subfolders into subdirs, the rest into out (either
 * may be NULL to leave those out). */
static rg_status list_dir(const char *dir, strings *out, strings *subdirs) {
    DIR *dp = opendir(dir);
    if (!dp) return rg_fail(RG_ERR_IO, "cannot read folder '%s': %s", dir, strerror(errno));
    struct dirent *e;
    rg_status s = RG_OK;
    char path[4096];
    while (!s && (e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            s = rg_fail(RG_ERR_ARG, "path too long under '%s'", dir);
            break;
        }
        struct stat st;
        bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        strings *dst = is_dir ? subdirs : out;
        if (dst && !strings_push(dst, path)) s = rg_fail(RG_ERR_MEMORY, "out of memory listing '%s'", dir);
    }
    closedir(dp);
    return s;
}

/* Every non-directory entry below dir, recursively (links followed, depth bounded). */
static rg_status walk(const char *dir, int depth, strings *files) {
    if (depth > MAX_DEPTH)
        return rg_fail(RG_ERR_ARG, "folders nested deeper than %d under '%s' (a link loop?)",
                       MAX_DEPTH, dir);
    strings sub = {0};
    rg_status s = list_dir(dir, files, &sub);
    if (sub.n) qsort(sub.v, (size_t)sub.n, sizeof *sub.v, cmp_str);
    for (int i = 0; !s && i < sub.n; i++) s = walk(sub.v[i], depth + 1, files);
    strings_free(&sub);
    return s;
}

/* Reads the start of a file and checks its header; errors name nothing (the caller adds
 * the path). */
static rg_status probe_file(const char *path, long max_pixels) {
    struct stat st;
    if (stat(path, &st) != 0) return rg_fail(RG_ERR_IO, "unreadable (%s)", strerror(errno));
    if (!S_ISREG(st.st_mode)) return rg_fail(RG_ERR_IO, "not a regular file");
    FILE *f = fopen(path, "rb");
    if (!f) return rg_fail(RG_ERR_IO, "unreadable (%s)", strerror(errno));
    uint8_t *buf = malloc(PROBE_BYTES_MAX);
    if (!buf) {
        fclose(f);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    size_t n = fread(buf, 1, PROBE_BYTES, f);
    int w, h;
    rg_status s = rg_image_probe(buf, n, max_pixels, &w, &h);
    if (s == RG_ERR_FORMAT && n == PROBE_BYTES && rg_image_sniff(buf, n) == RG_IMAGE_JPEG) {
        n += fread(buf + n, 1, PROBE_BYTES_MAX - n, f);
        s = rg_image_probe(buf, n, max_pixels, &w, &h);
    }
    if (ferror(f)) s = rg_fail(RG_ERR_IO, "unreadable (%s)", strerror(errno));
    fclose(f);
    free(buf);
    return s;
}

rg_status rg_folder_open(const char *dir, const rg_data_options *opt, rg_dataset **out) {
    *out = NULL;
    rg_data_options o = opt ? *opt : (rg_data_options){0};
    if (!o.max_pixels) o.max_pixels = RG_DEFAULT_MAX_PIXELS;
    strings classes = {0}, files = {0};
    int *labels = NULL;
    rg_dataset *d = NULL;
    char *skip_flag = NULL, **skip_msg = NULL;
    rg_status s = list_dir(dir, NULL, &classes);
    if (s) goto done;
    if (classes.n == 0) {
        s = rg_fail(RG_ERR_ARG, "no class folders in '%s': put each class's images in its own "
                                "subfolder (DIR/cat/1.jpg, DIR/dog/2.jpg, ...)", dir);
        goto done;
    }
    qsort(classes.v, (size_t)classes.n, sizeof *classes.v, cmp_str);
    for (int k = 0; k < classes.n; k++) {
        int before = files.n;
        if ((s = walk(classes.v[k], 0, &files))) goto done;
        int *nl = realloc(labels, (size_t)(files.n ? files.n : 1) * sizeof *nl);
        if (!nl) {
            s = rg_fail(RG_ERR_MEMORY, "out of memory listing '%s'", dir);
            goto done;
        }
        labels = nl;
        for (int i = before; i < files.n; i++) labels[i] = k;
        if (files.n > before) qsort(files.v + before, (size_t)(files.n - before), sizeof *files.v, cmp_str);
    }
    /* Headers: in parallel (file systems reward it), warnings in order afterwards. */
    skip_flag = calloc((size_t)(files.n ? files.n : 1), 1);
    skip_msg = calloc((size_t)(files.n ? files.n : 1), sizeof *skip_msg);
    if (!skip_flag || !skip_msg) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory checking '%s'", dir);
        goto done;
    }
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < files.n; i++) {
        if (probe_file(files.v[i], o.max_pixels) != RG_OK) {
            skip_flag[i] = 1;
            skip_msg[i] = strdup(rg_last_error());
        }
    }
    int skipped = 0;
    for (int i = 0; i < files.n; i++) {
        if (!skip_flag[i]) continue;
        const char *why = skip_msg[i] ? skip_msg[i] : "out of memory";
        if (o.strict) {
            s = rg_fail(RG_ERR_FORMAT, "'%s': %s (remove or fix the file; with "
                                       "strict checking off it is skipped)", files.v[i], why);
            goto done;
        }
        if (skipped++ < MAX_WARNINGS) rg_data_warn(&o, "skipping '%s': %s", files.v[i], why);
    }
    /* The survivors, and the classes that have none. */
    d = calloc(1, sizeof *d);
    if (!d || !(d->paths = calloc((size_t)(files.n - skipped + 1), sizeof *d->paths)) ||
        !(d->labels = malloc((size_t)(files.n - skipped + 1) * sizeof *d->labels)) ||
        !(d->bad = calloc((size_t)(files.n - skipped + 1), 1)) || !(d->root = strdup(dir))) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory opening '%s'", dir);
        goto done;
    }
    int *count = calloc((size_t)classes.n, sizeof *count);
    if (!count) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory opening '%s'", dir);
        goto done;
    }
    for (int i = 0; i < files.n; i++) {
        if (skip_flag[i]) continue;
        d->paths[d->n] = files.v[i];
        files.v[i] = NULL;
        d->labels[d->n++] = labels[i];
        count[labels[i]]++;
    }
    for (int k = 0; k < classes.n; k++)
        if (!count[k]) rg_data_warn(&o, "class folder '%s' has no images", classes.v[k]);
    free(count);
    if (skipped > MAX_WARNINGS) rg_data_warn(&o, "... and %d more", skipped - MAX_WARNINGS);
    if (skipped) rg_data_warn(&o, "skipped %d of %d files in '%s'", skipped, files.n, dir);
    if (d->n == 0) {
        s = rg_fail(RG_ERR_ARG, "no readable JPEG or PNG images in the class folders of '%s'", dir);
        goto done;
    }
    /* Class names: the folder names without their path. */
    const char **names = malloc((size_t)classes.n * sizeof *names);
    if (!names) {
        s = rg_fail(RG_ERR_MEMORY, "out of memory");
        goto done;
    }
    for (int k = 0; k < classes.n; k++) {
        const char *slash = strrchr(classes.v[k], '/');
        names[k] = slash ? slash + 1 : classes.v[k];
    }
    s = rg_dataset_set_names(d, names, classes.n);
    free(names);
    if (s) goto done;
    d->skipped = skipped;
    d->classes = classes.n;
    d->c = o.channels ? o.channels : 3;
    d->h = o.height ? o.height : 224;
    d->w = o.width ? o.width : 224;
    d->opt = o;
    *out = d;
    d = NULL;
done:
    if (skip_msg)
        for (int i = 0; i < files.n; i++) free(skip_msg[i]);
    free(skip_msg);
    free(skip_flag);
    free(labels);
    strings_free(&classes);
    strings_free(&files);
    rg_dataset_free(d);
    return s;
}
