/*
 * fuzz_onnx.c — libFuzzer target for the ONNX reader: each input is written to a .onnx file,
 * built as "onnx:FILE" at a small input size and compiled when the graph is small, and read
 * as weights.  Seeds: the PyTorch exports of tools/make_onnx_fixtures.py.
 */
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64], spec[80];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/regrad-fuzz-onnx-%d.onnx", (int)getpid());
        snprintf(spec, sizeof spec, "onnx:%s", path);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rg_model m;
    if (rg_model_build(spec, &(rg_model_opts){.c = 1, .h = 8, .w = 8}, &m) == RG_OK) {
        size_t floats = 0;
        for (int i = 0; i < rg_graph_param_count(m.graph); i++) {
            rg_param_info p;
            if (rg_graph_param(m.graph, i, &p) == RG_OK) floats += p.size;
        }
        if (floats < ((size_t)1 << 22)) (void)rg_graph_compile(m.graph, 1);
        rg_model_free(&m);
    }
    rg_tensor_file *t = NULL;
    if (rg_weights_load(path, &t) == RG_OK) rg_tensor_file_free(t);
    unlink(path);
    return 0;
}
