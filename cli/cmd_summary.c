/*
 * cmd_summary.c — `regrad summary`: the layers, output shapes and parameter counts of a
 * model spec, without reading any data; with --batch, the memory training it plans there
 * (on --device, in --precision).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct summary_args {
    const char *model, *weights, *device, *precision;
    bool partial;
    int input[3]; /* 0: the model's default */
    long classes, batch;
    cli_patterns patterns;
} summary_args;

#define A summary_args
static const cli_option summary_options[] = {
    {.name = "model", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, model), .dflt = "mlp",
     .help = "a model spec, e.g. mlp:depth=2,width=256 or resnet50v2:top=0, or keras:FILE (a "
             "Keras model: to_json() text, .keras or whole-model .h5; printed as Keras does)"},
    {.name = "input", .meta = "CxHxW", .type = CLI_PARSE, CLI_AT(A, input), .parse = cli_parse_shape,
     .help = "per-sample input shape (default: the model's, 1x28x28 for the small models, "
             "3x224x224 for the ImageNet ones)"},
    {.name = "classes", .meta = "N", .type = CLI_INT, CLI_AT(A, classes), .lo = 2, .hi = 1 << 20,
     .help = "classifier outputs (default: 10, or 1000 for ImageNet models)"},
    {.name = "freeze", .meta = "P", .type = CLI_PARSE, CLI_AT(A, patterns), .parse = cli_parse_freeze,
     .help = "freeze layers matching the glob P (repeatable, in order with --trainable); frozen "
             "layers are marked and counted"},
    {.name = "trainable", .meta = "P", .type = CLI_PARSE, CLI_AT(A, patterns),
     .parse = cli_parse_trainable, .help = "unfreeze layers matching the glob P"},
    {.name = "weights", .meta = "FILE", .type = CLI_TEXT, CLI_AT(A, weights),
     .help = "also load a checkpoint's or a Keras HDF5 file's weights by layer name and say "
             "what fits"},
    {.name = "weights-partial", .type = CLI_FLAG, CLI_AT(A, partial),
     .help = "with --weights: load what fits and list the rest, instead of failing"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(A, batch), .lo = 1, .hi = 1 << 24,
     .help = "also plan training at batch N and print the memory it takes: the weights, their "
             "gradients, the activations and the scratch (an optimizer's moments come on top)"},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    CLI_END,
};
#undef A

int cmd_summary(int argc, char **argv) {
    const char *cmd = "summary";
    char about[2048] = "Print each layer's name, output shape and parameter count. The models "
                       "and their own options (all also take classes=N, input=CxHxW, top=0|1):";
    char spec[160];
    for (int i = 0; rg_model_spec(i, spec, sizeof spec); i++)
        snprintf(about + strlen(about), sizeof about - strlen(about), "\n  %s", spec);
    const cli_command command = {.name = cmd, .usage = "--model SPEC [--input CxHxW] [--classes N] "
                                 "[--freeze P]... [--batch N [--device D] [--precision P]]",
                                 .about = about, .options = summary_options};
    summary_args a = {0};
    cli_defaults(&command, &a);
    int r = cli_parse(&command, argc, argv, &a, NULL);
    if (r >= 0) return r;
    if ((r = cli_device(cmd, a.device)) >= 0) return r;
    rg_model m;
    const rg_model_opts mo = {.c = a.input[0], .h = a.input[1], .w = a.input[2], .classes = (int)a.classes};
    const bool keras = strncmp(a.model, "keras:", 6) == 0;
    if (keras && !a.weights && !a.patterns.n) { /* Keras's own table */
        const rg_status ks = rg_keras_summary(a.model + 6, &mo, stdout);
        return ks ? cli_fail(cmd, ks) : 0;
    }
    rg_status s = rg_model_build(a.model, &mo, &m);
    if (s) return cli_fail(cmd, s);
    if (!cli_patterns_apply(cmd, &a.patterns, m.graph, a.model)) {
        rg_model_free(&m);
        return EXIT_USAGE;
    }
    /* checked with or without --batch: a bad device or precision is an error either way */
    if ((s = cli_place(m.graph, a.device, a.precision))) {
        rg_model_free(&m);
        return cli_fail(cmd, s);
    }
    printf("Model: %s\n", a.model);
    rg_graph_summary(m.graph, stdout);
    if (a.batch && !(s = rg_graph_compile(m.graph, (int)a.batch))) {
        char text[32];
        printf("Memory at batch %ld on %s in %s: %s\n", a.batch, a.device, a.precision,
               rg_bytes_text((double)rg_graph_memory(m.graph), text));
    }
    rg_tensor_file *f = NULL;
    rg_load_report rep;
    if (!s && a.weights && (!(s = rg_weights_load(a.weights, &f)) && (a.batch || !(s = rg_graph_compile(m.graph, 1))) &&
                            !(s = rg_model_load(&m, f, a.partial ? RG_LOAD_PARTIAL : RG_LOAD_STRICT, &rep))))
        cli_print_load_report(a.weights, &rep);
    rg_tensor_file_free(f);
    rg_model_free(&m);
    return s ? cli_fail(cmd, s) : 0;
}
