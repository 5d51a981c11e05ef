/*
 * cmd_summary.c — `regrad summary`: the layers, output shapes and parameter counts of a
 * model spec, without reading any data.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const summary_help =
    "Usage: regrad summary --model SPEC [--input CxHxW] [--classes N] [--freeze P]...\n"
    "Print each layer's name, output shape and parameter count.\n"
    "\n"
    "  --model SPEC     model spec, e.g. mlp:depth=2,width=256 or resnet50v2:top=0\n"
    "                   (default mlp); see 'regrad train --help' for the models\n"
    "  --input CxHxW    per-sample input shape (default: the model's, 1x28x28 for the\n"
    "                   small models, 3x224x224 for the ImageNet ones)\n"
    "  --classes N      classifier outputs (default: 10, or 1000 for ImageNet models)\n"
    "  --freeze P       freeze layers matching the glob P; --trainable P unfreezes\n"
    "  --trainable P    (repeatable, in order); frozen layers are marked and counted\n"
    "  -h, --help       show this help\n";

enum { OPT_MODEL = 256, OPT_INPUT, OPT_CLASSES, OPT_FREEZE, OPT_TRAINABLE };

static const struct option summary_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},
    {"input", required_argument, 0, OPT_INPUT},
    {"classes", required_argument, 0, OPT_CLASSES},
    {"freeze", required_argument, 0, OPT_FREEZE},
    {"trainable", required_argument, 0, OPT_TRAINABLE},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

int cmd_summary(int argc, char **argv) {
    const char *cmd = "summary", *spec = "mlp";
    int c_in = 0, h = 0, w = 0; /* 0: the model's default */
    long classes = 0;
    int c;
    cli_patterns patterns = {0};
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", summary_opts)) != -1) {
        switch (c) {
        case 'h': fputs(summary_help, stdout); return 0;
        case OPT_MODEL: spec = optarg; break;
        case OPT_INPUT:
            if (!cli_shape(cmd, "input", optarg, &c_in, &h, &w)) return EXIT_USAGE;
            break;
        case OPT_CLASSES:
            if (!cli_int(cmd, "classes", optarg, 2, 1 << 20, &classes)) return EXIT_USAGE;
            break;
        case OPT_FREEZE:
        case OPT_TRAINABLE:
            if (!cli_pattern_add(cmd, &patterns, optarg, c == OPT_TRAINABLE)) return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad summary --help'", argv[optind]);
        return EXIT_USAGE;
    }
    rg_model m;
    rg_status s = rg_model_build(spec, &(rg_model_opts){.c = c_in, .h = h, .w = w, .classes = (int)classes}, &m);
    if (s) return cli_fail(cmd, s);
    if (!cli_patterns_apply(cmd, &patterns, m.graph, spec)) {
        rg_model_free(&m);
        return EXIT_USAGE;
    }
    printf("Model: %s\n", spec);
    rg_graph_summary(m.graph, stdout);
    rg_model_free(&m);
    return 0;
}
