/*
 * fuzz_keras_model.c — libFuzzer target for the Keras model JSON reader: each input is
 * written to a file and built as "keras:FILE" at a small input size, then compiled at batch
 * 1 when the graph it makes is small.  Seeds: Keras 2 and 3 JSON of the fixtures (tools/
 * make_keras_fixtures.py) and Keras 2.1's bare Sequential list.
 */
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>

void __sanitizer_set_death_callback(void (*callback)(void));

static void no_crash_report(void) {}

static void in_child(void) { __sanitizer_set_death_callback(no_crash_report); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64], spec[80];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/regrad-fuzz-keras-model-%d.json", (int)getpid());
        snprintf(spec, sizeof spec, "keras:%s", path);
        pthread_atfork(NULL, NULL, in_child); /* an HDF5 input is read in a child */
        rg_keras_time_limit(2);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rg_model m;
    if (rg_model_build(spec, &(rg_model_opts){.c = 3, .h = 8, .w = 8, .classes = 3}, &m) == RG_OK) {
        size_t floats = 0;
        for (int i = 0; i < rg_graph_param_count(m.graph); i++) {
            rg_param_info p;
            if (rg_graph_param(m.graph, i, &p) == RG_OK) floats += p.size;
        }
        if (floats < ((size_t)1 << 22)) (void)rg_graph_compile(m.graph, 1);
        rg_model_free(&m);
    }
    unlink(path);
    return 0;
}
