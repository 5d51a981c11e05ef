/*
 * fuzz_keras.c — libFuzzer target for Keras's HDF5 weights files: each input is written to a
 * file and read as weights (HDF5 reads files, not memory), then loaded into a small model by
 * name.  Seeds: the small fixtures of tools/make_keras_fixtures.py.  The library reads the file
 * in a child process (libhdf5 is not safe on malformed files); a child that dies is an
 * error the parent reports, so the child drops libFuzzer's crash handler: only the parent,
 * regrad's own code, is under test.
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
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/regrad-fuzz-keras-%d.h5", (int)getpid());
        pthread_atfork(NULL, NULL, in_child);
        rg_keras_time_limit(2); /* a malformed file can keep libhdf5 looping */
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rg_tensor_file *t = NULL;
    if (rg_weights_load(path, &t) == RG_OK) {
        rg_model m;
        if (rg_model_build("mlp:depth=1,width=4", &(rg_model_opts){.c = 1, .h = 2, .w = 2, .classes = 3}, &m) == RG_OK &&
            rg_graph_compile(m.graph, 1) == RG_OK)
            (void)rg_model_load(&m, t, RG_LOAD_PARTIAL, NULL);
        rg_model_free(&m);
    }
    rg_tensor_file_free(t);
    unlink(path);
    return 0;
}
