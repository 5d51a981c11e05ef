/*
 * ckpt_diff.c — the largest absolute difference between the parameters of two checkpoints
 * (tensors of the same name and size; optimizer and GRA tensors aside), and how many values
 * differ.  Usage: ckpt_diff A B [MAX]: with MAX, exits 1 when some value differs by more
 * than MAX (0: the weights must be equal; a NaN on one side only is a difference); with
 * "relative" after MAX, each difference over the larger of 1 and its tensor's largest
 * |value| in A (GRA's reconditioning scales a layer's weights up by hundreds).  For
 * test_mpi.sh, test_device_random.sh and tools/same_bits.sh.
 */
#include "regrad.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    rg_tensor_file *a, *b;
    char *end = NULL;
    const double max = argc >= 4 ? strtod(argv[3], &end) : INFINITY;
    const bool relative = argc == 5 && !strcmp(argv[4], "relative");
    if (argc < 3 || argc > 5 || (argc >= 4 && (*end || !(max >= 0))) || (argc == 5 && !relative)) {
        fprintf(stderr, "ckpt_diff: usage: ckpt_diff A B [MAX [relative]], MAX a difference of 0 or more\n");
        return 2;
    }
    if (rg_safetensors_load(argv[1], &a) || rg_safetensors_load(argv[2], &b)) {
        fprintf(stderr, "ckpt_diff: %s\n", rg_last_error());
        return 2;
    }
    double worst = 0;
    long differ = 0, over = 0;
    int compared = 0;
    for (int i = 0; i < rg_tensor_file_count(a); i++) {
        const char *name = rg_tensor_file_name(a, i);
        if (!strncmp(name, "optimizer.", 10) || !strncmp(name, "gra.", 4)) continue;
        size_t na, nb;
        const float *x = rg_tensor_file_find(a, name, &na, NULL, NULL);
        const float *y = rg_tensor_file_find(b, name, &nb, NULL, NULL);
        if (!y || na != nb) {
            fprintf(stderr, "ckpt_diff: '%s' is missing or of another size in %s\n", name, argv[2]);
            return 2;
        }
        double scale = 1;
        for (size_t k = 0; relative && k < na; k++) scale = fmax(scale, fabs((double)x[k]));
        for (size_t k = 0; k < na; k++) {
            const double d = fabs((double)x[k] - y[k]) / scale;
            const bool same = x[k] == y[k] || (isnan(x[k]) && isnan(y[k]));
            differ += !same;
            over += !same && !(d <= max);
            worst = fmax(worst, d);
        }
        compared++;
    }
    printf("%d tensors, max |difference|%s %.3g, %ld values differ\n", compared,
           relative ? " (relative to each tensor's largest value)" : "", worst, differ);
    rg_tensor_file_free(a);
    rg_tensor_file_free(b);
    return over ? 1 : 0;
}
