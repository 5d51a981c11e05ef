/*
 * fuzz_values.c — libFuzzer target for the command line's values: each line of the input
 * goes through every value parser (augmentation lists, schedules, optimizers, initialisers,
 * activations, preprocessing, and the command line's option tables: every value parser, an
 * option's name itself, "did you mean").  The CLI
 * parsers print their one-line errors; stderr is parked on /dev/null around them.
 */
#include "cli.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int devnull = -1, saved = -1;

/* Every kind of value the command line's tables parse, shared parsers included. */
typedef struct values {
    long n;
    double f, bytes;
    int shape[3];
    rg_data_options data;
    rg_optim_kind optim;
    rg_schedule schedule;
    rg_augment augment;
    rg_loss_kind loss;
    rg_prune_opts prune;
    cli_patterns patterns;
} values;

#define V values
static const cli_option value_options[] = {
    {.name = "n", .type = CLI_INT, CLI_AT(V, n), .lo = -5, .hi = 1099511627776.0, .help = ""},
    {.name = "f", .type = CLI_REAL, CLI_AT(V, f), .lo = 0, .hi = 1e9, .open_lo = true, .help = ""},
    {.name = "bytes", .type = CLI_PARSE, CLI_AT(V, bytes), .parse = cli_parse_bytes, .help = ""},
    {.name = "input", .type = CLI_PARSE, CLI_AT(V, shape), .parse = cli_parse_shape, .help = ""},
    {.name = "optimizer", .type = CLI_PARSE, CLI_AT(V, optim), .parse = cli_parse_optimizer, .help = ""},
    {.name = "schedule", .type = CLI_PARSE, CLI_AT(V, schedule), .parse = cli_parse_schedule, .help = ""},
    {.name = "augment", .type = CLI_PARSE, CLI_AT(V, augment), .parse = cli_parse_augment, .help = ""},
    {.name = "loss", .type = CLI_PARSE, CLI_AT(V, loss), .parse = cli_parse_loss, .help = ""},
    {.name = "structure", .type = CLI_PARSE, CLI_AT(V, prune.structure), .parse = cli_parse_structure, .help = ""},
    {.name = "freeze", .type = CLI_PARSE, CLI_AT(V, patterns), .parse = cli_parse_freeze, .help = ""},
    {.table = cli_data_options, CLI_AT(V, data)},
    CLI_END,
};
#undef V

static const cli_command value_command = {.name = "fuzz", .usage = "", .about = "",
                                          .options = value_options};

/* t as the value of every option, and as an option itself. */
static void fuzz_options(char *t) {
    static const char *const names[] = {"--n", "--f", "--bytes", "--input", "--optimizer",
                                        "--schedule", "--augment", "--loss", "--structure",
                                        "--freeze", "--input-size", "--channels", "--preprocess",
                                        "--max-pixels"};
    values v = {0};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *argv[] = {"fuzz", (char *)names[i], t, NULL};
        (void)cli_parse(&value_command, 3, argv, &v, NULL);
    }
    char *argv[] = {"fuzz", t, NULL};
    (void)cli_parse(&value_command, 2, argv, &v, NULL);
}

static void quiet(bool on) {
    if (devnull < 0) devnull = open("/dev/null", O_WRONLY), saved = dup(2);
    fflush(stderr);
    dup2(on ? devnull : saved, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 512) return 0;
    char buf[513];
    memcpy(buf, data, size);
    buf[size] = 0;
    for (char *save = NULL, *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
        rg_augment a;
        rg_schedule sc;
        rg_optim_kind ok;
        rg_init in;
        rg_act act;
        rg_preprocess pp;
        (void)rg_augment_parse(t, &a);
        if (rg_schedule_parse(t, &sc) == RG_OK) (void)rg_schedule_lr(&sc, 0.1f, 7, 1, 100);
        (void)rg_optim_parse(t, &ok);
        (void)rg_init_parse(t, &in);
        (void)rg_act_parse(t, &act);
        (void)rg_preprocess_parse(t, &pp);
        quiet(true);
        fuzz_options(t);
        quiet(false);
    }
    return 0;
}
