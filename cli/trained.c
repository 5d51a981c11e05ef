/*
 * trained.c — a model rebuilt from a checkpoint, for the commands that use one (eval,
 * predict, prune): the spec, input shape and class count from its metadata, the weights
 * (and pruning masks) loaded by name, the class names and preprocessing it was trained
 * with.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_trained_free(cli_trained *t) {
    rg_model_free(&t->m);
    rg_tensor_file_free(t->file);
    cJSON_Delete(t->names);
}

/* A file that holds its model (.keras, whole-model .h5, .onnx): built from the file at the
 * size it states, its weights loaded. */
static int load_model_file(const char *cmd, const char *kind, const char *path, int batch, const char *device,
                           const char *precision, char *spec, size_t len, cli_trained *t) {
    snprintf(spec, len, "%s:%s", kind, path);
    rg_status s = rg_model_build(spec, NULL, &t->m);
    if (s || (s = cli_place(t->m.graph, device, precision)) || (s = rg_graph_compile(t->m.graph, batch)) ||
        (s = rg_model_load(&t->m, t->file, 0, NULL)))
        return cli_fail(cmd, s);
    const int *in = rg_node_shape(t->m.graph, t->m.input);
    if (rg_node_ndim(t->m.graph, t->m.input) != 3 || t->m.loss == RG_NONE) {
        cli_error(cmd, "'%s': regrad predicts with image classifiers ((None, H, W, C) in, "
                       "classes out); train this model with --model %s", path, spec);
        return EXIT_USAGE;
    }
    t->c = in[0], t->h = in[1], t->w = in[2];
    t->classes = (int)rg_node_size(t->m.graph, t->m.logits);
    return -1;
}

int cli_load_trained(const char *cmd, const char *path, int batch, const char *device, const char *precision,
                     cli_trained *t) {
    memset(t, 0, sizeof *t);
    rg_status s = rg_weights_load(path, &t->file);
    if (s) return cli_fail(cmd, s);
    const char *spec = rg_tensor_file_meta(t->file, "model");
    const char *input = rg_tensor_file_meta(t->file, "input");
    const char *classes = rg_tensor_file_meta(t->file, "classes");
    char tail, keras[300];
    const char *format = rg_tensor_file_meta(t->file, "format");
    if (!spec && format && (strncmp(format, "keras", 5) == 0 || strcmp(format, "onnx") == 0))
        return load_model_file(cmd, format[0] == 'k' ? "keras" : "onnx", path, batch, device, precision, keras,
                               sizeof keras, t); /* the file's own model */
    if (!spec && input && classes) {
        cli_error(cmd, "'%s' holds a model built by hand in C (no zoo spec to rebuild it from): "
                       "load it with rg_model_load into the graph that made it", path);
        return EXIT_USAGE;
    }
    if (!spec || !input || !classes || sscanf(input, "%dx%dx%d%c", &t->c, &t->h, &t->w, &tail) != 3 ||
        sscanf(classes, "%d%c", &t->classes, &tail) != 1) {
        cli_error(cmd, "'%s' has no model description (model, input, classes in its metadata): "
                       "use a checkpoint written by regrad", path);
        return EXIT_USAGE;
    }
    if ((s = rg_model_build(spec, &(rg_model_opts){.c = t->c, .h = t->h, .w = t->w, .classes = t->classes}, &t->m)) ||
        (s = cli_place(t->m.graph, device, precision)) || (s = rg_graph_compile(t->m.graph, batch)) ||
        (s = rg_model_load(&t->m, t->file, 0, NULL)))
        return cli_fail(cmd, s);
    const char *names = rg_tensor_file_meta(t->file, "class_names");
    if (names) {
        t->names = cJSON_Parse(names);
        if (!cJSON_IsArray(t->names) || cJSON_GetArraySize(t->names) > t->classes) {
            cJSON_Delete(t->names);
            t->names = NULL;
        }
    }
    return -1;
}

const char *cli_class_name(const cli_trained *t, int k, char *buf, size_t len) {
    const cJSON *n = t->names ? cJSON_GetArrayItem(t->names, k) : NULL;
    if (cJSON_IsString(n)) return n->valuestring;
    snprintf(buf, len, "%d", k);
    return buf;
}

/* Data options as the model was trained: its input size and channels, its preprocessing. */
void cli_trained_data_options(const cli_trained *t, rg_data_options *o) {
    if (!o->channels) o->channels = t->c;
    if (!o->classes) o->classes = t->classes;
    if (!o->height) o->height = t->h, o->width = t->w;
    if (!o->max_pixels) o->max_pixels = RG_DEFAULT_MAX_PIXELS;
    const char *pre = rg_tensor_file_meta(t->file, "preprocess");
    if (pre && o->preprocess == RG_PRE_SCALE01) rg_preprocess_parse(pre, &o->preprocess);
}

