/*
 * test_data.c — IDX reading: valid raw and gzip files, and every way a file can be bad
 * (missing, wrong magic, wrong type, truncated, too long, hostile dimensions, count
 * mismatch, label out of range), each refused with a message naming the problem; the specs
 * (fashion-mnist:DIR's files gzip or unpacked), and a limit that reads only the first samples.
 */
#include "test_util.h"

#include <unistd.h>
#include <zlib.h>

#define path_of test_path

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Writes an IDX file with the given header fields and `data_len` bytes of data. */
static void write_idx(const char *name, int gz, unsigned char type, int ndim, const uint32_t *dims,
                      const unsigned char *data, size_t data_len) {
    unsigned char head[4 + 4 * 4] = {0, 0, type, (unsigned char)ndim};
    for (int d = 0; d < ndim; d++) put_be32(head + 4 + 4 * d, dims[d]);
    if (gz) {
        gzFile f = gzopen(path_of(name), "wb");
        assert_non_null(f);
        gzwrite(f, head, (unsigned)(4 + 4 * ndim));
        if (data_len) gzwrite(f, data, (unsigned)data_len);
        gzclose(f);
    } else {
        FILE *f = fopen(path_of(name), "wb");
        assert_non_null(f);
        fwrite(head, 1, (size_t)(4 + 4 * ndim), f);
        if (data_len) fwrite(data, 1, data_len, f);
        fclose(f);
    }
}

static unsigned char pixels[5 * 3 * 2], labels[5] = {0, 1, 2, 1, 0};

static void write_pair(int gz) {
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (unsigned char)(i * 7);
    write_idx("img", gz, 0x08, 3, (uint32_t[]){5, 3, 2}, pixels, sizeof pixels);
    write_idx("lbl", gz, 0x08, 1, (uint32_t[]){5}, labels, sizeof labels);
}

static void expect_error(rg_status want, const char *fragment) {
    rg_dataset *d = NULL;
    rg_status s = rg_idx_load(path_of("img"), path_of("lbl"), 0, &d);
    assert_null(d);
    if (s != want || !strstr(rg_last_error(), fragment))
        fail_msg("status %d, message '%s': expected status %d mentioning '%s'", s,
                 rg_last_error(), want, fragment);
}

static void test_valid_raw_and_gzip(void **state) {
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        write_pair(gz);
        rg_dataset *d;
        assert_int_equal(rg_idx_load(path_of("img"), path_of("lbl"), 0, &d), RG_OK);
        assert_int_equal(d->n, 5);
        assert_int_equal(d->h, 3);
        assert_int_equal(d->w, 2);
        assert_int_equal(d->classes, 3);
        assert_memory_equal(d->pixels, pixels, sizeof pixels);
        float x[2 * 6];
        int y[2];
        rg_dataset_batch(d, (int[]){4, 1}, 2, x, y);
        assert_int_equal(y[0], 0);
        assert_int_equal(y[1], 1);
        assert_float_equal(x[6 + 1], pixels[6 + 1] / 255.0f, 1e-7);
        rg_dataset_free(d);
    }
}

static void test_bad_files(void **state) {
    (void)state;
    write_pair(0);
    unlink(path_of("img"));
    expect_error(RG_ERR_IO, "cannot open");

    write_pair(0);
    FILE *f = fopen(path_of("img"), "wb");
    fputs("GIF89a not an idx file", f);
    fclose(f);
    expect_error(RG_ERR_FORMAT, "bad magic");

    write_pair(0);
    write_idx("img", 0, 0x0D, 3, (uint32_t[]){5, 3, 2}, pixels, sizeof pixels); /* floats */
    expect_error(RG_ERR_FORMAT, "element type");

    write_pair(0);
    write_idx("img", 0, 0x08, 2, (uint32_t[]){5, 6}, pixels, sizeof pixels);
    expect_error(RG_ERR_FORMAT, "dimensions");

    write_pair(0); /* truncated data */
    write_idx("img", 0, 0x08, 3, (uint32_t[]){5, 3, 2}, pixels, sizeof pixels - 3);
    expect_error(RG_ERR_FORMAT, "can hold at most");

    write_pair(1); /* truncated gzip data: the size check passes, the read fails */
    write_idx("img", 1, 0x08, 3, (uint32_t[]){5, 3, 2}, pixels, sizeof pixels - 3);
    expect_error(RG_ERR_FORMAT, "truncated");

    write_pair(0); /* trailing garbage */
    unsigned char longer[sizeof pixels + 4] = {0};
    write_idx("img", 0, 0x08, 3, (uint32_t[]){5, 3, 2}, longer, sizeof longer);
    expect_error(RG_ERR_FORMAT, "longer than its header");

    write_pair(0); /* hostile header: 2^30 x 2^30 x 2^30 */
    write_idx("img", 0, 0x08, 3, (uint32_t[]){1u << 30, 1u << 30, 1u << 30}, pixels, sizeof pixels);
    expect_error(RG_ERR_FORMAT, "overflow");

    write_pair(1); /* hostile gzip header claiming 4 GiB from a few bytes */
    write_idx("img", 1, 0x08, 3, (uint32_t[]){1u << 20, 64, 64}, pixels, sizeof pixels);
    expect_error(RG_ERR_FORMAT, "can hold at most");

    write_pair(0);
    write_idx("img", 0, 0x08, 3, (uint32_t[]){0, 3, 2}, NULL, 0);
    expect_error(RG_ERR_FORMAT, "outside 1..2^30");

    write_pair(0);
    write_idx("lbl", 0, 0x08, 1, (uint32_t[]){4}, labels, 4);
    expect_error(RG_ERR_FORMAT, "holds 5 images but");

    write_pair(0);
    rg_dataset *d = NULL;
    write_idx("lbl", 0, 0x08, 1, (uint32_t[]){5}, (unsigned char[]){0, 1, 12, 1, 0}, 5);
    assert_int_equal(rg_idx_load(path_of("img"), path_of("lbl"), 10, &d), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "label 12 of sample 2 is out of range"));
}

static void test_specs(void **state) {
    (void)state;
    rg_dataset *tr = NULL, *te = NULL;
    assert_int_equal(rg_dataset_open("mnist", NULL, &tr, &te), RG_ERR_ARG);
    assert_int_equal(rg_dataset_open("idx:onlyone", NULL, &tr, &te), RG_ERR_ARG);
    assert_int_equal(rg_dataset_open("fashion-mnist:/nonexistent", NULL, &tr, &te), RG_ERR_IO);
    write_pair(1);
    char spec[1200];
    snprintf(spec, sizeof spec, "idx:%s,%s,%s,%s", path_of("img"), path_of("lbl"),
             path_of("img"), path_of("lbl"));
    assert_int_equal(rg_dataset_open(spec, NULL, &tr, &te), RG_OK);
    assert_int_equal(tr->n, 5);
    assert_int_equal(te->n, 5);
    rg_dataset_free(tr);
    rg_dataset_free(te);
}

/* fashion-mnist:DIR reads each of its four files gzip (NAME.gz) or unpacked (NAME), the
 * gzip one where both are there; a file there in neither form is named as NAME.gz. */
static void test_fashion_mnist_folder_raw_or_gzip(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (unsigned char)(i * 7);
    const uint32_t dims[3] = {5, 3, 2};
    write_idx("train-images-idx3-ubyte", 0, 0x08, 3, dims, pixels, sizeof pixels);
    write_idx("train-labels-idx1-ubyte.gz", 1, 0x08, 1, dims, labels, sizeof labels);
    write_idx("t10k-images-idx3-ubyte.gz", 1, 0x08, 3, dims, pixels, sizeof pixels);
    write_idx("t10k-labels-idx1-ubyte", 0, 0x08, 1, dims, labels, sizeof labels);
    /* the gzip file wins over an unpacked one beside it (here not an IDX file at all) */
    FILE *f = fopen(path_of("t10k-images-idx3-ubyte"), "wb");
    assert_non_null(f);
    fputs("not an IDX file", f);
    fclose(f);
    char spec[600];
    snprintf(spec, sizeof spec, "fashion-mnist:%s", test_dir());
    rg_dataset *tr = NULL, *te = NULL;
    if (rg_dataset_open(spec, NULL, &tr, &te) != RG_OK) fail_msg("%s", rg_last_error());
    assert_int_equal(tr->n, 5);
    assert_int_equal(te->n, 5);
    assert_memory_equal(tr->pixels, pixels, sizeof pixels);
    assert_memory_equal(te->pixels, pixels, sizeof pixels);
    assert_int_equal(te->labels[2], 2);
    rg_dataset_free(tr);
    rg_dataset_free(te);
    assert_int_equal(unlink(path_of("t10k-labels-idx1-ubyte")), 0);
    assert_int_equal(rg_dataset_open(spec, NULL, &tr, &te), RG_ERR_IO);
    assert_non_null(strstr(rg_last_error(), "t10k-labels-idx1-ubyte.gz: cannot open"));
}

static void count_warning(void *user, const char *message) {
    (void)message;
    ++*(int *)user;
}

/* A limit keeps the first samples and reads no image past them (here a gzip file that ends
 * after its second image), while the classes and the empty-class warning come from every
 * label: labels 0, 1 | 2, 1, 0 give 3 classes, none empty.  The test split keeps them all. */
static void test_limit_reads_the_first_samples(void **state) {
    (void)state;
    write_pair(1);
    write_idx("short", 1, 0x08, 3, (uint32_t[]){5, 3, 2}, pixels, 2 * 6);
    char spec[1200];
    snprintf(spec, sizeof spec, "idx:%s,%s,%s,%s", path_of("short"), path_of("lbl"),
             path_of("img"), path_of("lbl"));
    int warnings = 0;
    rg_data_options opt = {.limit = 2, .warn = count_warning, .user = &warnings};
    rg_dataset *tr = NULL, *te = NULL;
    assert_int_equal(rg_dataset_open(spec, &opt, &tr, &te), RG_OK);
    assert_int_equal(tr->n, 2);
    assert_int_equal(tr->classes, 3);
    assert_int_equal(warnings, 0);
    assert_memory_equal(tr->pixels, pixels, 2 * 6);
    assert_int_equal(tr->labels[1], 1);
    assert_int_equal(te->n, 5);
    rg_dataset_free(tr);
    rg_dataset_free(te);

    opt.limit = 3; /* the third image is missing */
    assert_int_equal(rg_dataset_open(spec, &opt, &tr, &te), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "truncated"));
    opt.limit = 9; /* above the count: every sample, and the file checked whole */
    assert_int_equal(rg_dataset_open(spec, &opt, &tr, &te), RG_ERR_FORMAT);
    snprintf(spec, sizeof spec, "idx:%s,%s", path_of("img"), path_of("lbl"));
    assert_int_equal(rg_dataset_open(spec, &opt, &tr, NULL), RG_OK);
    assert_int_equal(tr->n, 5);
    rg_dataset_free(tr);
    opt.limit = -1;
    assert_int_equal(rg_dataset_open(spec, &opt, &tr, NULL), RG_ERR_ARG);
    assert_null(tr);
}

static int setup(void **state) {
    (void)state;
    return test_dir_make("test-data") ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return test_dir_remove() == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_raw_and_gzip),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_specs),
        cmocka_unit_test(test_fashion_mnist_folder_raw_or_gzip),
        cmocka_unit_test(test_limit_reads_the_first_samples),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
