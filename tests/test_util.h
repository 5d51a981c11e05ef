/*
 * test_util.h — helpers shared by the cmocka tests: fixture paths and float comparison
 * with a tolerance that says where two buffers first differ.
 */
#ifndef RG_TEST_UTIL_H
#define RG_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "regrad.h"

static inline const char *fixture_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("REGRAD_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
}

/* A private temporary folder for the test program's files: made with mkdtemp under
 * /tmp/regrad-PREFIX-XXXXXX (mkdtemp fills in the Xs), paths inside it (from a few
 * rotating buffers, so several can be used in one call), and its removal. */
static inline char *test_dir(void) {
    static char dir[256];
    return dir;
}

static inline bool test_dir_make(const char *prefix) {
    snprintf(test_dir(), 256, "/tmp/regrad-%s-XXXXXX", prefix);
    return mkdtemp(test_dir()) != NULL;
}

static inline const char *test_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_dir(), name);
    return buf[k];
}

static inline int test_dir_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir());
    return system(cmd);
}

/* The model written by rg_model_save and read back (the file is removed again). */
static inline rg_tensor_file *saved_and_loaded(const rg_model *m) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/regrad-saved-%d.safetensors", (int)getpid());
    rg_tensor_file *f = NULL;
    assert_int_equal(rg_model_save(m, path, NULL), RG_OK);
    assert_int_equal(rg_safetensors_load(path, &f), RG_OK);
    unlink(path);
    return f;
}

/* Fails the test if any |a-b| > atol + rtol*|b|, naming the first offender. */
static inline void assert_close(const char *what, const float *a, const float *b, size_t n,
                                double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) {
            fail_msg("%s[%zu]: got %.8g, expected %.8g (|diff| %.3g > %.3g)", what, i,
                     (double)a[i], (double)b[i], d, atol + rtol * fabs((double)b[i]));
        }
    }
}

/* A convolution with every knob explicit, for op cases. */
static inline rg_node test_conv(rg_graph *g, rg_node x, int filters, int k, int stride,
                                rg_padding mode, int pad, int dilation, int groups, int bias) {
    rg_conv_opts o = rg_conv_defaults();
    o.stride = stride, o.padding = mode, o.pad = pad, o.dilation = dilation, o.groups = groups;
    o.bias = bias;
    return rg_conv2d(g, x, filters, k, &o);
}

/* A separable synthetic problem in 4x4 "images": pixel j is bright when j % classes is
 * the label; learnable in a few epochs. */
static inline rg_dataset *synthetic(int n, int classes, uint64_t seed) {
    rg_dataset *d = calloc(1, sizeof *d);
    d->n = n, d->c = 1, d->h = 4, d->w = 4, d->classes = classes;
    d->pixels = malloc((size_t)n * 16);
    d->labels = malloc((size_t)n * sizeof(int));
    rg_rng r;
    rg_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int y = (int)rg_rng_below(&r, (uint32_t)classes);
        d->labels[i] = y;
        for (int j = 0; j < 16; j++) {
            float v = (j % classes == y ? 170.0f : 60.0f) + 30.0f * rg_rng_normal(&r);
            d->pixels[(size_t)i * 16 + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return d;
}

#endif
