/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader (checkpoints, --weights,
 * inspect): header length, JSON, dtypes, shapes, offsets, overlaps, metadata, and every
 * accessor on what it accepts.  Built by tests/fuzz/run.sh.
 */
#include "regrad.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_tensor_file *f;
    if (rg_safetensors_parse(data, size, "fuzz", &f) != RG_OK) return 0;
    volatile float sink = 0;
    for (int i = 0; i < rg_tensor_file_count(f); i++) {
        int nd, shape[RG_MAX_DIMS];
        size_t count;
        rg_tensor_file_shape(f, i, &nd, shape);
        const float *t = rg_tensor_file_find(f, rg_tensor_file_name(f, i), &count, NULL, NULL);
        for (size_t k = 0; k < count; k++) sink += t[k]; /* every byte the header claims */
    }
    for (int i = 0; rg_tensor_file_meta_key(f, i); i++)
        (void)rg_tensor_file_meta(f, rg_tensor_file_meta_key(f, i));
    rg_tensor_file_free(f);
    return 0;
}
