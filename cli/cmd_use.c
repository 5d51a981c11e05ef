/*
 * cmd_use.c — using a trained model: `regrad eval` (loss, accuracy, per-class accuracy and
 * the confusion matrix on a dataset), `regrad predict` (class names and probabilities for
 * image files) and `regrad inspect` (a checkpoint's tensors and metadata).  The model, its
 * input and its preprocessing come from the checkpoint, so no other flags are needed.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_WEIGHTS = 256, OPT_DATA, OPT_JSON, OPT_TOP, OPT_BATCH, OPT_THREADS, OPT_FULL };

static const struct option use_opts[] = {
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"data", required_argument, 0, OPT_DATA},
    {"json", no_argument, 0, OPT_JSON},
    {"top", required_argument, 0, OPT_TOP},
    {"batch", required_argument, 0, OPT_BATCH},
    {"threads", required_argument, 0, OPT_THREADS},
    {"full", no_argument, 0, OPT_FULL},
    CLI_DATA_OPTIONS,
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

typedef struct use_args {
    const char *weights, *data;
    bool json, full;
    long top, batch, threads;
    rg_data_options dopt;
} use_args;

/* Parses the options; returns -1 to go on, or an exit code. */
static int parse(const char *cmd, int argc, char **argv, const char *help, use_args *a) {
    *a = (use_args){.top = 5, .batch = 128, .dopt = {.warn = cli_warn}};
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", use_opts)) != -1) {
        int handled = cli_data_option(cmd, c, optarg, &a->dopt);
        if (handled < 0) return EXIT_USAGE;
        if (handled) continue;
        bool ok = true;
        switch (c) {
        case 'h': fputs(help, stdout); return 0;
        case OPT_WEIGHTS: a->weights = optarg; break;
        case OPT_DATA: a->data = optarg; break;
        case OPT_JSON: a->json = true; break;
        case OPT_FULL: a->full = true; break;
        case OPT_TOP: ok = cli_int(cmd, "top", optarg, 1, 1 << 20, &a->top); break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 1, 65536, &a->batch); break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &a->threads); break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    rg_set_threads((int)a->threads);
    return -1;
}

/* ---------------------------------------------------------------- eval */

static const char *const eval_help =
    "Usage: regrad eval --weights FILE [--data SPEC] [--json] [options]\n"
    "Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint's model.\n"
    "\n"
    "  --weights FILE        a checkpoint written by regrad (train --checkpoint-dir)\n"
    "  --data SPEC           dataset (default: the one the model was trained on); its test\n"
    "                        split when it has one, else all of it\n"
    "  --json                one JSON object instead of text\n"
    "  --batch N             samples per forward pass (default 128)\n"
    "  --threads N           threads (default: all cores)\n"
    CLI_DATA_HELP
    "                        (size, channels and preprocessing default to the model's)\n"
    "  -h, --help            show this help\n";

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    use_args a;
    int r = parse(cmd, argc, argv, eval_help, &a);
    if (r >= 0) return r;
    if (!a.weights || optind < argc) {
        cli_error(cmd, optind < argc ? "unexpected argument '%s'; see 'regrad eval --help'"
                                     : "--weights FILE is required%s", optind < argc ? argv[optind] : "");
        return EXIT_USAGE;
    }
    cli_trained t;
    rg_dataset *train = NULL, *test = NULL;
    long *conf = NULL;
    if ((r = cli_load_trained(cmd, a.weights, (int)a.batch, &t)) >= 0) goto done;
    r = 0;
    const char *spec = a.data ? a.data : rg_tensor_file_meta(t.file, "data");
    if (!spec) {
        cli_error(cmd, "the checkpoint does not say what data it was trained on: give --data");
        r = EXIT_USAGE;
        goto done;
    }
    cli_trained_data_options(&t, &a.dopt);
    rg_status s = rg_dataset_open(spec, &a.dopt, &train, &test);
    if (s) {
        r = cli_fail(cmd, s);
        goto done;
    }
    rg_dataset *d = test ? test : train;
    if (d->class_names && t.names) { /* a folder: its classes matched to the model's by name */
        char *names[4096];
        const int k = cJSON_GetArraySize(t.names) < 4096 ? cJSON_GetArraySize(t.names) : 4096;
        for (int i = 0; i < k; i++) names[i] = cJSON_GetArrayItem(t.names, i)->valuestring;
        rg_dataset ref = {.classes = k, .class_names = names};
        if ((s = rg_dataset_match_classes(d, &ref))) {
            r = cli_fail(cmd, s);
            goto done;
        }
    }
    const int k = t.classes;
    conf = calloc((size_t)k * k, sizeof *conf);
    double loss, acc;
    if (!conf || (s = rg_evaluate_confusion(&t.m, d, NULL, d->n, &loss, &acc, conf))) {
        r = conf ? cli_fail(cmd, s) : EXIT_RUNTIME;
        goto done;
    }
    char buf[32];
    if (a.json) {
        cJSON *o = cJSON_CreateObject(), *pc = cJSON_AddArrayToObject(o, "per_class");
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        cJSON_AddStringToObject(o, "data", spec);
        cJSON_AddNumberToObject(o, "samples", d->n);
        cJSON_AddNumberToObject(o, "loss", loss);
        cJSON_AddNumberToObject(o, "accuracy", acc);
        for (int i = 0; i < k; i++) {
            long row = 0;
            cJSON *line = cJSON_CreateArray();
            for (int j = 0; j < k; j++) row += conf[(size_t)i * k + j],
                cJSON_AddItemToArray(line, cJSON_CreateNumber((double)conf[(size_t)i * k + j]));
            cJSON_AddItemToArray(cm, line);
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "class", cli_class_name(&t, i, buf, sizeof buf));
            cJSON_AddNumberToObject(c, "samples", (double)row);
            if (row) cJSON_AddNumberToObject(c, "accuracy", (double)conf[(size_t)i * k + i] / row);
            else cJSON_AddNullToObject(c, "accuracy");
            cJSON_AddItemToArray(pc, c);
        }
        char *text = cJSON_PrintUnformatted(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
        goto done;
    }
    printf("%s on %s (%d samples): loss %.4f  accuracy %.4f\n\n", a.weights, spec, d->n, loss, acc);
    printf("%-20s %8s %9s\n", "class", "samples", "accuracy");
    for (int i = 0; i < k; i++) {
        long row = 0;
        for (int j = 0; j < k; j++) row += conf[(size_t)i * k + j];
        printf("%-20.20s %8ld ", cli_class_name(&t, i, buf, sizeof buf), row);
        if (row) printf("%9.4f\n", (double)conf[(size_t)i * k + i] / row);
        else printf("%9s\n", "-");
    }
    printf("\nconfusion (rows: true class, columns: predicted)\n%6s", "");
    for (int j = 0; j < k; j++) printf(" %6d", j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%6d", i);
        for (int j = 0; j < k; j++) printf(" %6ld", conf[(size_t)i * k + j]);
        printf("\n");
    }
done:
    free(conf);
    rg_dataset_free(train);
    rg_dataset_free(test);
    cli_trained_free(&t);
    return r;
}

/* ---------------------------------------------------------------- predict */

static const char *const predict_help =
    "Usage: regrad predict --weights FILE [--top K] [--json] IMAGE...\n"
    "Class names and probabilities for each JPEG or PNG image, with the input size, channels\n"
    "and preprocessing stored in the checkpoint.\n"
    "\n"
    "  --weights FILE        a checkpoint written by regrad\n"
    "  --top K               the K most likely classes (default 5)\n"
    "  --json                one JSON object per image, one per line\n"
    "  --max-pixels N        refuse images with more pixels (default 100000000)\n"
    "  -h, --help            show this help\n";

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict";
    use_args a;
    int r = parse(cmd, argc, argv, predict_help, &a);
    if (r >= 0) return r;
    if (!a.weights || optind >= argc) {
        cli_error(cmd, "%s; see 'regrad predict --help'",
                  a.weights ? "give at least one image file" : "--weights FILE is required");
        return EXIT_USAGE;
    }
    const int n = argc - optind;
    cli_trained t;
    if ((r = cli_load_trained(cmd, a.weights, n < 32 ? n : 32, &t)) >= 0) {
        cli_trained_free(&t);
        return r;
    }
    r = 0;
    /* The images as a dataset of files: decoded, resized and preprocessed as in training. */
    a.dopt.strict = true;
    cli_trained_data_options(&t, &a.dopt);
    rg_dataset d = {.n = n, .c = t.c, .h = t.h, .w = t.w, .classes = t.classes,
                    .paths = argv + optind, .opt = a.dopt};
    int *labels = calloc((size_t)n, sizeof *labels), *idx = malloc((size_t)n * sizeof *idx);
    unsigned char *bad = calloc((size_t)n, 1);
    d.labels = labels, d.bad = bad;
    const int k = t.classes, top = a.top < k ? (int)a.top : k;
    float *prob = malloc((size_t)k * sizeof *prob);
    int *rank = malloc((size_t)k * sizeof *rank);
    if (!labels || !idx || !bad || !prob || !rank) {
        cli_error(cmd, "out of memory");
        r = EXIT_RUNTIME;
        goto done;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    rg_graph *g = t.m.graph;
    const int bs = rg_graph_max_batch(g);
    char buf[32];
    for (int start = 0; start < n && !r; start += bs) {
        const int b = n - start < bs ? n - start : bs;
        rg_status s = rg_dataset_batch(&d, idx + start, b, rg_graph_input_buffer(g, t.m.input),
                                       rg_graph_labels(g));
        if (s || (s = rg_graph_forward(g, b, 0))) {
            r = cli_fail(cmd, s);
            break;
        }
        const float *z = rg_node_output(g, t.m.logits);
        for (int i = 0; i < b; i++) {
            /* softmax, then the top K */
            const float *zi = z + (size_t)i * k;
            float mx = zi[0];
            double sum = 0;
            for (int j = 1; j < k; j++) mx = zi[j] > mx ? zi[j] : mx;
            for (int j = 0; j < k; j++) sum += prob[j] = expf(zi[j] - mx);
            for (int j = 0; j < k; j++) prob[j] = (float)(prob[j] / sum), rank[j] = j;
            for (int x = 0; x < top; x++)
                for (int y = x + 1; y < k; y++)
                    if (prob[rank[y]] > prob[rank[x]]) {
                        int tmp = rank[x];
                        rank[x] = rank[y], rank[y] = tmp;
                    }
            const char *path = argv[optind + start + i];
            if (a.json) {
                cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "top");
                cJSON_AddStringToObject(o, "image", path);
                for (int x = 0; x < top; x++) {
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddStringToObject(e, "class", cli_class_name(&t, rank[x], buf, sizeof buf));
                    cJSON_AddNumberToObject(e, "index", rank[x]);
                    cJSON_AddNumberToObject(e, "probability", prob[rank[x]]);
                    cJSON_AddItemToArray(list, e);
                }
                char *text = cJSON_PrintUnformatted(o);
                puts(text);
                free(text);
                cJSON_Delete(o);
            } else {
                printf("%s:", path);
                for (int x = 0; x < top; x++)
                    printf("%s %s %.4f", x ? "," : "", cli_class_name(&t, rank[x], buf, sizeof buf),
                           (double)prob[rank[x]]);
                printf("\n");
            }
        }
    }
done:
    free(labels), free(idx), free(bad), free(prob), free(rank);
    cli_trained_free(&t);
    return r;
}

/* ---------------------------------------------------------------- inspect */

static const char *const inspect_help =
    "Usage: regrad inspect [--full] FILE\n"
    "List a safetensors file's metadata and tensors (name, shape, values).\n"
    "\n"
    "  --full                print long metadata values whole (default: cut at 200 chars)\n"
    "  -h, --help            show this help\n";

int cmd_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    use_args a;
    int r = parse(cmd, argc, argv, inspect_help, &a);
    if (r >= 0) return r;
    if (optind != argc - 1) {
        cli_error(cmd, "give exactly one file; see 'regrad inspect --help'");
        return EXIT_USAGE;
    }
    rg_tensor_file *f;
    rg_status s = rg_safetensors_load(argv[optind], &f);
    if (s) return cli_fail(cmd, s);
    printf("%s\n\nmetadata\n", argv[optind]);
    for (int i = 0; rg_tensor_file_meta_key(f, i); i++) {
        const char *key = rg_tensor_file_meta_key(f, i), *v = rg_tensor_file_meta(f, key);
        int len = (int)strlen(v);
        if (!a.full && len > 200) printf("  %-18s %.200s... (%d chars)\n", key, v, len);
        else printf("  %-18s %s\n", key, v);
    }
    const int n = rg_tensor_file_count(f);
    size_t total = 0;
    printf("\ntensors (%d, float32)\n", n);
    for (int i = 0; i < n; i++) {
        int nd, shape[RG_MAX_DIMS];
        size_t count;
        rg_tensor_file_shape(f, i, &nd, shape);
        rg_tensor_file_find(f, rg_tensor_file_name(f, i), &count, NULL, NULL);
        char dims[64] = "[";
        for (int d = 0; d < nd; d++)
            snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%d", d ? ", " : "", shape[d]);
        strncat(dims, "]", sizeof dims - strlen(dims) - 1);
        printf("  %-50s %-20s %zu\n", rg_tensor_file_name(f, i), dims, count);
        total += count;
    }
    printf("\n%zu values, %.1f MiB\n", total, total * 4.0 / (1 << 20));
    rg_tensor_file_free(f);
    return 0;
}
