/*
 * fuzz_spec.c — libFuzzer target for model specs ("resnet50v2:classes=5,input=3x64x64",
 * any text): every spec is built (not compiled: no parameter memory) and freed; a bad
 * one must fail with a message, never crash or overflow a size.
 */
#include "regrad.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 300) return 0;
    char spec[301];
    memcpy(spec, data, size);
    spec[size] = 0;
    rg_model m;
    if (rg_model_build(spec, &(rg_model_opts){.seed = 1}, &m) == RG_OK) rg_model_free(&m);
    if (rg_model_build(spec, &(rg_model_opts){.c = 3, .h = 32, .w = 32, .classes = 7, .loss = RG_LOSS_MSE, .label_smoothing = 0.1f, .seed = 1}, &m) == RG_OK) rg_model_free(&m);
    return 0;
}
