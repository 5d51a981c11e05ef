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

#include <cmocka.h>

#include "regrad.h"

static inline const char *fixture_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("REGRAD_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
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

#endif
