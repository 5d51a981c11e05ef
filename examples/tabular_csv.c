/*
 * tabular_csv.c — tabular data from memory: reads a CSV file of numeric features with the
 * class (0, 1, ...) in the last column, standardises each feature, holds out a fifth of the
 * rows, and trains an MLP on the rest with GRA.
 *
 *   build/examples/tabular_csv FILE.csv [EPOCHS]
 */
#include <math.h>
#include <regrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 256

/* Rows of numbers into x (rows, cols - 1) and y (rows); a first line that is not numbers (a
 * header) is skipped.  Returns the rows read, or -1 after printing why. */
static int read_csv(const char *path, float **x, int **y, int *features) {
    FILE *f = fopen(path, "r");
    if (!f) return fprintf(stderr, "tabular_csv: cannot open '%s'\n", path), -1;
    char line[8192];
    int rows = 0, cap = 0, cols = -1;
    *x = NULL, *y = NULL;
    for (int lineno = 1; fgets(line, sizeof line, f); lineno++) {
        double v[MAX_COLS];
        int n = 0;
        char *p = line, *end;
        while (n < MAX_COLS) {
            v[n] = strtod(p, &end);
            if (end == p) break;
            n++;
            p = end + strspn(end, " \t");
            if (*p != ',') break;
            p++;
        }
        if (n == 0 && lineno == 1) continue; /* a header */
        if (n < 2 || (cols >= 0 && n != cols) || v[n - 1] < 0 || v[n - 1] != floor(v[n - 1])) {
            fprintf(stderr, "tabular_csv: %s:%d: expected %s numbers, the last a class 0, 1, ...\n",
                    path, lineno, cols >= 0 ? "as many" : "two or more");
            fclose(f);
            return -1;
        }
        cols = n;
        if (rows == cap) {
            cap = cap ? 2 * cap : 1024;
            *x = realloc(*x, (size_t)cap * (cols - 1) * sizeof **x);
            *y = realloc(*y, (size_t)cap * sizeof **y);
            if (!*x || !*y) return fclose(f), fprintf(stderr, "tabular_csv: out of memory\n"), -1;
        }
        for (int j = 0; j < cols - 1; j++) (*x)[(size_t)rows * (cols - 1) + j] = (float)v[j];
        (*y)[rows++] = (int)v[cols - 1];
    }
    fclose(f);
    *features = cols - 1;
    if (rows < 10) return fprintf(stderr, "tabular_csv: %s: fewer than 10 rows\n", path), -1;
    return rows;
}

/* Each feature to mean 0 and standard deviation 1 over the rows. */
static void standardise(float *x, int rows, int features) {
    for (int j = 0; j < features; j++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < rows; i++) s += x[(size_t)i * features + j];
        const double mean = s / rows;
        for (int i = 0; i < rows; i++) s2 += pow(x[(size_t)i * features + j] - mean, 2);
        const double sd = sqrt(s2 / rows) + 1e-12;
        for (int i = 0; i < rows; i++) x[(size_t)i * features + j] = (float)((x[(size_t)i * features + j] - mean) / sd);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: tabular_csv FILE.csv [EPOCHS]\n"), 2;
    float *x;
    int *y, features;
    const int rows = read_csv(argv[1], &x, &y, &features);
    if (rows < 0) return 1;
    standardise(x, rows, features);
    /* the last fifth of the rows, after a seeded shuffle, is the test set */
    int *order = malloc((size_t)rows * sizeof *order);
    float *xs = malloc((size_t)rows * features * sizeof *xs);
    int *ys = malloc((size_t)rows * sizeof *ys);
    rg_rng rng;
    rg_rng_seed(&rng, 1);
    for (int i = 0; i < rows; i++) order[i] = i;
    rg_rng_shuffle(&rng, order, rows);
    for (int i = 0; i < rows; i++) {
        memcpy(xs + (size_t)i * features, x + (size_t)order[i] * features, (size_t)features * sizeof *xs);
        ys[i] = y[order[i]];
    }
    const int n_test = rows / 5, n_train = rows - n_test;
    rg_dataset *train = NULL, *test = NULL;
    rg_model m = {0};
    int classes = 0;
    for (int i = 0; i < rows; i++) classes = ys[i] + 1 > classes ? ys[i] + 1 : classes;
    rg_fit_config cfg = rg_fit_defaults(); /* Adam, GRA on */
    cfg.epochs = argc > 2 ? atoi(argv[2]) : 20;
    cfg.batch = 32;
    double loss, acc;
    if (rg_dataset_from_floats(n_train, 1, &features, xs, ys, classes, &train) ||
        rg_dataset_from_floats(n_test, 1, &features, xs + (size_t)n_train * features, ys + n_train,
                               classes, &test) ||
        rg_model_build("mlp:depth=2,width=64",
                       &(rg_model_opts){.c = features, .h = 1, .w = 1, .classes = classes, .seed = 1}, &m) ||
        rg_fit(&m, train, &cfg, NULL) || rg_evaluate(&m, test, NULL, test->n, &loss, &acc)) {
        fprintf(stderr, "tabular_csv: %s\n", rg_last_error());
        return 1;
    }
    printf("%d rows, %d features, %d classes: test loss %.4f, accuracy %.4f on %d held-out rows\n",
           rows, features, classes, loss, acc, n_test);
    rg_model_free(&m);
    rg_dataset_free(train);
    rg_dataset_free(test);
    free(x), free(y), free(order), free(xs), free(ys);
    return 0;
}
