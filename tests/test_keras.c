/*
 * test_keras.c — Keras weights files: the layouts h5py 2 and 3 write (fixed- and
 * variable-length strings, empty weight_names, split layer_names, Keras 3's names, whole-model
 * files) and Keras 3's .weights.h5, a small CNN's logits against a NumPy forward of the same file, regrad -> Keras ->
 * regrad round trips, ResNet50V2 converted by NumPy tensor by tensor, and hostile files.
 * Fixtures: tools/make_keras_fixtures.py (small: committed; ResNet50V2: made here when
 * /usr/bin/python3 has h5py).
 */
#include "test_util.h"

#include "internal.h"

#include <hdf5.h>

static int make_dir(void **state) { return test_dir_make("keras") ? 0 : -1; }
static int remove_dir(void **state) { return test_dir_remove() == 0 ? 0 : -1; }

/* The small CNN of make_keras_fixtures.py, built by hand with Keras's layer names. */
static rg_model small_cnn(uint64_t seed) {
    rg_graph *g = rg_graph_create(seed);
    rg_node x = rg_input(g, "input_1", 3, (int[]){1, 8, 8});
    rg_node h = rg_conv2d(g, x, 4, 3, NULL);
    rg_node_set_name(g, h, "conv1");
    h = rg_batch_norm(g, h, 0.01f, 1e-3f);
    rg_node_set_name(g, h, "bn1");
    rg_conv_opts dw = rg_conv_defaults();
    dw.groups = 4;
    h = rg_conv2d(g, rg_relu(g, h), 4, 3, &dw);
    rg_node_set_name(g, h, "dw1");
    rg_node z = rg_dense(g, rg_global_avg_pool(g, h), 3, RG_INIT(RG_INIT_GLOROT_UNIFORM));
    rg_node_set_name(g, z, "predictions");
    rg_model m;
    assert_int_equal(rg_model_from_graph(g, RG_NONE, z, rg_softmax_cross_entropy(g, z, 0), &m), RG_OK);
    assert_int_equal(rg_graph_compile(m.graph, 2), RG_OK);
    return m;
}

static void small_cnn_matches_numpy(void **state) {
    rg_tensor_file *ref;
    assert_int_equal(rg_safetensors_load(fixture_path("keras/small_ref.safetensors"), &ref), RG_OK);
    const float *x = rg_tensor_file_find(ref, "x", NULL, NULL, NULL);
    const float *want = rg_tensor_file_find(ref, "logits", NULL, NULL, NULL);
    static const char *const files[] = {"keras/small_h5py2.h5", "keras/small_h5py3.h5",
                                        "keras/small_model.h5", "keras/small_keras3.weights.h5",
                                        "keras/small.keras", "keras/small_deflated.keras"};
    for (int i = 0; i < 6; i++) {
        rg_model m = small_cnn(100 + i);
        rg_tensor_file *f;
        if (rg_weights_load(fixture_path(files[i]), &f) != RG_OK) fail_msg("%s: %s", files[i], rg_last_error());
        rg_load_report rep;
        if (rg_model_load(&m, f, RG_LOAD_STRICT, &rep) != RG_OK) fail_msg("%s: %s", files[i], rg_last_error());
        assert_int_equal(rep.loaded, 10);
        memcpy(rg_graph_input_buffer(m.graph, m.input), x, 2 * 64 * sizeof(float));
        assert_int_equal(rg_graph_forward(m.graph, 2, 0), RG_OK);
        assert_close(files[i], rg_node_output(m.graph, m.logits), want, 6, 1e-4, 1e-4);
        rg_tensor_file_free(f);
        rg_model_free(&m);
    }
    rg_tensor_file_free(ref);
    rg_tensor_file *f;
    assert_int_equal(rg_weights_load(fixture_path("keras/small_keras35.weights.h5"), &f), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "no layer name (a file of Keras before 3.6)"));
}

/* Every tensor of a and b (parameters and state) bitwise equal. */
static void same_tensors(const rg_graph *a, const rg_tensor_file *f) {
    for (int i = 0; i < rg_graph_param_count(a); i++) {
        rg_param_info p;
        rg_graph_param(a, i, &p);
        size_t n;
        const float *v = rg_tensor_file_find(f, p.name, &n, NULL, NULL);
        if (!v) fail_msg("'%s' is not in the file", p.name);
        assert_int_equal(n, p.size);
        if (memcmp(v, p.data, n * sizeof(float)) != 0) fail_msg("'%s' differs", p.name);
    }
}

static void round_trip_through_keras(void **state) {
    rg_model m = small_cnn(7); /* its own random weights; a depthwise conv among them */
    const char *path = test_path("rt.h5");
    assert_int_equal(rg_keras_save(&m, path), RG_OK);
    rg_tensor_file *f;
    assert_int_equal(rg_weights_load(path, &f), RG_OK);
    assert_int_equal(rg_tensor_file_count(f), rg_graph_param_count(m.graph));
    same_tensors(m.graph, f);
    rg_tensor_file_free(f);
    /* a zoo model, all its layers */
    rg_model r;
    assert_int_equal(rg_model_build("resnet20v2", &(rg_model_opts){.seed = 3}, &r), RG_OK);
    assert_int_equal(rg_graph_compile(r.graph, 1), RG_OK);
    assert_int_equal(rg_keras_save(&r, path), RG_OK);
    assert_int_equal(rg_weights_load(path, &f), RG_OK);
    same_tensors(r.graph, f);
    rg_tensor_file_free(f);
    rg_model_free(&r);
    rg_model_free(&m);
}

/* ResNet50V2 without its top: a checkpoint of seeded weights, turned into Keras's layout by
 * NumPy (not by regrad), loaded into another ResNet50V2 by name: every tensor lands where
 * its name says.  The file fills everything but the head of a model with one. */
static void resnet50v2_notop_lands_by_name(void **state) {
    if (system("/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null") != 0) {
        print_message("SKIP: /usr/bin/python3 without h5py\n");
        skip();
    }
    rg_model a, b, top;
    assert_int_equal(rg_model_build("resnet50v2:top=0", &(rg_model_opts){.seed = 1}, &a), RG_OK);
    assert_int_equal(rg_graph_compile(a.graph, 1), RG_OK);
    const char *st = test_path("r50.safetensors"), *h5 = test_path("r50_notop.h5");
    assert_int_equal(rg_model_save(&a, st, NULL), RG_OK);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../../tools/make_keras_fixtures.py from-safetensors %s %s",
             getenv("REGRAD_FIXTURES") ? getenv("REGRAD_FIXTURES") : "tests/fixtures", st, h5);
    assert_int_equal(system(cmd), 0);
    rg_tensor_file *f;
    assert_int_equal(rg_weights_load(h5, &f), RG_OK);
    assert_int_equal(rg_model_build("resnet50v2:top=0", &(rg_model_opts){.seed = 2}, &b), RG_OK);
    assert_int_equal(rg_graph_compile(b.graph, 1), RG_OK);
    assert_int_equal(rg_model_load(&b, f, RG_LOAD_STRICT, NULL), RG_OK);
    assert_memory_equal(rg_graph_params(a.graph), rg_graph_params(b.graph), rg_graph_param_floats(a.graph) * 4);
    assert_memory_equal(rg_graph_state(a.graph), rg_graph_state(b.graph), rg_graph_state_floats(a.graph) * 4);
    assert_int_equal(rg_model_build("resnet50v2", &(rg_model_opts){.classes = 5}, &top), RG_OK);
    assert_int_equal(rg_graph_compile(top.graph, 1), RG_OK);
    rg_load_report rep;
    assert_int_equal(rg_model_load(&top, f, RG_LOAD_STRICT, &rep), RG_ERR_SHAPE); /* no head */
    assert_int_equal(rg_model_load(&top, f, RG_LOAD_PARTIAL, &rep), RG_OK);
    assert_int_equal(rep.missing, 2);
    assert_string_equal(rep.first_missing, "predictions.kernel");
    assert_int_equal(rep.loaded, rg_graph_param_count(top.graph) - 2);
    rg_tensor_file_free(f);
    rg_model_free(&a), rg_model_free(&b), rg_model_free(&top);
}

/* A copy of the h5py 3 fixture with `edit` applied to its bn1 layer group. */
static const char *hostile(const char *name, void (*edit)(hid_t bn)) {
    const char *path = test_path(name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fixture_path("keras/small_h5py2.h5"), path);
    assert_int_equal(system(cmd), 0);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "bn1", H5P_DEFAULT);
    edit(g);
    H5Gclose(g);
    H5Fclose(f);
    return path;
}

static void drop_gamma(hid_t g) { H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT); }

static void int_gamma(hid_t g) {
    H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT);
    const hsize_t n = 4;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    const int v[4] = {1, 2, 3, 4};
    hid_t d = H5Dcreate2(g, "bn1/gamma:0", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d), H5Sclose(sp);
}

static void huge_gamma(hid_t g) { /* 10^12 values declared, none stored */
    H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT);
    const hsize_t n = 1000000000000ull, chunk = 1024;
    hid_t sp = H5Screate_simple(1, &n, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 1, &chunk);
    hid_t d = H5Dcreate2(g, "bn1/gamma:0", H5T_IEEE_F32LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Dclose(d), H5Pclose(pl), H5Sclose(sp);
}

static void unstored_gamma(hid_t g) { /* 10^8 values declared (400 MB, within the limit), none stored */
    H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT);
    const hsize_t n = 100000000, chunk = 1024;
    hid_t sp = H5Screate_simple(1, &n, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 1, &chunk);
    hid_t d = H5Dcreate2(g, "bn1/gamma:0", H5T_IEEE_F32LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Dclose(d), H5Pclose(pl), H5Sclose(sp);
}

static void looping_gamma(hid_t g) { /* a soft link to itself */
    H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT);
    H5Lcreate_soft("/bn1/bn1/gamma:0", g, "bn1/gamma:0", H5P_DEFAULT, H5P_DEFAULT);
}

static void rank5_gamma(hid_t g) {
    H5Ldelete(g, "bn1/gamma:0", H5P_DEFAULT);
    const hsize_t n[5] = {1, 1, 1, 1, 4};
    hid_t sp = H5Screate_simple(5, n, NULL);
    hid_t d = H5Dcreate2(g, "bn1/gamma:0", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d), H5Sclose(sp);
}

static void hostile_files(void **state) {
    static const struct {
        const char *name;
        void (*edit)(hid_t);
        const char *says;
    } cases[] = {
        {"missing.h5", drop_gamma, "'bn1/gamma:0' its weight_names lists is missing"},
        {"int.h5", int_gamma, "does not hold floating-point values"},
        {"huge.h5", huge_gamma, "declares 1000000000000 values"},
        {"unstored.h5", unstored_gamma, "declares 100000000 values but the file stores 0 bytes"},
        {"loop.h5", looping_gamma, "'bn1/gamma:0'"},
        {"rank5.h5", rank5_gamma, "has 5 dimensions"},
    };
    rg_tensor_file *f;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = hostile(cases[i].name, cases[i].edit);
        assert_int_not_equal(rg_weights_load(path, &f), RG_OK);
        if (!strstr(rg_last_error(), cases[i].says) || !strstr(rg_last_error(), "layer 'bn1'"))
            fail_msg("%s: %s", cases[i].name, rg_last_error());
        assert_null(f);
    }
    /* truncated, and the magic alone */
    const char *path = test_path("truncated.h5");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "head -c 6000 '%s' > '%s'", fixture_path("keras/small_h5py2.h5"), path);
    assert_int_equal(system(cmd), 0);
    assert_int_not_equal(rg_weights_load(path, &f), RG_OK);
    assert_non_null(strstr(rg_last_error(), "truncated.h5"));
    FILE *fp = fopen(path, "wb");
    fwrite("\x89HDF\r\n\x1a\n" "garbage", 1, 15, fp);
    fclose(fp);
    assert_int_not_equal(rg_weights_load(path, &f), RG_OK);
    assert_non_null(strstr(rg_last_error(), "truncated.h5"));
    /* .keras archives: truncated, a damaged entry, a size the archive does not hold, no weights */
    FILE *in = fopen(fixture_path("keras/small.keras"), "rb");
    static unsigned char zip[65536];
    const size_t zn = fread(zip, 1, sizeof zip, in);
    fclose(in);
    static const struct { size_t cut; long at; unsigned char v; const char *says; } bad[] = {
        {2000, -1, 0, "not a zip archive"},
        {0, 9000, 0xff, "fails its checksum"}, /* inside model.weights.h5 */
        {0, -2, 0, "declares"},
        {0, -3, 'X', "a zip without model.weights.h5"},
        {0, -4, 0, "a zip without model.weights.h5"}, /* a path out of the folder: never made */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char copy[65536];
        memcpy(copy, zip, zn);
        size_t n = bad[i].cut ? bad[i].cut : zn;
        /* the central directory's last entry is model.weights.h5 */
        size_t cd = 0;
        for (size_t k = 0; k + 4 <= zn; k++)
            if (!memcmp(copy + k, "PK\x01\x02", 4)) cd = k;
        if (bad[i].at >= 0) copy[bad[i].at] ^= bad[i].v;
        if (bad[i].at == -2) copy[cd + 24] = copy[cd + 25] = copy[cd + 26] = 0x7f; /* its size */
        if (bad[i].at == -3) copy[cd + 46] = bad[i].v;                            /* its name */
        if (bad[i].at == -4) memcpy(copy + cd + 46, "../ll.weights.h5", 16);
        const char *zp = test_path("bad.keras");
        FILE *o = fopen(zp, "wb");
        fwrite(copy, 1, n, o);
        fclose(o);
        assert_int_not_equal(rg_weights_load(zp, &f), RG_OK);
        if (!strstr(rg_last_error(), bad[i].says)) fail_msg("case %zu: %s", i, rg_last_error());
    }
    assert_int_not_equal(access("../ll.weights.h5", F_OK), 0);
    /* a .keras archive's weights go to a temporary file in $TMPDIR: too long a path, or a
     * folder that is not there, is named with the fix */
    const char *tmpdir = getenv("TMPDIR");
    char *keep = tmpdir ? strdup(tmpdir) : NULL, longdir[5000];
    memset(longdir, 'x', sizeof longdir - 1), longdir[0] = '/', longdir[sizeof longdir - 1] = 0;
    setenv("TMPDIR", longdir, 1);
    assert_int_not_equal(rg_weights_load(fixture_path("keras/small.keras"), &f), RG_OK);
    if (!strstr(rg_last_error(), "TMPDIR is too long")) fail_msg("%s", rg_last_error());
    setenv("TMPDIR", "/nonexistent-regrad-folder", 1);
    assert_int_not_equal(rg_weights_load(fixture_path("keras/small.keras"), &f), RG_OK);
    if (!strstr(rg_last_error(), "set TMPDIR to a writable folder")) fail_msg("%s", rg_last_error());
    if (keep) setenv("TMPDIR", keep, 1);
    else unsetenv("TMPDIR");
    free(keep);
    assert_int_equal(rg_weights_load(fixture_path("keras/small.keras"), &f), RG_OK);
    rg_tensor_file_free(f);
    /* an HDF5 file that holds no Keras weights */
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(h);
    assert_int_equal(rg_weights_load(path, &f), RG_ERR_FORMAT);
    assert_non_null(strstr(rg_last_error(), "without Keras weights"));
}

/* Keras 3's .weights.h5 from ResNet50V2: every layer's weights in the group Keras 3 gives
 * it (its class and its place in model.layers, which is not the order the layers were
 * made in), named, in Keras's layout; read back, every tensor as it was. */
static void resnet50v2_keras3_groups(void **state) {
    rg_model a, b;
    const rg_model_opts o = {.c = 3, .h = 32, .w = 32, .seed = 3};
    assert_int_equal(rg_model_build("resnet50v2", &o, &a), RG_OK);
    assert_int_equal(rg_graph_compile(a.graph, 1), RG_OK);
    const char *path = test_path("r50.weights.h5");
    assert_int_equal(rg_keras_save(&a, path), RG_OK);
    FILE *fp = fopen(fixture_path("keras/resnet50v2_keras3_groups.txt"), "r");
    assert_non_null(fp);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(h >= 0);
    char line[256], name[128], group[128], at[300];
    int layers = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || sscanf(line, "%127s %127s", name, group) != 2) continue;
        snprintf(at, sizeof at, "layers/%s/vars", group);
        hid_t v = H5Gopen2(h, at, H5P_DEFAULT);
        if (v < 0) fail_msg("%s: no group %s", name, at);
        hid_t attr = H5Aopen(v, "name", H5P_DEFAULT), ty = H5Aget_type(attr);
        char *got = NULL;
        assert_true(H5Aread(attr, ty, &got) >= 0);
        if (strcmp(got, name) != 0) fail_msg("%s holds '%s', not '%s'", at, got, name);
        H5free_memory(got);
        H5Tclose(ty), H5Aclose(attr);
        hid_t d = H5Dopen2(v, "0", H5P_DEFAULT), sp = H5Dget_space(d);
        hsize_t dims[4];
        const int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
        rg_node n = RG_NONE;
        for (int i = 0; i < rg_graph_node_count(a.graph); i++)
            if (strcmp(rg_node_name(a.graph, i), name) == 0) n = i;
        assert_true(n != RG_NONE);
        /* the first weight: a kernel in Keras's layout (kh, kw, in, out) or (in, out), or gamma */
        const int *shape = rg_node_shape(a.graph, n);
        if (nd == 4) assert_int_equal(dims[3], shape[0]);
        else if (nd == 2) assert_int_equal(dims[1], shape[0]);
        else assert_int_equal(dims[0], shape[0]);
        H5Sclose(sp), H5Dclose(d), H5Gclose(v);
        layers++;
    }
    fclose(fp);
    H5Fclose(h);
    assert_int_equal(layers, 103);
    rg_tensor_file *f;
    assert_int_equal(rg_weights_load(path, &f), RG_OK);
    assert_int_equal(rg_model_build("resnet50v2", &(rg_model_opts){.c = 3, .h = 32, .w = 32, .seed = 4}, &b), RG_OK);
    assert_int_equal(rg_graph_compile(b.graph, 1), RG_OK);
    assert_int_equal(rg_model_load(&b, f, RG_LOAD_STRICT, NULL), RG_OK);
    assert_memory_equal(rg_graph_params(a.graph), rg_graph_params(b.graph), rg_graph_param_floats(a.graph) * 4);
    assert_memory_equal(rg_graph_state(a.graph), rg_graph_state(b.graph), rg_graph_state_floats(a.graph) * 4);
    rg_tensor_file_free(f);
    rg_model_free(&a), rg_model_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_cnn_matches_numpy),
        cmocka_unit_test(round_trip_through_keras),
        cmocka_unit_test(resnet50v2_notop_lands_by_name),
        cmocka_unit_test(hostile_files),
        cmocka_unit_test(resnet50v2_keras3_groups),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
