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

enum { OPT_DATA = 256, OPT_OUT, OPT_LIMIT, OPT_AUGMENT, OPT_SEED, OPT_ROWS, OPT_WORKERS,
       OPT_BATCH, OPT_EPOCHS, OPT_SPLIT };

static const struct option image_opts[] = {
    {"data", required_argument, 0, OPT_DATA},
    {"out", required_argument, 0, OPT_OUT},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"augment", required_argument, 0, OPT_AUGMENT},
    {"seed", required_argument, 0, OPT_SEED},
    {"rows", required_argument, 0, OPT_ROWS},
    {"workers", required_argument, 0, OPT_WORKERS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"split", required_argument, 0, OPT_SPLIT},
    CLI_DATA_OPTIONS,
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

typedef struct image_args {
    const char *data, *out, *augment;
    bool test_split;
    long limit, seed, rows, workers, batch, epochs;
    rg_data_options dopt;
    rg_augment aug;
} image_args;

/* Parses the options a command allows (`allowed` lists their long names); returns -1 to
 * continue, or an exit code. */
static int parse(const char *cmd, int argc, char **argv, const char *help, const char *allowed,
                 image_args *a) {
    *a = (image_args){.data = "fashion-mnist", .augment = "none", .seed = 42, .rows = 8,
                      .batch = 32, .workers = 1, .epochs = 1, .dopt = {.warn = cli_warn}};
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", image_opts)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return 0;
        }
        if (c < 0) return EXIT_USAGE;
        const char *name = NULL;
        for (const struct option *o = image_opts; o->name; o++)
            if (o->val == c) name = o->name;
        char key[40];
        snprintf(key, sizeof key, " %s ", name ? name : "");
        if (!strstr(allowed, key)) {
            cli_error(cmd, "option --%s does not apply here; see 'regrad %s --help'", name, cmd);
            return EXIT_USAGE;
        }
        int handled = cli_data_option(cmd, c, optarg, &a->dopt);
        if (handled < 0) return EXIT_USAGE;
        if (handled) continue;
        bool ok = true;
        switch (c) {
        case OPT_DATA: a->data = optarg; break;
        case OPT_OUT: a->out = optarg; break;
        case OPT_SPLIT:
            if (strcmp(optarg, "train") && strcmp(optarg, "test")) {
                cli_error(cmd, "--split '%s': use train or test", optarg);
                return EXIT_USAGE;
            }
            a->test_split = strcmp(optarg, "test") == 0;
            break;
        case OPT_AUGMENT: a->augment = optarg; break;
        case OPT_LIMIT: ok = cli_int(cmd, "limit", optarg, 1, 1L << 30, &a->limit); break;
        case OPT_SEED: ok = cli_int(cmd, "seed", optarg, 0, 0x7fffffffffffffffL, &a->seed); break;
        case OPT_ROWS: ok = cli_int(cmd, "rows", optarg, 1, 64, &a->rows); break;
        case OPT_WORKERS: ok = cli_int(cmd, "workers", optarg, 0, 256, &a->workers); break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 1, 4096, &a->batch); break;
        case OPT_EPOCHS: ok = cli_int(cmd, "epochs", optarg, 1, 1000, &a->epochs); break;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad %s --help'", argv[optind], cmd);
        return EXIT_USAGE;
    }
    if (strstr(allowed, " out ") && !a->out) {
        cli_error(cmd, "--out is required; see 'regrad %s --help'", cmd);
        return EXIT_USAGE;
    }
    rg_status s = rg_augment_parse(a->augment, &a->aug);
    if (s) return cli_fail(cmd, s);
    return -1;
}

static const char *const export_help =
    "Usage: regrad export-images --out DIR [--data SPEC] [--limit N] [data options]\n"
    "Write a dataset as class folders of PNG files (DIR/0_T-shirt_top/000000.png, ...):\n"
    "a folder to try folder training on without downloading anything.\n"
    "\n"
    "  --data SPEC           dataset to export (default fashion-mnist; see 'regrad train\n"
    "                        --help')\n"
    "  --split train|test    which split to write (default train)\n"
    "  --out DIR             output folder (created)\n"
    "  --limit N             only the first N samples\n"
    CLI_DATA_HELP
    "  -h, --help            show this help\n";

int cmd_export_images(int argc, char **argv) {
    const char *cmd = "export-images";
    image_args a;
    int r = parse(cmd, argc, argv, export_help,
                  " data out split limit input-size channels strict max-pixels ", &a);
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

static const char *const preview_help =
    "Usage: regrad augment-preview --augment LIST --out FILE.png [--data SPEC] [options]\n"
    "Write a grid of augmented samples: each row is one sample, the first column as it is,\n"
    "the other seven as training would see them.\n"
    "\n"
    "  --data SPEC           dataset (default fashion-mnist) or an image folder\n"
    "  --augment LIST        flip, crop=P, resized-crop, rotate=DEG, noise=STD,\n"
    "                        brightness=F, contrast=F (comma-separated)\n"
    "  --out FILE            the PNG to write\n"
    "  --rows N              samples shown, chosen at random (default 8)\n"
    "  --seed N              seed for the choice and the augmentation (default 42)\n"
    CLI_DATA_HELP
    "  -h, --help            show this help\n";

int cmd_augment_preview(int argc, char **argv) {
    const char *cmd = "augment-preview";
    image_args a;
    int r = parse(cmd, argc, argv, preview_help,
                  " data augment out rows seed input-size channels strict max-pixels ", &a);
    if (r >= 0) return r;
    rg_dataset *d = NULL;
    rg_status s = rg_dataset_open(a.data, &a.dopt, &d, NULL);
    if (!s) s = rg_augment_preview(d, &a.aug, (uint64_t)a.seed, (int)a.rows, a.out);
    if (!s) printf("wrote %s (%ld samples x 8)\n", a.out, a.rows < d->n ? a.rows : (long)d->n);
    rg_dataset_free(d);
    return s ? cli_fail(cmd, s) : 0;
}

static const char *const bench_data_help =
    "Usage: regrad bench-data --data DIR [--workers N] [--augment LIST] [options]\n"
    "Time the loader alone: read, decode, resize, augment and batch every image once per\n"
    "epoch, and print images per second (per worker thread too).\n"
    "\n"
    "  --data SPEC           an image folder (or any dataset spec)\n"
    "  --workers N           loader threads (default 1; 0: in the calling thread)\n"
    "  --batch N             batch size (default 32)\n"
    "  --epochs N            passes (default 1)\n"
    "  --augment LIST        as for train\n"
    "  --limit N             only the first N images\n"
    CLI_DATA_HELP
    "  -h, --help            show this help\n";

int cmd_bench_data(int argc, char **argv) {
    const char *cmd = "bench-data";
    image_args a;
    int r = parse(cmd, argc, argv, bench_data_help,
                  " data workers batch epochs augment limit seed input-size channels strict "
                  "max-pixels ", &a);
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
