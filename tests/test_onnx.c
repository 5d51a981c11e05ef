/*
 * test_onnx.c — ONNX models exported by PyTorch ("onnx:FILE"): an MLP with tanh and batch
 * norm, a CNN with stride 2 and padding on two sides (PyTorch's F.pad subgraph, folded), a
 * pre-activation residual block, depthwise and pointwise convolutions, a DenseNet-style
 * concat with a softmax output: logits against PyTorch's (1e-4), one training step's
 * gradients against PyTorch's (1e-4), the names --freeze globs read; hostile files
 * (truncated, not protobuf, a wrong opset, an op regrad lacks, a tensor larger than its
 * data, external data, a node reading a value made after it) one error line each.
 * Fixtures: tools/make_onnx_fixtures.py (committed).
 */
#include "test_util.h"

#include "internal.h"
#include "onnx.pb-c.h"

static int make_dir(void **state) { return test_dir_make("onnx") ? 0 : -1; }
static int remove_dir(void **state) { return test_dir_remove() == 0 ? 0 : -1; }

/* Model NAME.onnx against REF_ref.safetensors. */
static void matches(const char *name, const char *ref_of, int classes) {
    char model[256], ref_name[256], spec[1100];
    snprintf(model, sizeof model, "onnx/%s.onnx", name);
    snprintf(ref_name, sizeof ref_name, "onnx/%s_ref.safetensors", ref_of);
    snprintf(spec, sizeof spec, "onnx:%s", fixture_path(model));
    rg_model m;
    if (rg_model_build(spec, NULL, &m) != RG_OK) fail_msg("%s: %s", name, rg_last_error());
    assert_int_equal(rg_graph_compile(m.graph, 4), RG_OK);
    assert_int_equal(rg_node_size(m.graph, m.logits), classes);
    rg_tensor_file *w, *ref;
    if (rg_weights_load(fixture_path(model), &w) != RG_OK) fail_msg("%s: %s", name, rg_last_error());
    if (rg_model_load(&m, w, RG_LOAD_STRICT, NULL) != RG_OK) fail_msg("%s: %s", name, rg_last_error());
    assert_int_equal(rg_safetensors_load(fixture_path(ref_name), &ref), RG_OK);
    const float *x = rg_tensor_file_find(ref, "x", NULL, NULL, NULL), *y = rg_tensor_file_find(ref, "y", NULL, NULL, NULL);
    memcpy(rg_graph_input_buffer(m.graph, m.input), x, 4 * rg_node_size(m.graph, m.input) * sizeof(float));
    assert_int_equal(rg_graph_forward(m.graph, 4, 0), RG_OK);
    assert_close(name, rg_node_output(m.graph, m.logits), rg_tensor_file_find(ref, "logits", NULL, NULL, NULL),
                 4 * (size_t)classes, 1e-4, 1e-4);
    /* one training step: batch norm on the batch's statistics */
    for (int b = 0; b < 4; b++) rg_graph_labels(m.graph)[b] = (int)y[b];
    assert_int_equal(rg_graph_forward(m.graph, 4, 1), RG_OK);
    assert_int_equal(rg_graph_backward(m.graph, m.loss), RG_OK);
    int checked = 0;
    for (int i = 0; i < rg_tensor_file_count(ref); i++) {
        const char *t = rg_tensor_file_name(ref, i);
        if (strncmp(t, "grad.", 5) != 0) continue;
        rg_param_info p = {0};
        for (int k = 0; k < rg_graph_param_count(m.graph); k++) {
            rg_graph_param(m.graph, k, &p);
            if (strcmp(p.name, t + 5) == 0) break;
            p.name = NULL;
        }
        if (!p.name) fail_msg("%s: no parameter %s", name, t + 5);
        char what[160];
        snprintf(what, sizeof what, "%s %s", name, t);
        assert_close(what, p.grad, rg_tensor_file_find(ref, t, NULL, NULL, NULL), p.size, 1e-4, 1e-4);
        checked++;
    }
    assert_true(checked >= 4);
    rg_tensor_file_free(w), rg_tensor_file_free(ref);
    rg_model_free(&m);
}

static void mlp(void **state) { matches("mlp", "mlp", 5); }
static void weights_beside_the_model(void **state) { matches("cnn_external", "cnn", 3); }
static void gelu_erf_form(void **state) { matches("gelu", "gelu", 4); }
static void cnn_stride2_asymmetric_pad(void **state) { matches("cnn", "cnn", 3); }
static void preactivation_resnet(void **state) { matches("resnet", "resnet", 4); }
static void depthwise_block(void **state) { matches("depthwise", "depthwise", 3); }
static void densenet_concat_softmax(void **state) { matches("dense", "dense", 3); }
static void fashion_cnn(void **state) { matches("fashion_cnn", "fashion_cnn", 10); }

/* PyTorch's module names: --freeze 'fc*' finds the classifier. */
static void names_follow_pytorch(void **state) {
    char spec[1100];
    snprintf(spec, sizeof spec, "onnx:%s", fixture_path("onnx/mlp.onnx"));
    rg_model m;
    assert_int_equal(rg_model_build(spec, NULL, &m), RG_OK);
    assert_int_equal(rg_graph_set_trainable(m.graph, "fc*", 0), 2);
    assert_int_equal(rg_graph_compile(m.graph, 1), RG_OK);
    const char *want[] = {"fc1.kernel", "fc1.bias", "bn.gamma", "bn.beta", "fc2.kernel", "fc2.bias"};
    for (int i = 0; i < 6; i++) {
        bool found = false;
        for (int k = 0; k < rg_graph_param_count(m.graph); k++) {
            rg_param_info p;
            rg_graph_param(m.graph, k, &p);
            found |= strcmp(p.name, want[i]) == 0;
        }
        if (!found) fail_msg("no parameter %s", want[i]);
    }
    rg_model_free(&m);
}

/* The fixture edited by edit, written, built: one line naming `says`. */
static void refused(const char *label, void (*edit)(Onnx__ModelProto *), const char *says) {
    FILE *fp = fopen(fixture_path("onnx/cnn.onnx"), "rb");
    static uint8_t buf[1 << 16];
    const size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    assert_non_null(m);
    edit(m);
    static uint8_t out[1 << 16];
    const size_t len = onnx__model_proto__get_packed_size(m);
    assert_true(len <= sizeof out);
    onnx__model_proto__pack(m, out);
    onnx__model_proto__free_unpacked(m, NULL);
    char name[64], spec[1100];
    snprintf(name, sizeof name, "%s.onnx", label);
    const char *path = test_path(name);
    fp = fopen(path, "wb");
    fwrite(out, 1, len, fp);
    fclose(fp);
    snprintf(spec, sizeof spec, "onnx:%s", path);
    rg_model mm;
    rg_tensor_file *f = NULL;
    const rg_status s = strstr(label, "weights") ? rg_weights_load(path, &f) : rg_model_build(spec, NULL, &mm);
    if (s == RG_OK || !strstr(rg_last_error(), says) || strchr(rg_last_error(), '\n'))
        fail_msg("%s: status %d, '%s' (want '%s')", label, s, rg_last_error(), says);
}

static void old_opset(Onnx__ModelProto *m) { m->opset_import[0]->version = 9; }
/* strings the unpacked message frees: replaced with ones of the same owner (malloc) */
static void replace(char **field, const char *text) {
    free(*field);
    *field = strdup(text);
}
static void lstm(Onnx__ModelProto *m) { replace(&m->graph->node[m->graph->n_node - 1]->op_type, "LSTM"); }
static void huge_tensor(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, "fc.weight")) m->graph->initializer[i]->dims[0] = 1000000;
}
static void external(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, "fc.weight")) {
            m->graph->initializer[i]->has_data_location = 1;
            m->graph->initializer[i]->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        }
}
static void cycle(Onnx__ModelProto *m) { /* the first conv reads the last node's output */
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->op_type, "Conv")) {
            replace(&m->graph->node[i]->input[0], m->graph->node[m->graph->n_node - 1]->output[0]);
            return;
        }
}

static void cast_of_nothing(Onnx__ModelProto *m) { /* the pads' Cast reads the empty name */
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->op_type, "Cast")) replace(&m->graph->node[i]->input[0], "");
}

static void repeated_axis(Onnx__ModelProto *m) { /* the pads' Transpose: perm (1, 0) -> (0, 0) */
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->op_type, "Transpose")) m->graph->node[i]->attribute[0]->ints[0] = 0;
}

static const char *external_location;
static void external_at(Onnx__ModelProto *m) { /* fc.weight's data in a file at external_location */
    for (size_t i = 0; i < m->graph->n_initializer; i++) {
        Onnx__TensorProto *t = m->graph->initializer[i];
        if (strcmp(t->name, "fc.weight") != 0) continue;
        t->has_data_location = 1, t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        t->external_data = calloc(1, sizeof *t->external_data);
        t->external_data[0] = calloc(1, sizeof **t->external_data);
        onnx__string_string_entry_proto__init(t->external_data[0]);
        t->external_data[0]->key = strdup("location"), t->external_data[0]->value = strdup(external_location);
        t->n_external_data = 1;
    }
}

static void hostile_files(void **state) {
    refused("opset", old_opset, "opset 9: regrad reads opsets 11 to 17");
    refused("lstm", lstm, "(LSTM): regrad has no LSTM");
    refused("huge", huge_tensor, "declares 24000000 values and holds 72");
    refused("huge_weights", huge_tensor, "declares 24000000 values and holds 72");
    refused("external_weights", external, "is not a file inside the model's folder: refused");
    static const struct { const char *location, *says; } places[] = {
        {"../outside.data", "is not a file inside the model's folder: refused"},
        {"/etc/passwd", "is not a file inside the model's folder: refused"},
        {"absent.data", "is missing or outside the model's folder"},
        {"short.data", "declares 72 values and holds 2"}, /* fewer bytes than the tensor's */
    };
    FILE *sh = fopen(test_path("short.data"), "wb");
    fwrite("12345678", 1, 8, sh);
    fclose(sh);
    for (int i = 0; i < RG_COUNT_OF(places); i++) {
        external_location = places[i].location;
        refused("external_at_weights", external_at, places[i].says);
    }
    refused("cycle", cycle, "is not made by any node before it");
    refused("cast_of_nothing", cast_of_nothing, "(Cast): its first input is empty");
    refused("repeated_axis", repeated_axis, "(Transpose): perm is not a permutation of the axes");
    /* truncated, and not protobuf at all */
    FILE *in = fopen(fixture_path("onnx/cnn.onnx"), "rb");
    static uint8_t buf[1 << 16];
    const size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    const char *path = test_path("cut.onnx");
    for (int k = 0; k < 2; k++) {
        FILE *o = fopen(path, "wb");
        if (k) fwrite("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 1, 10, o);
        else fwrite(buf, 1, n * 2 / 3, o);
        fclose(o);
        char spec[1100];
        snprintf(spec, sizeof spec, "onnx:%s", path);
        rg_model m;
        assert_int_equal(rg_model_build(spec, NULL, &m), RG_ERR_FORMAT);
        assert_non_null(strstr(rg_last_error(), "not an ONNX model"));
    }
}

/* Every zoo model exported and imported back gives the same logits; onnx.checker (with
 * full shape inference) accepts every export when /usr/bin/python3 has onnx. */
static void zoo_export_round_trip(void **state) {
    static const struct { const char *spec; int c, h, w; } zoo[] = {
        {"mlp:depth=3,width=32,bn=1,dropout=0.1", 1, 28, 28}, {"mlp:act=gelu", 1, 28, 28},
        {"cnn", 1, 28, 28}, {"plaincnn:depth=5,act=sigmoid", 1, 28, 28}, {"resnet20v2", 1, 28, 28},
        {"resnet56v2", 1, 28, 28}, {"plain20", 1, 28, 28}, {"plain56", 1, 28, 28},
        {"resnet18v2", 3, 32, 32}, {"resnet50v2", 3, 32, 32}, {"resnet101v2", 3, 32, 32},
        {"densenet121", 3, 32, 32}, {"densenet:depth=10,growth=4", 1, 28, 28}, {"lassonet", 1, 28, 28}};
    const bool checker = system("/usr/bin/python3 -c 'import onnx' 2>/dev/null") == 0;
    if (!checker) print_message("onnx.checker not run: /usr/bin/python3 without onnx\n");
    for (int i = 0; i < RG_COUNT_OF(zoo); i++) {
        rg_model a, b;
        const rg_model_opts o = {.c = zoo[i].c, .h = zoo[i].h, .w = zoo[i].w, .seed = 9};
        assert_int_equal(rg_model_build(zoo[i].spec, &o, &a), RG_OK);
        assert_int_equal(rg_graph_compile(a.graph, 2), RG_OK);
        const char *path = test_path("zoo.onnx");
        if (rg_onnx_save(&a, path, NULL) != RG_OK) fail_msg("%s: %s", zoo[i].spec, rg_last_error());
        if (checker) {
            char cmd[1400];
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import onnx; onnx.checker.check_model("
                     "onnx.load('%s'), full_check=True)\"", path);
            if (system(cmd) != 0) fail_msg("%s: onnx.checker rejects the export", zoo[i].spec);
        }
        char spec[1100];
        snprintf(spec, sizeof spec, "onnx:%s", path);
        rg_tensor_file *w;
        if (rg_model_build(spec, NULL, &b) != RG_OK) fail_msg("%s: %s", zoo[i].spec, rg_last_error());
        assert_int_equal(rg_graph_compile(b.graph, 2), RG_OK);
        assert_int_equal(rg_weights_load(path, &w), RG_OK);
        if (rg_model_load(&b, w, RG_LOAD_STRICT, NULL) != RG_OK) fail_msg("%s: %s", zoo[i].spec, rg_last_error());
        const size_t n = 2 * rg_node_size(a.graph, a.input);
        float *xa = rg_graph_input_buffer(a.graph, a.input), *xb = rg_graph_input_buffer(b.graph, b.input);
        for (size_t k = 0; k < n; k++) xa[k] = xb[k] = (float)((k * 7919) % 1000) / 1000.0f;
        assert_int_equal(rg_graph_forward(a.graph, 2, 0), RG_OK);
        assert_int_equal(rg_graph_forward(b.graph, 2, 0), RG_OK);
        assert_close(zoo[i].spec, rg_node_output(b.graph, b.logits), rg_node_output(a.graph, a.logits),
                     2 * rg_node_size(a.graph, a.logits), 1e-5, 1e-6);
        rg_tensor_file_free(w);
        rg_model_free(&a), rg_model_free(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlp),
        cmocka_unit_test(gelu_erf_form),
        cmocka_unit_test(weights_beside_the_model),
        cmocka_unit_test(cnn_stride2_asymmetric_pad),
        cmocka_unit_test(preactivation_resnet),
        cmocka_unit_test(depthwise_block),
        cmocka_unit_test(densenet_concat_softmax),
        cmocka_unit_test(fashion_cnn),
        cmocka_unit_test(names_follow_pytorch),
        cmocka_unit_test(hostile_files),
        cmocka_unit_test(zoo_export_round_trip),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
