/*
 * test_keras_model.c — Keras model JSON built as regrad graphs ("keras:FILE"): the small CNN
 * from a whole-model .h5 (Keras 2 JSON) and a .keras archive (Keras 3 JSON) and a branching
 * model with a Flatten of a feature map, each with its weights, against NumPy's logits;
 * keras.applications' ResNet50V2 and DenseNet121 configs (Keras 2 and 3) against the
 * parameter counts Keras prints, and ResNet50V2's against the zoo's tensor by tensor; a new
 * head, frozen layers, Keras <= 2.1's bare Sequential list; hostile JSON, one error each.
 * Fixtures: tools/make_keras_fixtures.py (small, branchy: committed; applications: made
 * here when /usr/bin/python3 is there).
 */
#include "test_util.h"

#include "internal.h"

static int make_dir(void **state) { return test_dir_make("keras_model") ? 0 : -1; }
static int remove_dir(void **state) { return test_dir_remove() == 0 ? 0 : -1; }

static rg_model build(const char *spec, const rg_model_opts *o, int batch) {
    rg_model m;
    if (rg_model_build(spec, o, &m) != RG_OK) fail_msg("%s: %s", spec, rg_last_error());
    assert_int_equal(rg_graph_compile(m.graph, batch), RG_OK);
    return m;
}

/* A model from a Keras file and the weights in `weights`, against the reference logits. */
static void matches_reference(const char *model, const char *weights, const char *ref_file, int n,
                              int loaded) {
    char spec[1100];
    snprintf(spec, sizeof spec, "keras:%s", fixture_path(model));
    rg_model m = build(spec, NULL, n);
    rg_tensor_file *ref, *f;
    assert_int_equal(rg_safetensors_load(fixture_path(ref_file), &ref), RG_OK);
    if (rg_weights_load(fixture_path(weights), &f) != RG_OK) fail_msg("%s: %s", weights, rg_last_error());
    rg_load_report rep;
    if (rg_model_load(&m, f, RG_LOAD_STRICT, &rep) != RG_OK) fail_msg("%s: %s", weights, rg_last_error());
    assert_int_equal(rep.loaded, loaded);
    const float *x = rg_tensor_file_find(ref, "x", NULL, NULL, NULL);
    const float *want = rg_tensor_file_find(ref, "logits", NULL, NULL, NULL);
    memcpy(rg_graph_input_buffer(m.graph, m.input), x, rg_node_size(m.graph, m.input) * n * sizeof(float));
    assert_int_equal(rg_graph_forward(m.graph, n, 0), RG_OK);
    assert_close(model, rg_node_output(m.graph, m.logits), want, rg_node_size(m.graph, m.logits) * n,
                 1e-4, 1e-4);
    rg_tensor_file_free(f);
    rg_tensor_file_free(ref);
    rg_model_free(&m);
}

static void small_cnn_from_keras2_and_keras3_json(void **state) {
    matches_reference("keras/small_model.h5", "keras/small_model.h5", "keras/small_ref.safetensors", 2, 10);
    matches_reference("keras/small.keras", "keras/small.keras", "keras/small_ref.safetensors", 2, 10);
    matches_reference("keras/small_deflated.keras", "keras/small_h5py2.h5", "keras/small_ref.safetensors", 2, 10);
}

/* Zero padding on two sides, a valid conv, Add, Concatenate, max pooling, a Flatten of a
 * (3, 3, 8) map (channels-last order) and a softmax Dense. */
static void branchy_model_matches_numpy(void **state) {
    matches_reference("keras/branchy.json", "keras/branchy.h5", "keras/branchy_ref.safetensors", 3, 6);
}

static size_t count_params(const rg_graph *g, bool trainable_only) {
    size_t n = 0;
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (!trainable_only || p.trainable) n += p.size;
    }
    return n;
}

/* The totals Keras's model.summary() prints for keras.applications' models. */
static void applications_have_keras_counts(void **state) {
    if (system("/usr/bin/python3 -c 'import json' 2>/dev/null") != 0) {
        print_message("SKIP: no /usr/bin/python3\n");
        skip();
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../../tools/make_keras_fixtures.py applications %s",
             getenv("REGRAD_FIXTURES") ? getenv("REGRAD_FIXTURES") : "tests/fixtures", test_dir());
    assert_int_equal(system(cmd), 0);
    static const struct { const char *file; size_t total, trainable; } apps[] = {
        {"resnet50v2_k2.json", 25613800, 25568360},  {"resnet50v2_k3.json", 25613800, 25568360},
        {"resnet50v2_notop_k2.json", 23564800, 23519360},
        {"densenet121_k2.json", 8062504, 7978856},   {"densenet121_k3.json", 8062504, 7978856}};
    char spec[512];
    for (int i = 0; i < RG_COUNT_OF(apps); i++) {
        snprintf(spec, sizeof spec, "keras:%s", test_path(apps[i].file));
        rg_model m;
        if (rg_model_build(spec, NULL, &m) != RG_OK) fail_msg("%s: %s", apps[i].file, rg_last_error());
        assert_int_equal(rg_graph_compile(m.graph, 1), RG_OK);
        if (count_params(m.graph, false) != apps[i].total || count_params(m.graph, true) != apps[i].trainable)
            fail_msg("%s: %zu params, %zu trainable", apps[i].file, count_params(m.graph, false),
                     count_params(m.graph, true));
        rg_model_free(&m);
    }
    /* the JSON's ResNet50V2 is the zoo's: the same tensors under the same names, and the
     * zoo's weights give the same logits (at 64x64, which the caller's size sets) */
    snprintf(spec, sizeof spec, "keras:%s", test_path("resnet50v2_k3.json"));
    const rg_model_opts o = {.c = 3, .h = 64, .w = 64, .seed = 5};
    rg_model k = build(spec, &o, 2), z = build("resnet50v2", &o, 2);
    assert_int_equal(rg_graph_param_count(k.graph), rg_graph_param_count(z.graph));
    rg_tensor_file *f = saved_and_loaded(&z);
    assert_int_equal(rg_model_load(&k, f, RG_LOAD_STRICT, NULL), RG_OK);
    float *xk = rg_graph_input_buffer(k.graph, k.input), *xz = rg_graph_input_buffer(z.graph, z.input);
    for (int i = 0; i < 2 * 3 * 64 * 64; i++) xk[i] = xz[i] = (float)((i * 7919) % 1000) / 1000.0f;
    assert_int_equal(rg_graph_forward(k.graph, 2, 0), RG_OK);
    assert_int_equal(rg_graph_forward(z.graph, 2, 0), RG_OK);
    assert_memory_equal(rg_node_output(k.graph, k.logits), rg_node_output(z.graph, z.logits), 2000 * sizeof(float));
    rg_tensor_file_free(f);
    rg_model_free(&k), rg_model_free(&z);
}

static const char *write_json(const char *name, const char *text) {
    const char *path = test_path(name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* Keras <= 2.1's Sequential (a bare list, the shape in the first layer); frozen layers;
 * the caller's classes replace the output Dense's units. */
static void sequential_list_head_and_frozen(void **state) {
    const char *path = write_json("seq.json",
        "{\"class_name\": \"Sequential\", \"config\": ["
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d1\", \"units\": 16, \"activation\": \"tanh\","
        " \"batch_input_shape\": [null, 784], \"trainable\": false}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d2\", \"units\": 10}},"
        "{\"class_name\": \"Activation\", \"config\": {\"name\": \"sm\", \"activation\": \"softmax\"}}]}");
    char spec[512];
    snprintf(spec, sizeof spec, "keras:%s", path);
    rg_model m = build(spec, &(rg_model_opts){.classes = 4}, 2);
    assert_int_equal(rg_node_size(m.graph, m.logits), 4); /* a new head of 4 */
    assert_string_equal(rg_node_name(m.graph, m.logits), "d2");
    assert_int_equal(rg_node_size(m.graph, m.input), 784);
    assert_int_equal(count_params(m.graph, true), 16 * 4 + 4); /* d1 frozen */
    assert_true(m.loss != RG_NONE);
    rg_model_free(&m);
}

/* Each hostile or unsupported file: the build fails with one line that names the problem. */
static void hostile_json_one_error_each(void **state) {
    static const struct { const char *json, *says; } cases[] = {
        {"{\"class_name\": \"Sequential\", \"config\": [", "does not parse"},
        {"[1, 2]", "no class_name"},
        {"{\"class_name\": \"Dense\", \"config\": {}}", "not a model"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}", "no list of layers"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"d\", \"units\": 3}}]}}", "without an input shape"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"LSTM\","
         " \"config\": {\"name\": \"rnn\"}}]}}", "'rnn' (LSTM): regrad has no LSTM layer"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"Conv2D\","
         " \"config\": {\"name\": \"c\", \"filters\": 4, \"kernel_size\": [3, 5]}}]}}", "'c' (Conv2D): kernel_size must be square"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"Conv2D\","
         " \"config\": {\"name\": \"c\", \"filters\": 4, \"kernel_size\": 3, \"data_format\": \"channels_first\"}}]}}",
         "data_format must be channels_last"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8]}}, {\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"d\", \"units\": 4, \"activation\": \"softmax\"}}, {\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"e\", \"units\": 4}}]}}", "'d' (Dense): softmax inside the network"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8, 8, 3]}}, {\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"d\", \"units\": 4}}]}}", "'d' (Dense): a Dense on a 4-D tensor"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8]}}, {\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"d\", \"units\": 4, \"activation\": \"selu\"}}]}}", "activation 'selu' is not in regrad"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8]}}, {\"class_name\": \"LeakyReLU\","
         " \"config\": {\"name\": \"l\", \"alpha\": 0.3}}]}}", "alpha=0.3: regrad's leaky relu has slope 0.01"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, 8]}}, {\"class_name\": \"Dense\","
         " \"config\": {\"name\": \"i\", \"units\": 4}}]}}", "two layers named 'i'"},
        {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"config\": {\"name\": \"i\", \"batch_shape\": [null, null, null, 3]}}, {\"class_name\": \"GlobalAveragePooling2D\","
         " \"config\": {\"name\": \"g\"}}]}}", "input size is not in the model"},
        {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"name\": \"i\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 8]}, \"inbound_nodes\": []},"
         " {\"class_name\": \"Dense\", \"name\": \"a\", \"config\": {\"name\": \"a\", \"units\": 8}, \"inbound_nodes\": [[[\"b\", 0, 0, {}]]]},"
         " {\"class_name\": \"Dense\", \"name\": \"b\", \"config\": {\"name\": \"b\", \"units\": 8}, \"inbound_nodes\": [[[\"a\", 0, 0, {}]]]}],"
         " \"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"b\", 0, 0]]}}", "its input 'b' is not a layer before it"},
        {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"name\": \"i\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 8]}, \"inbound_nodes\": []},"
         " {\"class_name\": \"Dense\", \"name\": \"a\", \"config\": {\"name\": \"a\", \"units\": 8},"
         " \"inbound_nodes\": [[[\"i\", 0, 0, {}]], [[\"i\", 0, 0, {}]]]}],"
         " \"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"a\", 0, 0]]}}", "called 2 times"},
        {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\","
         " \"name\": \"i\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 8]}, \"inbound_nodes\": []}],"
         " \"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"x\", 0, 0], [\"i\", 0, 0]]}}", "output_layers"},
    };
    char spec[512];
    for (int i = 0; i < RG_COUNT_OF(cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d.json", i);
        snprintf(spec, sizeof spec, "keras:%s", write_json(name, cases[i].json));
        rg_model m;
        const rg_status s = rg_model_build(spec, NULL, &m);
        if (s == RG_OK || !strstr(rg_last_error(), cases[i].says) || strchr(rg_last_error(), '\n'))
            fail_msg("case %d: status %d, '%s' (want '%s')", i, s, rg_last_error(), cases[i].says);
    }
    /* JSON nested past cJSON's limit, and a file that is not there */
    char *deep = malloc(20001);
    memset(deep, '[', 20000);
    deep[20000] = 0;
    snprintf(spec, sizeof spec, "keras:%s", write_json("deep.json", deep));
    free(deep);
    rg_model m;
    assert_int_equal(rg_model_build(spec, NULL, &m), RG_ERR_FORMAT);
    assert_int_equal(rg_model_build("keras:/nonexistent/model.json", NULL, &m), RG_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_cnn_from_keras2_and_keras3_json),
        cmocka_unit_test(branchy_model_matches_numpy),
        cmocka_unit_test(applications_have_keras_counts),
        cmocka_unit_test(sequential_list_head_and_frozen),
        cmocka_unit_test(hostile_json_one_error_each),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
