/*
 * cmd_prune.c — `regrad prune`: magnitude pruning of a checkpoint's model, written as a new
 * checkpoint with its masks (which keep pruned weights at zero when training goes on from
 * it), or a sweep of amounts against test accuracy.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prune_args {
    const char *weights, *out, *sweep, *data, *report, *device, *precision;
    long threads;
    rg_prune_opts o;
} prune_args;

#define A prune_args
static const cli_option prune_options[] = {
    {.name = "weights", .meta = "FILE", .type = CLI_TEXT, CLI_AT(A, weights),
     .help = "a checkpoint written by regrad"},
    {.name = "amount", .meta = "F", .type = CLI_REAL, CLI_AT(A, o.amount), .lo = 0, .hi = 1,
     .help = "fraction to prune"},
    {.name = "threshold", .meta = "T", .type = CLI_REAL, CLI_AT(A, o.threshold), .lo = 0, .hi = 1e9,
     .open_lo = true, .help = "prune what scores below T instead (|w|, or a unit's norm)"},
    {.name = "structure", .meta = "S", .type = CLI_PARSE, CLI_AT(A, o.structure),
     .parse = cli_parse_structure, .dflt = "weights",
     .help = "weights: single weights by |w|; units: whole outputs (dense rows, conv filters, with "
             "their bias) by their norm"},
    {.name = "scope", .meta = "S", .type = CLI_PARSE, CLI_AT(A, o.global), .parse = cli_parse_scope,
     .dflt = "layer", .help = "layer: the same fraction of every layer; global: ranked together "
                              "(units by norm per incoming weight)"},
    {.name = "criterion", .meta = "C", .type = CLI_PARSE, CLI_AT(A, o.norm), .parse = cli_parse_criterion,
     .dflt = "l2", .help = "l2 or l1: the norm for units"},
    {.name = "out", .meta = "FILE", .type = CLI_TEXT, CLI_AT(A, out),
     .help = "the pruned checkpoint (with mask.* tensors); fine-tune it with regrad train "
             "--weights FILE: pruned weights stay 0"},
    {.name = "sweep", .meta = "LIST", .type = CLI_TEXT, CLI_AT(A, sweep),
     .help = "amounts to try (each from the original weights): a table of sparsity, test loss "
             "and accuracy"},
    {.name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, data),
     .help = "data for --sweep (default: the checkpoint's; its test split)"},
    {.name = "report", .meta = "FILE.html", .type = CLI_TEXT, CLI_AT(A, report),
     .help = "with --sweep: a chart of accuracy against sparsity (the table is kept as "
             "FILE.html.jsonl)"},
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    CLI_END,
};
#undef A

static const cli_command prune_command = {
    .name = "prune",
    .usage = "--weights FILE (--amount F | --threshold T) --out FILE [options]\n"
             "       regrad prune --weights FILE --sweep F,F,... [--data SPEC]",
    .about = "Prune the dense and conv kernels of a checkpoint's model by magnitude (the "
             "classifier is kept whole), or measure test accuracy against sparsity.",
    .options = prune_options};

/* The checkpoint's data-describing metadata, carried over to the pruned one. */
static void carry_meta(const rg_tensor_file *f, rg_meta *meta) {
    static const char *const keys[] = {"data", "preprocess", "input_size", "channels", "class_names"};
    for (int i = 0; i < 5; i++)
        if (rg_tensor_file_meta(f, keys[i])) rg_meta_set(meta, keys[i], rg_tensor_file_meta(f, keys[i]));
}

static int sweep(const char *cmd, cli_trained *t, const rg_prune_opts *base, const char *list,
                 const char *data, FILE *jsonl) {
    const char *spec = data ? data : rg_tensor_file_meta(t->file, "data");
    if (!spec) {
        cli_error(cmd, "the checkpoint does not say what data it was trained on: give --data");
        return EXIT_USAGE;
    }
    rg_data_options dopt = {.warn = cli_warn};
    cli_trained_data_options(t, &dopt);
    rg_dataset *train = NULL, *test = NULL;
    rg_status s = rg_dataset_open(spec, &dopt, &train, &test);
    if (s) return cli_fail(cmd, s);
    rg_dataset *d = test ? test : train;
    printf("%-8s %-9s %-10s %s\n", "amount", "sparsity", "test_loss", "test_acc");
    int code = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "0,%s", list);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item && !code;
         item = strtok_r(NULL, ",", &save)) {
        char *end;
        double amount = strtod(item, &end);
        if (end == item || *end || !(amount >= 0 && amount <= 1)) {
            cli_error(cmd, "--sweep '%s': each amount must be a number in [0, 1]", list);
            code = EXIT_USAGE;
            break;
        }
        /* each amount from the original weights */
        rg_graph_clear_masks(t->m.graph);
        rg_prune_opts o = *base;
        o.amount = (float)amount;
        rg_prune_report rep = {0};
        double loss, acc;
        if ((s = rg_model_load(&t->m, t->file, 0, NULL)) || (s = rg_prune(&t->m, &o, &rep)) ||
            (s = rg_evaluate(&t->m, d, NULL, d->n, &loss, &acc))) {
            code = cli_fail(cmd, s);
            break;
        }
        printf("%-8.2f %-9.4f %-10.4f %.4f\n", amount, rep.sparsity, loss, acc);
        if (jsonl)
            fprintf(jsonl, "{\"event\":\"sweep\",\"amount\":%g,\"sparsity\":%.6f,"
                           "\"test_loss\":%.6f,\"test_acc\":%.6f}\n", amount, rep.sparsity, loss, acc);
    }
    rg_dataset_free(train);
    rg_dataset_free(test);
    return code;
}

int cmd_prune(int argc, char **argv) {
    const char *cmd = "prune";
    prune_args a = {.o = {.amount = -1}};
    cli_defaults(&prune_command, &a);
    int r = cli_parse(&prune_command, argc, argv, &a, NULL);
    if (r >= 0) return r;
    const char *weights = a.weights, *out = a.out, *sweep_list = a.sweep, *data = a.data;
    const char *report = a.report;
    const rg_prune_opts o = a.o;
    const int modes = (o.amount >= 0) + (o.threshold > 0) + (sweep_list != NULL);
    if (!weights || modes != 1 || (!sweep_list && !out)) {
        cli_error(cmd, !weights ? "--weights FILE is required"
                       : modes != 1 ? "give one of --amount, --threshold or --sweep"
                                    : "--out FILE is required");
        return EXIT_USAGE;
    }
    rg_set_threads((int)a.threads);
    cli_trained t;
    r = cli_load_trained(cmd, weights, 128, a.device, a.precision, &t);
    if (r >= 0) {
        cli_trained_free(&t);
        return r;
    }
    if (sweep_list) {
        char path[4200];
        FILE *jsonl = NULL;
        if (report) {
            snprintf(path, sizeof path, "%s.jsonl", report);
            if (!(jsonl = fopen(path, "w"))) {
                cli_error(cmd, "cannot write '%s'", path);
                cli_trained_free(&t);
                return EXIT_RUNTIME;
            }
            const char *used = data ? data : rg_tensor_file_meta(t.file, "data");
            fprintf(jsonl, "{\"event\":\"start\",\"model\":");
            cli_json_str(jsonl, t.m.spec);
            fprintf(jsonl, ",\"data\":");
            cli_json_str(jsonl, used ? used : "?");
            fprintf(jsonl, "}\n");
        }
        r = sweep(cmd, &t, &o, sweep_list, data, jsonl);
        if (jsonl) fclose(jsonl);
        if (!r && report && !(r = cli_write_report(cmd, path, report, NULL))) printf("report: %s\n", report);
        cli_trained_free(&t);
        return r;
    }
    rg_prune_report rep;
    rg_status s = rg_prune(&t.m, &o, &rep);
    if (s) {
        cli_trained_free(&t);
        return cli_fail(cmd, s);
    }
    rg_graph *g = t.m.graph;
    printf("%-36s %-20s %s\n", "layer kernel", "shape", "sparsity");
    for (int i = 0; i < rg_graph_param_count(g); i++) {
        rg_param_info p;
        rg_graph_param(g, i, &p);
        if (p.state || !strstr(p.name, ".kernel")) continue;
        char shape[48] = "";
        for (int d = 0; d < p.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%d", d ? "x" : "", p.shape[d]);
        printf("%-36s %-20s %.4f%s\n", p.name, shape, rg_param_sparsity(g, i),
               p.node == t.m.logits ? "  (classifier, kept)" : "");
    }
    printf("pruned %ld of %ld prunable weights in %d layers: sparsity %.4f\n", rep.pruned,
           rep.prunable, rep.layers, rep.sparsity);
    rg_meta meta = {0};
    carry_meta(t.file, &meta);
    char how[160];
    snprintf(how, sizeof how, "%s %s, %s scope, %s", o.structure == RG_PRUNE_UNITS ? "units" : "weights",
             o.norm == 1 ? "l1" : "l2", o.global ? "global" : "layer", "magnitude");
    rg_meta_set(&meta, "pruning", how);
    if ((s = rg_model_save(&t.m, out, &meta))) r = cli_fail(cmd, s);
    else printf("wrote %s\n", out), r = 0;
    cli_trained_free(&t);
    return r;
}
