/*
 * main.c — the `regrad` command: dispatches to a subcommand.  Each subcommand is a thin
 * getopt_long layer over the public API; exit codes are 0 success, 1 runtime error,
 * 2 usage error.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train a model and evaluate it on the test split"},
    {"eval", cmd_eval, "loss, accuracy, per-class accuracy and confusion of a checkpoint"},
    {"predict", cmd_predict, "class names and probabilities for image files"},
    {"inspect", cmd_inspect, "list a checkpoint's tensors and metadata"},
    {"export", cmd_export, "write a checkpoint's model as Keras HDF5 weights or ONNX"},
    {"prune", cmd_prune, "magnitude pruning of a checkpoint, or accuracy against sparsity"},
    {"report", cmd_report, "an HTML report with charts from metrics or experiment results"},
    {"summary", cmd_summary, "show a model's layers, shapes and parameter counts"},
    {"diagnose", cmd_diagnose, "report each layer's gradient health on a batch, with remedies"},
    {"experiment", cmd_experiment, "the GRA experiment: deep plain networks, GRA against the remedies"},
    {"bench", cmd_bench, "time training steps on random data, broken down by op"},
    {"export-images", cmd_export_images, "write a dataset as class folders of PNG images"},
    {"augment-preview", cmd_augment_preview, "write a grid of augmented samples as a PNG"},
    {"bench-data", cmd_bench_data, "time the image loader: decode, resize, augment"},
};

static void usage(FILE *f) {
    fprintf(f, "Usage: regrad COMMAND [options]\n"
               "Train neural networks in C and watch their gradients.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n  -h, --help     show this help\n  --version      show the version\n"
               "\nRun 'regrad COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "Usage: regrad COMMAND [options]; run 'regrad --help' for the commands\n");
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("regrad %s\n", RG_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "regrad: unknown command '%s'; run 'regrad --help' for the list\n", argv[1]);
    return EXIT_USAGE;
}
