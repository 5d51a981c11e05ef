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

static const char *const prune_help =
    "Usage: regrad prune --weights FILE (--amount F | --threshold T) --out FILE [options]\n"
    "       regrad prune --weights FILE --sweep F,F,... [--data SPEC]\n"
    "Prune the dense and conv kernels of a checkpoint's model by magnitude (the classifier\n"
    "is kept whole), or measure test accuracy against sparsity.\n"
    "\n"
    "  --weights FILE        a checkpoint written by regrad\n"
    "  --amount F            fraction to prune, in [0, 1]\n"
    "  --threshold T         prune what scores below T instead (|w|, or a unit's norm)\n"
    "  --structure S         weights (default): single weights by |w|; units: whole outputs\n"
    "                        (dense rows, conv filters, with their bias) by their norm\n"
    "  --scope S             layer (default): the same fraction of every layer; global:\n"
    "                        ranked together (units by norm per incoming weight)\n"
    "  --criterion C         l2 (default) or l1: the norm for units\n"
    "  --out FILE            the pruned checkpoint (with mask.* tensors); fine-tune it with\n"
    "                        regrad train --weights FILE: pruned weights stay 0\n"
    "  --sweep LIST          amounts to try (each from the original weights): a table of\n"
    "                        sparsity, test loss and accuracy\n"
    "  --data SPEC           data for --sweep (default: the checkpoint's; its test split)\n"
    "  --report FILE.html    with --sweep: a chart of accuracy against sparsity (the table\n"
    "                        is kept as FILE.html.jsonl)\n"
    "  --threads N           threads (default: all cores)\n"
    "  -h, --help            show this help\n";

enum { OPT_WEIGHTS = 256, OPT_AMOUNT, OPT_THRESHOLD, OPT_STRUCTURE, OPT_SCOPE, OPT_CRITERION,
       OPT_OUT, OPT_SWEEP, OPT_DATA, OPT_THREADS, OPT_REPORT };

static const struct option prune_opts[] = {
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"amount", required_argument, 0, OPT_AMOUNT},
    {"threshold", required_argument, 0, OPT_THRESHOLD},
    {"structure", required_argument, 0, OPT_STRUCTURE},
    {"scope", required_argument, 0, OPT_SCOPE},
    {"criterion", required_argument, 0, OPT_CRITERION},
    {"out", required_argument, 0, OPT_OUT},
    {"sweep", required_argument, 0, OPT_SWEEP},
    {"data", required_argument, 0, OPT_DATA},
    {"threads", required_argument, 0, OPT_THREADS},
    {"report", required_argument, 0, OPT_REPORT},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

bool cli_prune_option(const char *cmd, const char *opt, const char *arg, rg_prune_opts *o) {
    const char *kind = strncmp(opt, "prune-", 6) == 0 ? opt + 6 : opt;
    if (strcmp(kind, "structure") == 0) {
        if (strcmp(arg, "weights") == 0) o->structure = RG_PRUNE_WEIGHTS;
        else if (strcmp(arg, "units") == 0) o->structure = RG_PRUNE_UNITS;
        else return cli_error(cmd, "--%s '%s': use weights or units", opt, arg), false;
    } else if (strcmp(kind, "scope") == 0) {
        if (strcmp(arg, "layer") == 0) o->global = false;
        else if (strcmp(arg, "global") == 0) o->global = true;
        else return cli_error(cmd, "--%s '%s': use layer or global", opt, arg), false;
    } else {
        if (strcmp(arg, "l1") == 0) o->norm = 1;
        else if (strcmp(arg, "l2") == 0) o->norm = 2;
        else return cli_error(cmd, "--%s '%s': use l1 or l2", opt, arg), false;
    }
    return true;
}

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
    const char *weights = NULL, *out = NULL, *sweep_list = NULL, *data = NULL, *report = NULL;
    rg_prune_opts o = {.amount = -1, .norm = 2};
    double v;
    long threads = 0;
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", prune_opts)) != -1) {
        bool ok = true;
        switch (c) {
        case 'h': fputs(prune_help, stdout); return 0;
        case OPT_WEIGHTS: weights = optarg; break;
        case OPT_AMOUNT: ok = cli_float(cmd, "amount", optarg, 0, 1, false, &v), o.amount = (float)v; break;
        case OPT_THRESHOLD: ok = cli_float(cmd, "threshold", optarg, 0, 1e9, true, &v), o.threshold = (float)v; break;
        case OPT_STRUCTURE: ok = cli_prune_option(cmd, "structure", optarg, &o); break;
        case OPT_SCOPE: ok = cli_prune_option(cmd, "scope", optarg, &o); break;
        case OPT_CRITERION: ok = cli_prune_option(cmd, "criterion", optarg, &o); break;
        case OPT_OUT: out = optarg; break;
        case OPT_SWEEP: sweep_list = optarg; break;
        case OPT_DATA: data = optarg; break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &threads); break;
        case OPT_REPORT: report = optarg; break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    const int modes = (o.amount >= 0) + (o.threshold > 0) + (sweep_list != NULL);
    if (optind < argc || !weights || modes != 1 || (!sweep_list && !out)) {
        cli_error(cmd, optind < argc ? "unexpected argument; see 'regrad prune --help'"
                       : !weights ? "--weights FILE is required"
                       : modes != 1 ? "give one of --amount, --threshold or --sweep"
                                    : "--out FILE is required");
        return EXIT_USAGE;
    }
    rg_set_threads((int)threads);
    cli_trained t;
    int r = cli_load_trained(cmd, weights, 128, &t);
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
            fprintf(jsonl, "{\"event\":\"start\",\"model\":\"%s\",\"data\":\"%s\"}\n",
                    t.m.spec, data ? data : rg_tensor_file_meta(t.file, "data") ? rg_tensor_file_meta(t.file, "data") : "?");
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
