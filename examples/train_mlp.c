/*
 * train_mlp.c — the shortest useful program: build an MLP from a spec, train it on
 * Fashion-MNIST with GRA, evaluate it and save a checkpoint.
 *
 *   build/examples/train_mlp [DATA] [CHECKPOINT]
 */
#include <regrad.h>
#include <stdio.h>

int main(int argc, char **argv) {
    const char *data = argc > 1 ? argv[1] : "fashion-mnist";
    const char *out = argc > 2 ? argv[2] : "/tmp/regrad-example-mlp.safetensors";
    rg_dataset *train = NULL, *test = NULL;
    rg_model m;
    if (rg_dataset_open(data, NULL, &train, &test) != RG_OK) goto fail;
    rg_dataset_truncate(train, 5000); /* a quick run */
    if (rg_model_build("mlp:depth=2,width=128", &(rg_model_opts){.c = train->c, .h = train->h, .w = train->w, .classes = train->classes, .seed = 1}, &m) != RG_OK ||
        rg_graph_compile(m.graph, 64) != RG_OK)
        goto fail;
    rg_fit_config cfg = {.epochs = 2, .batch = 64, .seed = 1, .val_split = 0.1f,
                         .optim = rg_optim_defaults(RG_OPTIM_ADAM), .repair = 1};
    rg_schedule_parse("constant", &cfg.schedule);
    if (rg_fit(&m, train, &cfg, NULL) != RG_OK) goto fail;
    double loss, acc;
    if (rg_evaluate(&m, test ? test : train, NULL, (test ? test : train)->n, &loss, &acc) != RG_OK)
        goto fail;
    printf("test loss %.4f, accuracy %.4f\n", loss, acc);
    if (rg_model_save(&m, out, NULL) != RG_OK) goto fail;
    printf("saved %s\n", out);
    rg_model_free(&m);
    rg_dataset_free(train);
    rg_dataset_free(test);
    return 0;
fail:
    fprintf(stderr, "train_mlp: %s\n", rg_last_error());
    return 1;
}
