/*
 * cmd_images.c — the image-data commands: `regrad export-images` (a dataset as a folder of
 * class-folder PNGs), `regrad augment-preview` (a grid of augmented samples) and
 * `regrad bench-data` (the loader's decode + resize + augment throughput).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct image_args {
    const char *data, *out;
    bool test_split;
    long limit, seed, rows, workers, batch, epochs;
    rg_data_options dopt;
    rg_augment aug;
} image_args;

static bool parse_split(const char *cmd, const cli_option *r, const char *text, void *field) {
    if (strcmp(text, "train") && strcmp(text, "test")) {
        cli_error(cmd, "--%s '%s': use train or test", r->name, text);
        return false;
    }
    *(bool *)field = strcmp(text, "test") == 0;
    return true;
}

#define A image_args
/* The dataset and how its images are read, for all three. */
static const cli_option data_rows[] = {
    {.name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, data), .dflt = "fashion-mnist",
     .help = "a dataset spec or an image folder (see 'regrad train --help')"},
    {.table = cli_data_options, CLI_AT(A, dopt)},
    CLI_END,
};
static const cli_option limit_row[] = {
    {.name = "limit", .meta = "N", .type = CLI_INT, CLI_AT(A, limit), .lo = 1, .hi = 1 << 30,
     .help = "only the first N samples"},
    CLI_END,
};
static const cli_option augment_row[] = {
    {.name = "augment", .meta = "LIST", .type = CLI_PARSE, CLI_AT(A, aug), .parse = cli_parse_augment,
     .choices = 1 + RG_NAMES_AUGMENTATIONS, .help = "comma-separated"},
    CLI_END,
};
static const cli_option seed_row[] = {
    {.name = "seed", .meta = "N", .type = CLI_INT, CLI_AT(A, seed), .lo = 0, .hi = 9.2e18,
     .dflt = "42", .help = "seed for the choice of samples and the augmentation"},
    CLI_END,
};

static const cli_option export_options[] = {
    {.table = data_rows},
    {.name = "split", .meta = "train|test", .type = CLI_PARSE, CLI_AT(A, test_split),
     .parse = parse_split, .dflt = "train", .help = "which split to write"},
    {.name = "out", .meta = "DIR", .type = CLI_TEXT, CLI_AT(A, out), .help = "output folder (created)"},
    {.table = limit_row},
    CLI_END,
};
static const cli_option preview_options[] = {
    {.table = data_rows},
    {.table = augment_row},
    {.name = "out", .meta = "FILE.png", .type = CLI_TEXT, CLI_AT(A, out), .help = "the PNG to write"},
    {.name = "rows", .meta = "N", .type = CLI_INT, CLI_AT(A, rows), .lo = 1, .hi = 64, .dflt = "8",
     .help = "samples shown, chosen at random"},
    {.table = seed_row},
    CLI_END,
};
static const cli_option bench_data_options[] = {
    {.table = data_rows},
    {.name = "workers", .meta = "N", .type = CLI_INT, CLI_AT(A, workers), .lo = 0, .hi = 256,
     .dflt = "1", .help = "loader threads (0: in the calling thread)"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(A, batch), .lo = 1, .hi = 4096,
     .dflt = "32", .help = "batch size"},
    {.name = "epochs", .meta = "N", .type = CLI_INT, CLI_AT(A, epochs), .lo = 1, .hi = 1000,
     .dflt = "1", .help = "passes"},
    {.table = augment_row},
    {.table = limit_row},
    {.table = seed_row},
    CLI_END,
};
#undef A

static const cli_command export_command = {
    .name = "export-images", .usage = "--out DIR [--data SPEC] [--limit N] [options]",
    .about = "Write a dataset as class folders of PNG files (DIR/0_T-shirt_top/000000.png, ...): "
             "a folder to try folder training on without downloading anything.",
    .options = export_options};
static const cli_command preview_command = {
    .name = "augment-preview", .usage = "--augment LIST --out FILE.png [--data SPEC] [options]",
    .about = "Write a grid of augmented samples: each row is one sample, the first column as it "
             "is, the other seven as training would see them.",
    .options = preview_options};
static const cli_command bench_data_command = {
    .name = "bench-data", .usage = "--data DIR [--workers N] [--augment LIST] [options]",
    .about = "Time the loader alone: read, decode, resize, augment and batch every image once per "
             "epoch, and print images per second (per worker thread too).",
    .options = bench_data_options};

/* Parses the options of c; returns -1 to continue, or an exit code. */
static int parse(const cli_command *c, int argc, char **argv, image_args *a) {
    *a = (image_args){0};
    cli_defaults(c, a);
    a->dopt.warn = cli_warn;
    const int r = cli_parse(c, argc, argv, a, NULL);
    if (r < 0 && c->options != bench_data_options && !a->out) {
        cli_error(c->name, "--out is required; see 'regrad %s --help'", c->name);
        return EXIT_USAGE;
    }
    return r;
}

int cmd_export_images(int argc, char **argv) {
    const char *cmd = "export-images";
    image_args a;
    int r = parse(&export_command, argc, argv, &a);
    if (r >= 0) return r;
    rg_dataset *d = NULL, *test = NULL;
    rg_status s = rg_dataset_open(a.data, &a.dopt, &d, a.test_split ? &test : NULL);
    if (!s && a.test_split) {
        rg_dataset_free(d);
        d = test;
        if (!d) {
            cli_error(cmd, "'%s' has no test split", a.data);
            return EXIT_USAGE;
        }
    }
    if (!s) s = rg_dataset_export(d, a.out, (int)a.limit);
    if (!s) {
        int n = a.limit > 0 && a.limit < d->n ? (int)a.limit : d->n;
        printf("wrote %d images in %d class folders under %s\n", n, d->classes, a.out);
    }
    rg_dataset_free(d);
    return s ? cli_fail(cmd, s) : 0;
}

int cmd_augment_preview(int argc, char **argv) {
    const char *cmd = "augment-preview";
    image_args a;
    int r = parse(&preview_command, argc, argv, &a);
    if (r >= 0) return r;
    rg_dataset *d = NULL;
    rg_status s = rg_dataset_open(a.data, &a.dopt, &d, NULL);
    if (!s) s = rg_augment_preview(d, &a.aug, (uint64_t)a.seed, (int)a.rows, a.out);
    if (!s) printf("wrote %s (%ld samples x 8)\n", a.out, a.rows < d->n ? a.rows : (long)d->n);
    rg_dataset_free(d);
    return s ? cli_fail(cmd, s) : 0;
}

int cmd_bench_data(int argc, char **argv) {
    const char *cmd = "bench-data";
    image_args a;
    int r = parse(&bench_data_command, argc, argv, &a);
    if (r >= 0) return r;
    rg_set_threads(0); /* also parks the BLAS's own threads, which would spin otherwise */
    rg_dataset *d = NULL;
    rg_status s = rg_dataset_open(a.data, &a.dopt, &d, NULL);
    if (s) return cli_fail(cmd, s);
    if (a.limit > 0) rg_dataset_truncate(d, (int)a.limit);
    rg_loader *l = rg_loader_create(d, (int)a.batch, (int)a.workers);
    int *idx = malloc((size_t)d->n * sizeof *idx);
    float *x = malloc((size_t)a.batch * d->c * d->h * d->w * sizeof(float));
    int *y = malloc((size_t)a.batch * sizeof *y);
    int code = 0;
    if (!l) {
        code = cli_fail(cmd, RG_ERR_MEMORY);
        goto done;
    }
    if (!idx || !x || !y) {
        cli_error(cmd, "out of memory for %d images", d->n);
        code = EXIT_RUNTIME;
        goto done;
    }
    for (int i = 0; i < d->n; i++) idx[i] = i;
    double t0 = rg_seconds(), checksum = 0;
    long images = 0;
    for (long e = 0; e < a.epochs && !s; e++) {
        if ((s = rg_loader_start(l, idx, d->n, 0, &a.aug, (uint64_t)a.seed + (uint64_t)e))) break;
        int got;
        while ((got = rg_loader_next(l, x, y)) > 0) {
            images += got;
            checksum += x[0];
        }
        if (got < 0) s = (rg_status)-got;
    }
    double secs = rg_seconds() - t0;
    if (!s)
        printf("bench-data: %ld images %dx%dx%d in %.3fs: %.1f images/s with %ld workers "
               "(%.1f per worker; checksum %.3f)\n", images, d->c, d->h, d->w, secs,
               images / secs, a.workers, images / secs / (a.workers ? a.workers : 1), checksum);
    else code = cli_fail(cmd, s);
done:
    rg_loader_free(l);
    free(idx);
    free(x);
    free(y);
    rg_dataset_free(d);
    return code;
}
