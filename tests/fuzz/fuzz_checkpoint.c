/*
 * fuzz_checkpoint.c — libFuzzer target for checkpoints as regrad uses them: the bytes are
 * parsed as safetensors, then loaded into a compiled model (strict and partial), restored
 * as a training checkpoint (metadata counters, optimizer moments) and handed to GRA's
 * state restore (its JSON and statistics tensors).  The seed is a real checkpoint of this
 * very model (mlp:depth=1,width=4 on 1x28x28, 10 classes, Adam, GRA).
 */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>

static rg_model m;
static rg_optim *opt;
static rg_monitor *mon;
static rg_repair *gra;
static rg_dataset probe;
static int probe_idx[4];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!m.graph) {
        if (rg_model_build("mlp:depth=1,width=4", &(rg_model_opts){.c = 1, .h = 28, .w = 28, .classes = 10, .seed = 1}, &m) ||
            rg_graph_compile(m.graph, 4))
            abort();
        rg_optim_config oc = rg_optim_defaults(RG_OPTIM_ADAM);
        opt = rg_optim_create(&oc, rg_graph_param_floats(m.graph));
        mon = rg_monitor_create(m.graph);
        gra = rg_repair_create(&m, mon, NULL, NULL);
        probe = (rg_dataset){.n = 4, .c = 1, .h = 28, .w = 28, .classes = 10};
        if (!opt || !mon || !gra) abort();
    }
    rg_tensor_file *f;
    if (rg_safetensors_parse(data, size, "fuzz", &f) != RG_OK) return 0;
    rg_load_report rep;
    (void)rg_model_load(&m, f, RG_LOAD_STRICT, &rep);
    (void)rg_model_load(&m, f, RG_LOAD_PARTIAL | RG_LOAD_NEW_HEAD, &rep);
    rg_train_state st = {0};
    (void)rg_checkpoint_restore(f, &m, opt, &st);
    (void)rg_repair_restore(gra, rg_tensor_file_meta(f, "gra"), f, &probe, probe_idx, 4);
    rg_tensor_file_free(f);
    return 0;
}
