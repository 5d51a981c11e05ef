/*
 * fuzz_idx.c — libFuzzer target for the IDX reader (raw and gzip): the first byte splits
 * the input into an images file and a labels file, written to a private temporary folder
 * (the reader takes paths), then loaded with and without a class limit.
 */
#include "regrad.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char img[64], lbl[64];

static void put(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(d, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!img[0]) {
        snprintf(img, sizeof img, "/tmp/regrad-fuzz-idx-%d-img", (int)getpid());
        snprintf(lbl, sizeof lbl, "/tmp/regrad-fuzz-idx-%d-lbl", (int)getpid());
    }
    if (size < 1) return 0;
    const size_t cut = 1 + (size - 1) * data[0] / 255;
    put(img, data + 1, cut - 1);
    put(lbl, data + cut, size - cut);
    for (int classes = 0; classes <= 10; classes += 10) {
        rg_dataset *d = NULL;
        if (rg_idx_load(img, lbl, classes, &d) == RG_OK) {
            volatile long sum = 0;
            for (int i = 0; i < d->n; i++) sum += d->labels[i] + d->pixels[(size_t)i * d->h * d->w];
            rg_dataset_free(d);
        }
    }
    return 0;
}
