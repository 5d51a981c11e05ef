/*
 * ckpt_diff.c — for test_mpi.sh: the largest absolute difference between the parameters of
 * two checkpoints (tensors of the same name and size; optimizer and GRA tensors aside).
 */
#include "regrad.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    rg_tensor_file *a, *b;
    if (argc != 3 || rg_safetensors_load(argv[1], &a) || rg_safetensors_load(argv[2], &b)) {
        fprintf(stderr, "ckpt_diff: %s\n", argc == 3 ? rg_last_error() : "usage: ckpt_diff A B");
        return 2;
    }
    double worst = 0;
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
        for (size_t k = 0; k < na; k++) worst = fmax(worst, fabs((double)x[k] - y[k]));
        compared++;
    }
    printf("%d tensors, max |difference| %.3g\n", compared, worst);
    rg_tensor_file_free(a);
    rg_tensor_file_free(b);
    return 0;
}
