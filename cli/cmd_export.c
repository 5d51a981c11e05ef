/*
 * cmd_export.c — `regrad export`: a checkpoint's model in another framework's format: Keras's
 * HDF5 weights (model.load_weights reads them into the matching Keras model), the legacy
 * layout, or Keras 3's when the output ends in .weights.h5; or ONNX for inference runtimes,
 * with the checkpoint's classes, class names, input size and preprocessing as metadata.
 */
#include "cli.h"

#include <string.h>
#include <strings.h>

typedef struct export_args {
    const char *format, *weights, *out;
} export_args;

static bool parse_format(const char *cmd, const cli_option *r, const char *text, void *field) {
    if (strcmp(text, "keras-h5") != 0 && strcmp(text, "onnx") != 0) {
        cli_error(cmd, "--%s '%s': use keras-h5 or onnx", r->name, text);
        return false;
    }
    *(const char **)field = text;
    return true;
}

/* the format a file name's extension names, or NULL */
static const char *format_of(const char *path) {
    const size_t n = strlen(path);
    if (n > 3 && strcasecmp(path + n - 3, ".h5") == 0) return "keras-h5";
    if (n > 5 && strcasecmp(path + n - 5, ".onnx") == 0) return "onnx";
    return NULL;
}

static const cli_option export_options[] = {
    {.name = "format", .meta = "NAME", .type = CLI_PARSE, CLI_AT(export_args, format),
     .parse = parse_format,
     .help = "keras-h5: Keras's HDF5 weights, loaded by model.load_weights (Keras 3's layout "
             "when OUT ends in .weights.h5, else the legacy layout); onnx: the inference graph "
             "with its weights (opset 13, dynamic batch) (default: from OUT's extension, .h5 or "
             ".onnx)"},
    {.name = "weights", .meta = "FILE", .type = CLI_TEXT, CLI_AT(export_args, weights),
     .help = "a checkpoint written by regrad"},
    {.name = "out", .short_name = 'o', .meta = "FILE", .type = CLI_TEXT, CLI_AT(export_args, out),
     .help = "the file to write"},
    CLI_END,
};

static const cli_command export_command = {
    .name = "export", .usage = "--weights FILE -o OUT[.h5|.onnx] [--format keras-h5|onnx]",
    .about = "Write a checkpoint's model in another framework's format.",
    .options = export_options};

int cmd_export(int argc, char **argv) {
    const char *cmd = export_command.name;
    export_args a = {0};
    cli_defaults(&export_command, &a);
    int r = cli_parse(&export_command, argc, argv, &a, NULL);
    if (r >= 0) return r;
    if (!a.weights || !a.out) {
        cli_error(cmd, "%s is required; see 'regrad export --help'", a.weights ? "-o FILE" : "--weights FILE");
        return EXIT_USAGE;
    }
    if (!a.format) a.format = format_of(a.out);
    if (!a.format) {
        cli_error(cmd, "cannot tell the format from '%s': name it .h5 or .onnx, or add --format keras-h5|onnx",
                  a.out);
        return EXIT_USAGE;
    }
    cli_trained t;
    if ((r = cli_load_trained(cmd, a.weights, 1, "cpu", "fp32", &t)) < 0) {
        rg_meta meta = {0};
        static const char *const keys[] = {"model", "input", "classes", "class_names", "preprocess"};
        for (int i = 0; i < 5; i++) {
            const char *v = rg_tensor_file_meta(t.file, keys[i]);
            if (v) rg_meta_set(&meta, keys[i], v);
        }
        const rg_status s = strcmp(a.format, "onnx") == 0 ? rg_onnx_save(&t.m, a.out, &meta)
                                                          : rg_keras_save(&t.m, a.out);
        r = s ? cli_fail(cmd, s) : (printf("wrote %s (%s)\n", a.out, a.format), 0);
    }
    cli_trained_free(&t);
    return r;
}
