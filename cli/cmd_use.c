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

typedef struct use_args {
    const char *weights, *data, *device, *precision;
    bool json, full;
    long top, batch, threads;
    rg_data_options dopt;
} use_args;

#define A use_args
static const cli_option weights_rows[] = {
    {.name = "weights", .meta = "FILE", .type = CLI_TEXT, CLI_AT(A, weights),
     .help = "a checkpoint written by regrad (train --checkpoint-dir)"},
    {.name = "json", .type = CLI_FLAG, CLI_AT(A, json), .help = "JSON instead of text"},
    CLI_END,
};
static const cli_option eval_options[] = {
    {.table = weights_rows},
    {.name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, data),
     .help = "dataset (default: the one the model was trained on); its test split when it has "
             "one, else all of it"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(A, batch), .lo = 1, .hi = 65536,
     .dflt = "128", .help = "samples per forward pass"},
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    {.table = cli_data_options, CLI_AT(A, dopt)},
    CLI_END,
};
static const cli_option predict_options[] = {
    {.table = weights_rows},
    {.name = "top", .meta = "K", .type = CLI_INT, CLI_AT(A, top), .lo = 1, .hi = 1 << 20,
     .dflt = "5", .help = "the K most likely classes"},
    {.name = "max-pixels", .meta = "N", .type = CLI_INT, CLI_AT(A, dopt.max_pixels), .lo = 1,
     .hi = 1099511627776.0, .help = "refuse images with more pixels (default 100000000)"},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    CLI_END,
};
static const cli_option inspect_options[] = {
    {.name = "full", .type = CLI_FLAG, CLI_AT(A, full),
     .help = "print long metadata values whole (default: cut at 200 characters)"},
    CLI_END,
};
#undef A

static const cli_command eval_command = {
    .name = "eval", .usage = "--weights FILE [--data SPEC] [--json] [options]",
    .about = "Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint's model "
             "(size, channels and preprocessing default to the model's).",
    .options = eval_options};
static const cli_command predict_command = {
    .name = "predict", .usage = "--weights FILE [--top K] [--json] IMAGE...",
    .about = "Class names and probabilities for each JPEG or PNG image, with the input size, "
             "channels and preprocessing stored in the checkpoint (--json: one object per image, "
             "one per line).",
    .options = predict_options};
static const cli_command inspect_command = {
    .name = "inspect", .usage = "[--full] FILE",
    .about = "List a safetensors file's metadata and tensors (name, shape, values).",
    .options = inspect_options};

/* Parses the options of c; returns -1 to go on (*first_arg: the first non-option), or an
 * exit code. */
static int parse(const cli_command *c, int argc, char **argv, use_args *a, int *first_arg) {
    *a = (use_args){0};
    cli_defaults(c, a);
    a->dopt.warn = cli_warn;
    const int r = cli_parse(c, argc, argv, a, first_arg);
    if (r >= 0) return r;
    rg_set_threads((int)a->threads);
    return cli_device(c->name, a->device);
}

/* ---------------------------------------------------------------- eval */

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    use_args a;
    int r = parse(&eval_command, argc, argv, &a, NULL);
    if (r >= 0) return r;
    if (!a.weights) {
        cli_error(cmd, "--weights FILE is required");
        return EXIT_USAGE;
    }
    cli_trained t;
    rg_dataset *train = NULL, *test = NULL;
    long *conf = NULL;
    if ((r = cli_load_trained(cmd, a.weights, (int)a.batch, a.device, a.precision, &t)) >= 0) goto done;
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

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict";
    use_args a;
    int first;
    int r = parse(&predict_command, argc, argv, &a, &first);
    if (r >= 0) return r;
    if (!a.weights || first >= argc) {
        cli_error(cmd, "%s; see 'regrad predict --help'",
                  a.weights ? "give at least one image file" : "--weights FILE is required");
        return EXIT_USAGE;
    }
    const int n = argc - first;
    cli_trained t;
    if ((r = cli_load_trained(cmd, a.weights, n < 32 ? n : 32, a.device, a.precision, &t)) >= 0) {
        cli_trained_free(&t);
        return r;
    }
    r = 0;
    /* The images as a dataset of files: decoded, resized and preprocessed as in training. */
    a.dopt.strict = true;
    cli_trained_data_options(&t, &a.dopt);
    rg_dataset d = {.n = n, .c = t.c, .h = t.h, .w = t.w, .classes = t.classes,
                    .paths = argv + first, .opt = a.dopt};
    int *labels = calloc((size_t)n, sizeof *labels), *idx = malloc((size_t)n * sizeof *idx);
    unsigned char *bad = calloc((size_t)n, 1);
    d.labels = labels, d.bad = bad;
    const int k = t.classes, top = a.top < k ? (int)a.top : k;
    float *prob = malloc((size_t)k * sizeof *prob), *z = malloc((size_t)k * (n < 32 ? n : 32) * sizeof *z);
    int *rank = malloc((size_t)k * sizeof *rank);
    if (!labels || !idx || !bad || !prob || !z || !rank) {
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
        if (s || (s = rg_graph_forward(g, b, 0)) || (s = rg_node_read(g, t.m.logits, b, z))) {
            r = cli_fail(cmd, s);
            break;
        }
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
            const char *path = argv[first + start + i];
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
    free(labels), free(idx), free(bad), free(prob), free(z), free(rank);
    cli_trained_free(&t);
    return r;
}

/* ---------------------------------------------------------------- inspect */

int cmd_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    use_args a;
    int first;
    int r = parse(&inspect_command, argc, argv, &a, &first);
    if (r >= 0) return r;
    if (first != argc - 1) {
        cli_error(cmd, "give exactly one file; see 'regrad inspect --help'");
        return EXIT_USAGE;
    }
    rg_tensor_file *f;
    rg_status s = rg_safetensors_load(argv[first], &f);
    if (s) return cli_fail(cmd, s);
    printf("%s\n\nmetadata\n", argv[first]);
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
