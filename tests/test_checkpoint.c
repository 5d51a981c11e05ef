/*
 * test_checkpoint.c — safetensors writing and reading, model checkpoints, exact resume and
 * frozen layers: round trips, atomic writes that leave the old file whole when the disk
 * fills, every kind of corrupt file refused with its reason, loads that fit or fail whole,
 * 3 epochs straight equal to 1 + stop + resume 2 (byte for byte, with GRA's trust region,
 * dropout, augmentation, a cosine schedule, Adam and momentum), and frozen parameters and
 * batch-norm statistics bitwise unchanged.
 */
#include "test_util.h"

#include "internal.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define path_of test_path

static int make_dir(void **state) { return test_dir_make("ckpt") ? 0 : -1; }
static int remove_dir(void **state) { return test_dir_remove() == 0 ? 0 : -1; }

static void write_bytes(const char *name, const void *b, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    assert_non_null(f);
    fwrite(b, 1, n, f);
    fclose(f);
}

static size_t read_bytes(const char *name, unsigned char *b, size_t cap) {
    FILE *f = fopen(path_of(name), "rb");
    assert_non_null(f);
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    return n;
}

static void round_trip(void **state) {
    float a[6] = {1, -2, 3.5f, 4, 5, 6}, b[1] = {7};
    rg_tensor_writer *w = rg_tensor_writer_create();
    assert_int_equal(rg_tensor_writer_add(w, "layer.kernel", a, 2, (int[]){2, 3}), RG_OK);
    assert_int_equal(rg_tensor_writer_add(w, "scalar", b, 0, NULL), RG_OK);
    assert_int_equal(rg_tensor_writer_add(w, "scalar", b, 0, NULL), RG_ERR_ARG);
    assert_int_equal(rg_tensor_writer_meta(w, "model", "mlp:depth=1"), RG_OK);
    assert_int_equal(rg_tensor_writer_save(w, path_of("a.safetensors")), RG_OK);
    rg_tensor_writer_free(w);
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(path_of("a.safetensors"), &f), RG_OK);
    assert_int_equal(rg_tensor_file_count(f), 2);
    size_t n;
    int nd, shape[RG_MAX_DIMS];
    const float *t = rg_tensor_file_find(f, "layer.kernel", &n, &nd, shape);
    assert_non_null(t);
    assert_int_equal(n, 6);
    assert_int_equal(nd, 2);
    assert_int_equal(shape[1], 3);
    assert_memory_equal(t, a, sizeof a);
    assert_string_equal(rg_tensor_file_meta(f, "model"), "mlp:depth=1");
    assert_string_equal(rg_tensor_file_meta_key(f, 0), "model");
    rg_tensor_file_free(f);
    /* the header is padded to 8 bytes, so the data is aligned */
    unsigned char raw[512];
    size_t len = read_bytes("a.safetensors", raw, sizeof raw);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | raw[i];
    assert_int_equal(h % 8, 0);
    assert_int_equal(len, 8 + h + 28);
}

/* Disk full mid-write: the old file must survive whole, no temporary left behind. */
static void atomic_write(void **state) {
    static float big[1 << 16];
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) big[i] = (float)i;
    rg_tensor_writer *w = rg_tensor_writer_create();
    rg_tensor_writer_add(w, "x", big, 1, (int[]){1 << 10});
    assert_int_equal(rg_tensor_writer_save(w, path_of("keep.safetensors")), RG_OK);
    rg_tensor_writer_free(w);
    unsigned char before[8192], after[8192];
    size_t nb = read_bytes("keep.safetensors", before, sizeof before);

    w = rg_tensor_writer_create();
    rg_tensor_writer_add(w, "x", big, 1, (int[]){1 << 16});
    struct rlimit old, lim = {.rlim_cur = 100000, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    rg_status s = rg_tensor_writer_save(w, path_of("keep.safetensors"));
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(s, RG_ERR_IO);
    assert_non_null(strstr(rg_last_error(), "untouched"));
    rg_tensor_writer_free(w);
    size_t na = read_bytes("keep.safetensors", after, sizeof after);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", test_dir());
    assert_int_not_equal(system(cmd), 0); /* no temporary file left */
    /* a folder that does not exist: an error naming the fix */
    w = rg_tensor_writer_create();
    assert_int_equal(rg_tensor_writer_save(w, "/nonexistent/dir/x.safetensors"), RG_ERR_IO);
    assert_non_null(strstr(rg_last_error(), "folder exists"));
    rg_tensor_writer_free(w);
}

/* A file with the given header JSON and data bytes. */
static rg_status load_crafted(const char *json, size_t data_len, uint64_t claimed_len) {
    unsigned char buf[1024] = {0};
    size_t hl = strlen(json);
    uint64_t h = claimed_len ? claimed_len : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
    memcpy(buf + 8, json, hl);
    write_bytes("bad.safetensors", buf, 8 + hl + data_len);
    rg_tensor_file *f = NULL;
    rg_status s = rg_safetensors_load(path_of("bad.safetensors"), &f);
    if (s == RG_OK) rg_tensor_file_free(f);
    else assert_null(f);
    return s;
}

static void expect_refused(const char *json, size_t data_len, uint64_t claimed, const char *why) {
    rg_status s = load_crafted(json, data_len, claimed);
    if (s != RG_ERR_FORMAT || !strstr(rg_last_error(), why))
        fail_msg("%s: status %d '%s', expected a format error mentioning '%s'", json, s,
                 rg_last_error(), why);
}

static void corrupt_files_refused(void **state) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assert_int_equal(load_crafted(ok, 8, 0), RG_OK);
    write_bytes("short.safetensors", "abc", 3);
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(path_of("short.safetensors"), &f), RG_ERR_FORMAT);
    expect_refused(ok, 8, 100000, "header length");                      /* beyond the file */
    expect_refused(ok, 4, 0, "outside");                                  /* truncated data */
    expect_refused("{\"a\":{\"dtype\":\"F32\",", 0, 0, "not a JSON object"); /* invalid JSON */
    expect_refused("[1,2]", 0, 0, "not a JSON object");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8, 0, "outside");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, "overlap");
    expect_refused("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "dtype Q7");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "bytes for a shape");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, "bad shape");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, 0, "twice");
    expect_refused("{\"__metadata__\":{\"k\":5}}", 0, 0, "not a string");
    expect_refused("{\"a\":{\"shape\":[2]}}", 0, 0, "needs dtype");
    /* random mutations of a good file: any status, never a crash */
    unsigned char good[256], m[256];
    size_t n = read_bytes("a.safetensors", good, sizeof good);
    rg_rng r;
    rg_rng_seed(&r, 5);
    for (int t = 0; t < 2000; t++) {
        memcpy(m, good, n);
        for (int e = 0; e < 1 + (int)rg_rng_below(&r, 4); e++) m[rg_rng_below(&r, (uint32_t)n)] = (unsigned char)rg_rng_next(&r);
        size_t cut = rg_rng_below(&r, 3) == 0 ? rg_rng_below(&r, (uint32_t)n) : n;
        if (rg_safetensors_parse(m, cut, "mutant", &f) == RG_OK) rg_tensor_file_free(f);
    }
}

static rg_model built(const char *spec, int classes, uint64_t seed) {
    rg_model m;
    assert_int_equal(rg_model_build(spec, &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = classes, .seed = seed}, &m), RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    return m;
}

static void model_save_load(void **state) {
    rg_model a = built("mlp:depth=2,width=8,bn=1", 3, 1), b = built("mlp:depth=2,width=8,bn=1", 3, 2);
    rg_graph_state(a.graph)[0] = 0.25f; /* a running mean that is not its initial value */
    rg_meta meta = {0};
    rg_meta_set(&meta, "data", "fashion-mnist");
    assert_int_equal(rg_model_save(&a, path_of("m.safetensors"), &meta), RG_OK);
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(path_of("m.safetensors"), &f), RG_OK);
    assert_string_equal(rg_tensor_file_meta(f, "model"), "mlp:depth=2,width=8,bn=1");
    assert_string_equal(rg_tensor_file_meta(f, "input"), "1x4x4");
    assert_string_equal(rg_tensor_file_meta(f, "classes"), "3");
    assert_string_equal(rg_tensor_file_meta(f, "data"), "fashion-mnist");
    rg_load_report rep;
    assert_int_equal(rg_model_load(&b, f, RG_LOAD_STRICT, &rep), RG_OK);
    assert_int_equal(rg_graph_params_hash(a.graph), rg_graph_params_hash(b.graph));
    assert_int_equal(rep.loaded, rg_graph_param_count(a.graph));

    /* another model: refused whole, nothing changed */
    rg_model c = built("mlp:depth=1,width=8", 3, 3);
    uint64_t h = rg_graph_params_hash(c.graph);
    assert_int_equal(rg_model_load(&c, f, RG_LOAD_STRICT, &rep), RG_ERR_SHAPE);
    assert_non_null(strstr(rg_last_error(), "does not fit"));
    assert_non_null(strstr(rg_last_error(), "--weights-partial"));
    assert_int_equal(rg_graph_params_hash(c.graph), h);
    assert_true(rep.unexpected > 0);
    /* partial: what fits is loaded, the rest reported */
    assert_int_equal(rg_model_load(&c, f, RG_LOAD_PARTIAL, &rep), RG_OK);
    assert_true(rep.loaded > 0 && rep.mismatched + rep.missing + rep.unexpected > 0);
    assert_int_not_equal(rg_graph_params_hash(c.graph), h);

    /* a new head: 5 classes take everything but the classifier */
    rg_model d = built("mlp:depth=2,width=8,bn=1", 5, 4);
    assert_int_equal(rg_model_load(&d, f, RG_LOAD_STRICT, &rep), RG_ERR_SHAPE);
    assert_non_null(strstr(rg_last_error(), "another shape"));
    assert_int_equal(rg_model_load(&d, f, RG_LOAD_NEW_HEAD, &rep), RG_OK);
    assert_int_equal(rep.reinitialised, 2);
    rg_param_info pa, pd;
    for (int i = 0; i < rg_graph_param_count(a.graph); i++) {
        rg_graph_param(a.graph, i, &pa);
        rg_graph_param(d.graph, i, &pd);
        assert_string_equal(pa.name, pd.name);
        if (pa.size == pd.size) assert_memory_equal(pa.data, pd.data, pa.size * sizeof(float));
    }
    rg_tensor_file_free(f);
    rg_model_free(&a), rg_model_free(&b), rg_model_free(&c), rg_model_free(&d);
}

/* Trains a 6-layer sigmoid MLP with batch norm in the middle, dropout, GRA and
 * augmentation, for `epochs` (resuming from `resume` if given), checkpointing every epoch
 * into sub; returns the weights' hash. */
/* Asks training to stop at epoch 2, batch 4 (as Ctrl-C would). */
static volatile int stop_flag;
static void stop_midway(void *user, int epoch, int batch, int batches, double loss, double acc,
                        double ips, double eta, long repairs) {
    if (epoch == 2 && batch == 4) stop_flag = 1;
}

static uint64_t train_run(int epochs, int stop_after, const char *resume, const char *sub,
                          rg_optim_kind k) {
    rg_dataset *data = synthetic(300, 3, 21);
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=6,width=12,act=sigmoid,dropout=0.1", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 9}, &m), RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    rg_fit_config c = {.epochs = epochs, .batch = 16, .seed = 5, .val_split = 0.1f,
                       .optim = rg_optim_defaults(k), .repair = 1, .checkpoint_dir = path_of(sub),
                       .checkpoint_every = 1, .workers = 2,
                       .stop_after = stop_after > 0 ? stop_after : 0};
    rg_schedule_parse("cosine", &c.schedule);
    assert_int_equal(rg_augment_parse("noise=0.05,flip", &c.augment), RG_OK);
    rg_tensor_file *f = NULL;
    if (resume) {
        assert_int_equal(rg_safetensors_load(resume, &f), RG_OK);
        c.resume = f;
    }
    stop_flag = 0;
    c.stop = &stop_flag;
    rg_fit_callbacks cb = {.on_batch = stop_midway};
    rg_status s = rg_fit(&m, data, &c, stop_after < 0 ? &cb : NULL);
    if (stop_after < 0) {
        if (s != RG_STOPPED) fail_msg("expected a stop, got %d: %s", s, rg_last_error());
        assert_non_null(strstr(rg_last_error(), "epoch 2, batch 4"));
    } else if (s) {
        fail_msg("fit: %s", rg_last_error());
    }
    uint64_t h = rg_graph_params_hash(m.graph);
    rg_tensor_file_free(f);
    rg_model_free(&m);
    rg_dataset_free(data);
    return h;
}

static void resume_is_exact(void **state) {
    const rg_optim_kind kinds[] = {RG_OPTIM_ADAM, RG_OPTIM_MOMENTUM};
    for (int i = 0; i < 2; i++) {
        /* 3 epochs of a cosine schedule straight, against 1 epoch, a stop, and the rest */
        uint64_t straight = train_run(3, 0, NULL, "straight", kinds[i]);
        uint64_t first = train_run(3, 1, NULL, "stopped", kinds[i]);
        assert_int_not_equal(first, straight);
        uint64_t resumed = train_run(3, 0, path_of("stopped/last.safetensors"), "stopped", kinds[i]);
        assert_int_equal(resumed, straight);
        /* interrupted in the middle of epoch 2 (stop_after -1: by the stop flag), resumed
         * from DIR/interrupted.safetensors through the last link */
        train_run(3, -1, NULL, "midway", kinds[i]);
        char target[64] = {0};
        assert_true(readlink(path_of("midway/last.safetensors"), target, sizeof target - 1) > 0);
        assert_string_equal(target, "interrupted.safetensors");
        assert_int_equal(train_run(3, 0, path_of("midway/last.safetensors"), "midway", kinds[i]), straight);
        /* the checkpoints of both runs hold the same bytes */
        unsigned char a[1 << 16], b[1 << 16];
        size_t na = read_bytes("straight/epoch_3.safetensors", a, sizeof a);
        size_t nb = read_bytes("stopped/epoch_3.safetensors", b, sizeof b);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
    }
    /* a finished run cannot go on without more epochs; another seed is refused */
    rg_dataset *data = synthetic(300, 3, 21);
    rg_model m;
    rg_model_build("mlp:depth=6,width=12,act=sigmoid,dropout=0.1", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 9}, &m);
    rg_graph_compile(m.graph, 16);
    rg_tensor_file *f;
    assert_int_equal(rg_safetensors_load(path_of("stopped/last.safetensors"), &f), RG_OK);
    rg_fit_config c = {.epochs = 3, .batch = 16, .seed = 5, .val_split = 0.1f,
                       .optim = rg_optim_defaults(RG_OPTIM_MOMENTUM), .repair = 1, .resume = f};
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "at epoch 3 already"));
    c.epochs = 4, c.seed = 6;
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "same --seed"));
    c.seed = 5, c.repair = 0;
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_ERR_ARG);
    c.repair = 1, c.optim = rg_optim_defaults(RG_OPTIM_ADAM);
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "optimizer state"));
    rg_tensor_file_free(f);
    rg_model_free(&m);
    rg_dataset_free(data);
    /* --keep 2: only the newest two epoch files */
    assert_int_equal(access(path_of("stopped/epoch_1.safetensors"), F_OK), 0);
    rg_dataset *d2 = synthetic(100, 3, 1);
    rg_model m2 = built("mlp:depth=1,width=4", 3, 1);
    rg_fit_config k = {.epochs = 4, .batch = 16, .seed = 1, .optim = rg_optim_defaults(RG_OPTIM_SGD),
                       .checkpoint_dir = path_of("keep"), .checkpoint_every = 1, .keep = 2};
    assert_int_equal(rg_fit(&m2, d2, &k, NULL), RG_OK);
    assert_int_not_equal(access(path_of("keep/epoch_1.safetensors"), F_OK), 0);
    assert_int_not_equal(access(path_of("keep/epoch_2.safetensors"), F_OK), 0);
    assert_int_equal(access(path_of("keep/epoch_3.safetensors"), F_OK), 0);
    assert_int_equal(access(path_of("keep/epoch_4.safetensors"), F_OK), 0);
    char target[64] = {0};
    assert_true(readlink(path_of("keep/last.safetensors"), target, sizeof target - 1) > 0);
    assert_string_equal(target, "epoch_4.safetensors");
    rg_model_free(&m2);
    rg_dataset_free(d2);
}

static void count_repairs(void *user, const rg_epoch_stats *s) { *(long *)user += s->repairs; }

static void frozen_layers_unchanged(void **state) {
    rg_dataset *data = synthetic(200, 3, 4);
    rg_model m;
    assert_int_equal(rg_model_build("mlp:depth=2,width=8,bn=1", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 2}, &m), RG_OK);
    /* everything frozen, then the last hidden dense layer trainable again */
    assert_true(rg_graph_set_trainable(m.graph, "*", 0) >= 5);
    assert_int_equal(rg_graph_set_trainable(m.graph, "dense_2", 1), 1);
    assert_int_equal(rg_graph_set_trainable(m.graph, "nothing*", 1), 0);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    const int n = rg_graph_param_count(m.graph);
    float *before[16];
    rg_param_info p;
    for (int i = 0; i < n; i++) {
        rg_graph_param(m.graph, i, &p);
        before[i] = malloc(p.size * sizeof(float));
        memcpy(before[i], p.data, p.size * sizeof(float));
    }
    rg_fit_config c = {.epochs = 2, .batch = 16, .seed = 1, .repair = 1,
                       .optim = rg_optim_defaults(RG_OPTIM_ADAMW)}; /* decays every weight */
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_OK);
    for (int i = 0; i < n; i++) {
        rg_graph_param(m.graph, i, &p);
        bool same = memcmp(before[i], p.data, p.size * sizeof(float)) == 0;
        bool trainable = strncmp(p.name, "dense_2.", 8) == 0;
        /* frozen parameters and the frozen batch norms' statistics stay; dense_2 learns */
        if (same == trainable) fail_msg("%s %s", p.name, trainable ? "did not train" : "changed");
        free(before[i]);
    }
    rg_model_free(&m);
    /* a healthy network with a frozen backbone: GRA sees no vanishing gradient in the
     * frozen layers (they have none) and takes no action */
    assert_int_equal(rg_model_build("mlp:depth=3,width=16", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 2}, &m), RG_OK);
    rg_graph_set_trainable(m.graph, "*", 0);
    rg_graph_set_trainable(m.graph, "dense_4", 1);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    long repairs = 0;
    rg_fit_callbacks cb = {.on_epoch = count_repairs, .user = &repairs};
    assert_int_equal(rg_fit(&m, data, &c, &cb), RG_OK);
    assert_int_equal(repairs, 0);
    rg_model_free(&m);
    /* all frozen: nothing to train is an error, not a silent no-op */
    assert_int_equal(rg_model_build("mlp:depth=1,width=4", &(rg_model_opts){.c = 1, .h = 4, .w = 4, .classes = 3, .seed = 2}, &m), RG_OK);
    rg_graph_set_trainable(m.graph, "*", 0);
    assert_int_equal(rg_graph_compile(m.graph, 16), RG_OK);
    assert_int_equal(rg_fit(&m, data, &c, NULL), RG_ERR_ARG);
    assert_non_null(strstr(rg_last_error(), "every layer is frozen"));
    rg_model_free(&m);
    rg_dataset_free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(atomic_write),
        cmocka_unit_test(corrupt_files_refused),
        cmocka_unit_test(model_save_load),
        cmocka_unit_test(resume_is_exact),
        cmocka_unit_test(frozen_layers_unchanged),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
