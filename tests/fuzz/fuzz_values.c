/*
 * fuzz_values.c — libFuzzer target for the command line's values: each line of the input
 * goes through every value parser (augmentation lists, schedules, optimizers, initialisers,
 * activations, preprocessing, and the CLI's numbers, shapes and data options).  The CLI
 * parsers print their one-line errors; stderr is parked on /dev/null around them.
 */
#include "cli.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int devnull = -1, saved = -1;

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
        long l;
        double d;
        int c, h, w;
        rg_data_options o = {0};
        quiet(true);
        (void)cli_int("fuzz", "n", t, -5, 1L << 40, &l);
        (void)cli_float("fuzz", "f", t, 0, 1e9, true, &d);
        (void)cli_shape("fuzz", "input", t, &c, &h, &w);
        for (int k = CLI_OPT_INPUT_SIZE; k <= CLI_OPT_MAX_PIXELS; k++) (void)cli_data_option("fuzz", k, t, &o);
        quiet(false);
    }
    return 0;
}
