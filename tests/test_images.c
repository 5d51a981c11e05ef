/*
 * test_images.c — the image pipeline: decoding every PNG and JPEG kind against PIL,
 * resampling against PIL's BILINEAR, bad files (truncated, corrupt, empty, not an image,
 * decompression bombs, random mutations), folders (class order, recursion, skipped files,
 * strictness), augmentation properties, preprocessing, the stratified split and the
 * loader's determinism across thread counts.
 */
#include "test_util.h"

#include "data/data.h"

#include <sys/stat.h>
#include <unistd.h>

static rg_tensor_file *ref;

static int load_ref(void **state) {
    if (rg_safetensors_load(fixture_path("images_ref.safetensors"), &ref) == RG_OK) return 0;
    fprintf(stderr, "%s\n", rg_last_error());
    return -1;
}

static int free_ref(void **state) {
    rg_tensor_file_free(ref);
    return 0;
}

static uint8_t *read_fixture(const char *name, size_t *len) {
    char rel[128], path[1100];
    snprintf(rel, sizeof rel, "images/%s", name);
    snprintf(path, sizeof path, "%s", fixture_path(rel));
    uint8_t *b;
    assert_int_equal(rg_file_read(path, RG_MAX_FILE_BYTES, &b, len), RG_OK);
    return b;
}

static const float *ref_tensor(const char *name, size_t *count, int shape[RG_MAX_DIMS]) {
    int ndim;
    const float *t = rg_tensor_file_find(ref, name, count, &ndim, shape);
    if (!t) fail_msg("fixture tensor %s missing", name);
    return t;
}

/* Decodes `name` to `channels` and compares with PIL's conversion, within tol levels. */
static void check_decode(const char *name, int channels, int tol) {
    size_t len, count;
    uint8_t *b = read_fixture(name, &len);
    rg_image im;
    rg_status s = rg_image_decode(b, len, channels, 0, 0, RG_DEFAULT_MAX_PIXELS, &im);
    if (s) fail_msg("%s: %s", name, rg_last_error());
    char key[64];
    snprintf(key, sizeof key, "%s.%s", name, channels == 3 ? "rgb" : "gray");
    int shape[RG_MAX_DIMS];
    const float *want = ref_tensor(key, &count, shape);
    assert_int_equal(im.h, shape[0]);
    assert_int_equal(im.w, shape[1]);
    assert_int_equal(im.c, shape[2]);
    for (size_t i = 0; i < count; i++)
        if (fabsf(im.px[i] - want[i]) > tol)
            fail_msg("%s: value %zu is %d, PIL gives %g", key, i, im.px[i], (double)want[i]);
    rg_image_free(&im);
    free(b);
}

static void decode_matches_pil(void **state) {
    static const char *const png[] = {"gray.png", "rgb.png", "rgba.png", "palette.png", "gray16.png"};
    for (int i = 0; i < 5; i++) {
        check_decode(png[i], 3, 0);
        check_decode(png[i], 1, 1); /* RGB -> L: libpng's and PIL's rounding differ by 1 */
    }
    static const char *const jpg[] = {"rgb.jpg", "gray.jpg", "progressive.jpg"};
    for (int i = 0; i < 3; i++) {
        check_decode(jpg[i], 3, 0); /* the same libjpeg-turbo as PIL's: exact */
        check_decode(jpg[i], 1, 2); /* luma straight from the decoder vs PIL's RGB -> L */
    }
}

static void jpeg_dct_scaling(void **state) {
    size_t len, count;
    uint8_t *b = read_fixture("rgb.jpg", &len); /* 48x40 */
    rg_image im;
    /* covering 20x16 needs 4/8: 24x20, as PIL's draft mode gives */
    assert_int_equal(rg_image_decode(b, len, 3, 20, 16, RG_DEFAULT_MAX_PIXELS, &im), RG_OK);
    int shape[RG_MAX_DIMS];
    const float *want = ref_tensor("rgb.jpg.half", &count, shape);
    assert_int_equal(im.w, 24);
    assert_int_equal(im.h, 20);
    for (size_t i = 0; i < count; i++) assert_true(fabsf(im.px[i] - want[i]) <= 0);
    rg_image_free(&im);
    /* 30x25 would need 5/8, whose IDCT is slower than the full one: decoded whole */
    assert_int_equal(rg_image_decode(b, len, 3, 30, 25, RG_DEFAULT_MAX_PIXELS, &im), RG_OK);
    assert_int_equal(im.w, 48);
    assert_int_equal(im.h, 40);
    rg_image_free(&im);
    /* 10x8: 2/8 */
    assert_int_equal(rg_image_decode(b, len, 3, 10, 8, RG_DEFAULT_MAX_PIXELS, &im), RG_OK);
    assert_int_equal(im.w, 12);
    assert_int_equal(im.h, 10);
    rg_image_free(&im);
    free(b);
}

static void resample_matches_pil(void **state) {
    size_t len, count;
    uint8_t *b = read_fixture("rgb.png", &len);
    rg_image im;
    assert_int_equal(rg_image_decode(b, len, 3, 0, 0, RG_DEFAULT_MAX_PIXELS, &im), RG_OK);
    rg_pixels px = {.px = im.px, .w = im.w, .h = im.h, .c = 3, .row = (size_t)im.w * 3, .col = 3,
                    .plane = 1};
    static const struct { const char *name; float box[4]; int w, h; } cases[] = {
        {"resize.down", {0, 0, 41, 29}, 17, 13},
        {"resize.up", {0, 0, 41, 29}, 80, 60},
        {"resize.box", {5.5f, 3.25f, 30, 20}, 12, 9},
    };
    for (int k = 0; k < 3; k++) {
        int shape[RG_MAX_DIMS];
        const float *want = ref_tensor(cases[k].name, &count, shape);
        float *got = malloc(count * sizeof(float));
        rg_resample(&px, cases[k].box, got, 3, cases[k].h, cases[k].w);
        assert_close(cases[k].name, got, want, count, 2e-5, 0);
        free(got);
    }
    rg_image_free(&im);
    free(b);
}

/* Every one of these must fail cleanly with the given status. */
static void expect_bad(const uint8_t *b, size_t n, rg_status want, const char *fragment) {
    rg_image im = {0};
    rg_status s = rg_image_decode(b, n, 3, 0, 0, RG_DEFAULT_MAX_PIXELS, &im);
    if (s != want || !strstr(rg_last_error(), fragment))
        fail_msg("status %d '%s': expected %d mentioning '%s'", s, rg_last_error(), want, fragment);
    assert_null(im.px);
}

static void bad_images_refused(void **state) {
    size_t plen, jlen;
    uint8_t *png = read_fixture("rgb.png", &plen), *jpg = read_fixture("rgb.jpg", &jlen);
    expect_bad(png, 0, RG_ERR_FORMAT, "empty file");
    expect_bad((const uint8_t *)"hello, world\n", 13, RG_ERR_FORMAT, "not a JPEG or PNG");
    expect_bad(png, plen / 2, RG_ERR_FORMAT, "truncated");
    expect_bad(jpg, jlen / 2, RG_ERR_FORMAT, "corrupt JPEG");
    expect_bad(png, 20, RG_ERR_FORMAT, "IHDR");
    /* corrupt compressed data */
    uint8_t *bad = malloc(plen);
    memcpy(bad, png, plen);
    for (size_t i = 60; i < 120 && i < plen; i++) bad[i] ^= 0x5a;
    expect_bad(bad, plen, RG_ERR_FORMAT, "corrupt PNG");
    /* decompression bombs: headers claiming 100000 x 100000 pixels */
    memcpy(bad, png, plen);
    bad[16] = 0, bad[17] = 1, bad[18] = 0x86, bad[19] = 0xa0;
    bad[20] = 0, bad[21] = 1, bad[22] = 0x86, bad[23] = 0xa0;
    expect_bad(bad, plen, RG_ERR_MEMORY, "decompression bomb");
    uint8_t *jb = malloc(jlen);
    memcpy(jb, jpg, jlen);
    for (size_t i = 2; i + 9 < jlen; i++)
        if (jb[i] == 0xff && jb[i + 1] == 0xc0) { /* SOF0: height, width */
            jb[i + 5] = jb[i + 6] = jb[i + 7] = jb[i + 8] = 0xff;
            break;
        }
    expect_bad(jb, jlen, RG_ERR_MEMORY, "decompression bomb");
    /* random mutations: any status, never a crash (ASan builds check for overreads) */
    rg_rng r;
    rg_rng_seed(&r, 99);
    for (int t = 0; t < 3000; t++) {
        const bool is_png = t % 2;
        const uint8_t *src = is_png ? png : jpg;
        size_t n = is_png ? plen : jlen;
        memcpy(is_png ? bad : jb, src, n);
        uint8_t *m = is_png ? bad : jb;
        int edits = 1 + (int)rg_rng_below(&r, 8);
        for (int e = 0; e < edits; e++) m[rg_rng_below(&r, (uint32_t)n)] = (uint8_t)rg_rng_next(&r);
        size_t cut = rg_rng_below(&r, 4) == 0 ? rg_rng_below(&r, (uint32_t)n) : n;
        rg_image im = {0};
        if (rg_image_decode(m, cut, 1 + 2 * (t % 3 == 0), 0, 0, RG_DEFAULT_MAX_PIXELS, &im) == RG_OK) {
            assert_true(im.w > 0 && im.h > 0);
            rg_image_free(&im);
        }
    }
    free(bad);
    free(jb);
    free(png);
    free(jpg);
}

/* ---------------------------------------------------------------- folders */

#define root test_dir()

static void put_file(const char *rel, const uint8_t *b, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}

static void sub(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    mkdir(path, 0777);
}

typedef struct warnings {
    int count;
    char last[4][600];
} warnings;

static void collect(void *user, const char *msg) {
    warnings *w = user;
    snprintf(w->last[w->count % 4], sizeof w->last[0], "%s", msg);
    w->count++;
}

static bool warned(const warnings *w, const char *fragment) {
    for (int i = 0; i < 4 && i < w->count; i++)
        if (strstr(w->last[i], fragment)) return true;
    return false;
}

static void make_folder(void) {
    assert_true(test_dir_make("images"));
    size_t plen, jlen;
    uint8_t *png = read_fixture("rgb.png", &plen), *jpg = read_fixture("rgb.jpg", &jlen);
    sub("zebra"), sub("apple"), sub("apple/deeper"), sub("empty"), sub(".hidden");
    put_file("zebra/1.png", png, plen);
    put_file("zebra/2.jpg", jpg, jlen);
    put_file("apple/b.png", png, plen);
    put_file("apple/deeper/a.jpg", jpg, jlen);
    put_file("apple/.DS_Store", png, 3);
    put_file(".hidden/x.png", png, plen);
    put_file("zebra/empty.png", png, 0);
    put_file("zebra/notes.txt", (const uint8_t *)"not an image", 12);
    put_file("zebra/truncated.jpg", jpg, jlen / 2); /* header fine, data cut: found when read */
    char path[512], target[512];
    snprintf(path, sizeof path, "%s/zebra/dangling.png", root);
    snprintf(target, sizeof target, "%s/nowhere.png", root);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/zebra/fifo.png", root);
    assert_int_equal(mkfifo(path, 0666), 0); /* opening it would block: must be skipped */
    free(png);
    free(jpg);
}

static void remove_folder(void) { assert_int_equal(test_dir_remove(), 0); }

static void folder_open_and_read(void **state) {
    make_folder();
    warnings w = {0};
    rg_data_options o = {.height = 16, .width = 20, .channels = 3, .warn = collect, .user = &w};
    rg_dataset *d = NULL;
    assert_int_equal(rg_folder_open(root, &o, &d), RG_OK);
    /* classes by sorted name: apple, empty, zebra; hidden folders ignored */
    assert_int_equal(d->classes, 3);
    assert_string_equal(d->class_names[0], "apple");
    assert_string_equal(d->class_names[1], "empty");
    assert_string_equal(d->class_names[2], "zebra");
    /* apple: b.png, deeper/a.jpg (recursive, sorted); zebra: 1.png, 2.jpg, truncated.jpg */
    assert_int_equal(d->n, 5);
    assert_true(strstr(d->paths[0], "apple/b.png") && strstr(d->paths[1], "apple/deeper/a.jpg"));
    assert_int_equal(d->labels[0], 0);
    assert_int_equal(d->labels[4], 2);
    /* skipped at open: empty.png, notes.txt, dangling.png, fifo.png */
    assert_int_equal(d->skipped, 4);
    assert_true(warned(&w, "skipped 4 of 9 files"));
    assert_true(warned(&w, "'empty' has no images") || w.count > 4);
    /* reading: the truncated file gives zeros and one warning, then counts */
    float x[3 * 16 * 20];
    int count_before = w.count;
    assert_int_equal(rg_dataset_sample(d, 4, NULL, 0, x), RG_OK);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) assert_true(x[i] == 0.0f);
    assert_int_equal(w.count, count_before + 1);
    assert_true(strstr(w.last[count_before % 4], "truncated.jpg") != NULL);
    assert_int_equal(rg_dataset_sample(d, 4, NULL, 0, x), RG_OK);
    assert_int_equal(w.count, count_before + 1); /* warned once per file */
    assert_int_equal(d->skipped, 5);
    /* a good file: resized to 16x20, values in [0, 1] and not all zero */
    assert_int_equal(rg_dataset_sample(d, 0, NULL, 0, x), RG_OK);
    double sum = 0;
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) {
        assert_true(x[i] >= 0 && x[i] <= 1);
        sum += x[i];
    }
    assert_true(sum > 100);
    rg_dataset_free(d);

    /* strict: the first bad file is an error naming it */
    o.strict = true;
    assert_int_equal(rg_folder_open(root, &o, &d), RG_ERR_FORMAT);
    assert_null(d);
    assert_non_null(strstr(rg_last_error(), "strict checking off"));
    remove_folder();
}

static void folder_errors(void **state) {
    assert_true(test_dir_make("images"));
    rg_dataset *d = NULL;
    assert_int_equal(rg_folder_open(root, NULL, &d), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "no class folders"));
    sub("a");
    put_file("a/x.txt", (const uint8_t *)"text", 4);
    assert_int_equal(rg_folder_open(root, NULL, &d), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "no readable"));
    assert_int_equal(rg_folder_open("/nonexistent/folder", NULL, &d), RG_ERR_IO);
    assert_int_equal(rg_dataset_open("/nonexistent/folder", NULL, &d, NULL), RG_ERR_IO);
    remove_folder();
}

/* ---------------------------------------------------------------- augmentation */

static rg_dataset *ramp(int n, int c, int h, int w) {
    rg_dataset *d = calloc(1, sizeof *d);
    d->n = n, d->c = c, d->h = h, d->w = w, d->classes = 2;
    d->pixels = malloc((size_t)n * c * h * w);
    d->labels = calloc((size_t)n, sizeof(int));
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) d->pixels[i] = (uint8_t)(37 * i % 251);
    for (int i = 0; i < n; i++) d->labels[i] = i % 2;
    return d;
}

static void augment_properties(void **state) {
    rg_dataset *d = ramp(1, 1, 8, 10);
    float plain[80], x[80];
    assert_int_equal(rg_dataset_sample(d, 0, NULL, 0, plain), RG_OK);
    rg_augment a;
    /* flip: exactly the mirror image or the original, both seen */
    assert_int_equal(rg_augment_parse("flip", &a), RG_OK);
    int flipped = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        rg_dataset_sample(d, 0, &a, seed, x);
        bool same = memcmp(x, plain, sizeof x) == 0, mirror = true;
        for (int y = 0; y < 8; y++)
            for (int i = 0; i < 10; i++) mirror &= x[y * 10 + i] == plain[y * 10 + 9 - i];
        assert_true(same || mirror);
        flipped += mirror;
    }
    assert_true(flipped > 5 && flipped < 35);
    /* crop=2: a shift by at most 2 with zeros entering */
    assert_int_equal(rg_augment_parse("crop=2", &a), RG_OK);
    for (uint64_t seed = 0; seed < 20; seed++) {
        rg_dataset_sample(d, 0, &a, seed, x);
        bool found = false;
        for (int dy = -2; dy <= 2 && !found; dy++)
            for (int dx = -2; dx <= 2 && !found; dx++) {
                bool ok = true;
                for (int y = 0; y < 8; y++)
                    for (int i = 0; i < 10; i++) {
                        int sy = y + dy, sx = i + dx;
                        float want = sy >= 0 && sy < 8 && sx >= 0 && sx < 10 ? plain[sy * 10 + sx] : 0;
                        ok &= x[y * 10 + i] == want;
                    }
                found = ok;
            }
        assert_true(found);
    }
    /* the same seed gives the same sample; another seed another */
    assert_int_equal(rg_augment_parse("rotate=30,noise=0.1,brightness=0.4,contrast=0.4,resized-crop", &a), RG_OK);
    float y1[80], y2[80];
    rg_dataset_sample(d, 0, &a, 5, y1);
    rg_dataset_sample(d, 0, &a, 5, y2);
    assert_memory_equal(y1, y2, sizeof y1);
    rg_dataset_sample(d, 0, &a, 6, y2);
    assert_true(memcmp(y1, y2, sizeof y1) != 0);
    for (int i = 0; i < 80; i++) assert_true(y1[i] >= 0 && y1[i] <= 1);
    /* noise: zero mean, the asked spread, on a mid-gray image */
    rg_dataset *g = ramp(1, 1, 64, 64);
    memset(g->pixels, 128, 64 * 64);
    float big[64 * 64];
    assert_int_equal(rg_augment_parse("noise=0.05", &a), RG_OK);
    rg_dataset_sample(g, 0, &a, 1, big);
    double m = 0, v = 0;
    for (int i = 0; i < 4096; i++) m += big[i] - 128 / 255.0;
    m /= 4096;
    for (int i = 0; i < 4096; i++) v += pow(big[i] - 128 / 255.0 - m, 2);
    assert_true(fabs(m) < 0.005 && fabs(sqrt(v / 4096) - 0.05) < 0.005);
    /* rotate=0 changes nothing; rotating a constant image keeps its centre */
    assert_int_equal(rg_augment_parse("rotate=20", &a), RG_OK);
    rg_dataset_sample(g, 0, &a, 3, big);
    assert_true(fabsf(big[32 * 64 + 32] - 128 / 255.0f) < 1e-5f);
    rg_dataset_free(g);
    /* parsing */
    assert_int_equal(rg_augment_parse("flip,crop=4,noise=0.1", &a), RG_OK);
    assert_true(a.flip && a.crop_pad == 4 && fabsf(a.noise_std - 0.1f) < 1e-7f);
    assert_int_equal(rg_augment_parse("flop", &a), RG_ERR_ARG);
    assert_int_equal(rg_augment_parse("crop", &a), RG_ERR_ARG);
    assert_int_equal(rg_augment_parse("crop=1.5", &a), RG_ERR_ARG);
    assert_int_equal(rg_augment_parse("rotate=400", &a), RG_ERR_ARG);
    /* out-of-range values are refused before any conversion (found by fuzz_values) */
    assert_int_equal(rg_augment_parse("crop=1e300", &a), RG_ERR_ARG);
    assert_int_equal(rg_augment_parse("noise=-1e300", &a), RG_ERR_ARG);
    assert_int_equal(rg_augment_parse("none", &a), RG_OK);
    assert_false(rg_augment_any(&a));
    rg_dataset_free(d);
}

static void preprocess_modes(void **state) {
    rg_dataset *d = ramp(1, 3, 1, 1);
    d->pixels[0] = 255, d->pixels[1] = 0, d->pixels[2] = 51; /* R, G, B */
    float x[3];
    rg_preprocess p;
    assert_int_equal(rg_preprocess_parse("tf", &p), RG_OK);
    d->opt.preprocess = p;
    rg_dataset_sample(d, 0, NULL, 0, x);
    assert_close("tf", x, (float[]){1, -1, -0.6f}, 3, 1e-6, 0);
    d->opt.preprocess = RG_PRE_TORCH;
    rg_dataset_sample(d, 0, NULL, 0, x);
    assert_close("torch", x, (float[]){(1 - 0.485f) / 0.229f, -0.456f / 0.224f, (0.2f - 0.406f) / 0.225f},
                 3, 1e-5, 0);
    d->opt.preprocess = RG_PRE_CAFFE; /* BGR order, mean subtracted, 0..255 */
    rg_dataset_sample(d, 0, NULL, 0, x);
    assert_close("caffe", x, (float[]){51 - 103.939f, 0 - 116.779f, 255 - 123.68f}, 3, 1e-3, 0);
    assert_int_equal(rg_preprocess_parse("imagenet", &p), RG_ERR_ARG);
    /* channel conversion: RGB -> gray with 601 weights, through the options */
    rg_data_options o = {.channels = 1};
    d->opt = o;
    d->src_c = 3, d->src_h = 1, d->src_w = 1, d->c = 1;
    rg_dataset_sample(d, 0, NULL, 0, x);
    assert_close("gray", x, (float[]){(0.299f * 255 + 0.114f * 51) / 255}, 1, 1e-5, 0);
    rg_dataset_free(d);
}

/* ---------------------------------------------------------------- split and loader */

static void stratified_split(void **state) {
    rg_dataset *d = ramp(103, 1, 2, 2);
    d->classes = 3;
    for (int i = 0; i < 103; i++) d->labels[i] = i < 60 ? 0 : i < 90 ? 1 : 2; /* 60, 30, 13 */
    int order[103];
    rg_rng r;
    rg_rng_seed(&r, 7);
    int n_val = rg_dataset_split(d, 0.2f, &r, order);
    assert_int_equal(n_val, 12 + 6 + 3);
    int per[3] = {0}, seen[103] = {0};
    for (int i = 0; i < 103; i++) seen[order[i]]++;
    for (int i = 0; i < 103; i++) assert_int_equal(seen[i], 1); /* a permutation */
    for (int i = 103 - n_val; i < 103; i++) per[d->labels[order[i]]]++;
    assert_int_equal(per[0], 12);
    assert_int_equal(per[1], 6);
    assert_int_equal(per[2], 3);
    int again[103];
    rg_rng_seed(&r, 7);
    rg_dataset_split(d, 0.2f, &r, again);
    assert_memory_equal(order, again, sizeof order);
    rg_rng_seed(&r, 8);
    rg_dataset_split(d, 0.2f, &r, again);
    assert_true(memcmp(order, again, sizeof order) != 0);
    rg_dataset_free(d);
}

static void loader_deterministic(void **state) {
    rg_dataset *d = ramp(50, 1, 6, 6);
    rg_augment a;
    assert_int_equal(rg_augment_parse("flip,crop=1,noise=0.05,rotate=10", &a), RG_OK);
    int idx[50];
    for (int i = 0; i < 50; i++) idx[i] = (i * 17) % 50;
    float ref_x[50 * 36], x[8 * 36];
    int ref_y[50], y[8];
    const int workers[] = {0, 1, 3};
    for (int k = 0; k < 3; k++) {
        rg_loader *l = rg_loader_create(d, 8, workers[k]);
        assert_non_null(l);
        for (int pass = 0; pass < 2; pass++) { /* restarted passes reuse the loader */
            assert_int_equal(rg_loader_start(l, idx, 50, 0, &a, 11), RG_OK);
            int got, at = 0, batches = 0;
            while ((got = rg_loader_next(l, x, y)) > 0) {
                assert_true(got == 8 || (got == 2 && at == 48));
                if (k == 0 && pass == 0) {
                    memcpy(ref_x + at * 36, x, (size_t)got * 36 * sizeof(float));
                    memcpy(ref_y + at, y, (size_t)got * sizeof(int));
                } else {
                    assert_memory_equal(ref_x + at * 36, x, (size_t)got * 36 * sizeof(float));
                    assert_memory_equal(ref_y + at, y, (size_t)got * sizeof(int));
                }
                at += got;
                batches++;
            }
            assert_int_equal(got, 0);
            assert_int_equal(at, 50);
            assert_int_equal(batches, 7);
        }
        /* a pass abandoned half way, then a new one */
        assert_int_equal(rg_loader_start(l, idx, 50, 0, &a, 11), RG_OK);
        assert_int_equal(rg_loader_next(l, x, y), 8);
        assert_int_equal(rg_loader_start(l, idx, 50, 0, &a, 11), RG_OK);
        assert_int_equal(rg_loader_next(l, x, y), 8);
        assert_memory_equal(ref_x, x, 8 * 36 * sizeof(float));
        rg_loader_free(l);
    }
    rg_dataset_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_matches_pil),
        cmocka_unit_test(jpeg_dct_scaling),
        cmocka_unit_test(resample_matches_pil),
        cmocka_unit_test(bad_images_refused),
        cmocka_unit_test(folder_open_and_read),
        cmocka_unit_test(folder_errors),
        cmocka_unit_test(augment_properties),
        cmocka_unit_test(preprocess_modes),
        cmocka_unit_test(stratified_split),
        cmocka_unit_test(loader_deterministic),
    };
    /* REGRAD_TEST_FILTER=loader* runs a subset (the ThreadSanitizer build runs the loader's) */
    if (getenv("REGRAD_TEST_FILTER")) cmocka_set_test_filter(getenv("REGRAD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, load_ref, free_ref);
}
