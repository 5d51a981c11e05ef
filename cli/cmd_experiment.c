/*
 * cmd_experiment.c — `regrad experiment`: the experiment behind GRA.  Plain MLPs (width
 * 128, PyTorch's default init), or plain CNNs (--model-family cnn: plaincnn, 16 channels),
 * of several depths and activations, trained with each optimizer with GRA off, with GRA on,
 * and with each classic remedy, over several seeds; prints test accuracy and the
 * first-to-last layer gradient-norm ratio as tables.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ITEMS 16

typedef struct list {
    int n;
    char item[MAX_ITEMS][32];
} list;

static bool split(const char *cmd, const char *opt, const char *text, list *out) {
    out->n = 0;
    for (const char *p = text; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= 32 || out->n == MAX_ITEMS) {
            cli_error(cmd, "--%s '%s': write a comma-separated list of up to %d items", opt, text, MAX_ITEMS);
            return false;
        }
        memcpy(out->item[out->n], p, len);
        out->item[out->n++][len] = 0;
        p += len + (comma ? 1 : 0);
    }
    if (!out->n) cli_error(cmd, "--%s is empty", opt);
    return out->n > 0;
}

/* Every remedy, in table order; also the default --remedies and the list errors name. */
#define REMEDY_LIST "off,gra,relu_he,bn,residual,maxnorm,clip,agc,aux,prune"
/* The remedies' settings: the common defaults of their papers and libraries. */
#define EXP_MAX_NORM 3.0f   /* Srivastava et al. 2014 use 3-4 */
#define EXP_CLIP_NORM 1.0f  /* the usual global clip */
#define EXP_AGC 0.01f       /* NFNets' lambda */
#define EXP_PRUNE 0.5f      /* half of each hidden layer's weights */
#define EXP_AUX "3"         /* three heads spread over the hidden layers */
#define EXP_AUX_WEIGHT 0.3f /* GoogLeNet's, decaying to 0 */

/* The lists, each item checked as it is read. */
static bool parse_depths(const char *cmd, const cli_option *r, const char *text, void *field) {
    list *l = field;
    char *end;
    if (!split(cmd, r->name, text, l)) return false;
    for (int i = 0; i < l->n; i++) {
        const long d = strtol(l->item[i], &end, 10);
        if (*end || d < 1 || d > 1000) {
            cli_error(cmd, "--%s '%s': depths are whole numbers in 1..1000", r->name, l->item[i]);
            return false;
        }
    }
    return true;
}

static bool parse_acts(const char *cmd, const cli_option *r, const char *text, void *field) {
    list *l = field;
    rg_act a;
    if (!split(cmd, r->name, text, l)) return false;
    for (int i = 0; i < l->n; i++)
        if (rg_act_parse(l->item[i], &a)) return cli_error(cmd, "--%s: %s", r->name, rg_last_error()), false;
    return true;
}

static bool parse_optimizers(const char *cmd, const cli_option *r, const char *text, void *field) {
    list *l = field;
    if (!split(cmd, r->name, text, l)) return false;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->item[i], "adam") && strcmp(l->item[i], "sgd"))
            return cli_error(cmd, "--%s: '%s' is not adam or sgd", r->name, l->item[i]), false;
    return true;
}

static bool parse_remedies(const char *cmd, const cli_option *r, const char *text, void *field) {
    list *l = field, known;
    if (!split(cmd, r->name, text, l) || !split(cmd, r->name, REMEDY_LIST, &known)) return false;
    for (int i = 0; i < l->n; i++) {
        bool found = false;
        for (int k = 0; k < known.n; k++) found |= !strcmp(l->item[i], known.item[k]);
        if (!found)
            return cli_error(cmd, "--%s: unknown remedy '%s' (%s)", r->name, l->item[i], REMEDY_LIST), false;
    }
    return true;
}

typedef struct experiment_args {
    list depths, acts, optims, remedies;
    long epochs, seeds, first_seed, width, limit, threads;
    const char *data, *json, *report, *device, *precision, *family;
} experiment_args;

#define A experiment_args
static const cli_option experiment_options[] = {
    {.name = "depths", .meta = "LIST", .type = CLI_PARSE, CLI_AT(A, depths), .parse = parse_depths,
     .dflt = "10,20,30", .help = "hidden layers"},
    {.name = "acts", .meta = "LIST", .type = CLI_PARSE, CLI_AT(A, acts), .parse = parse_acts,
     .dflt = "sigmoid,tanh", .choices = 1 + RG_NAMES_ACTIVATIONS, .help = "activations, any of"},
    {.name = "optimizers", .meta = "LIST", .type = CLI_PARSE, CLI_AT(A, optims),
     .parse = parse_optimizers, .dflt = "adam,sgd",
     .help = "adam (lr 1e-3), sgd (lr 0.01, momentum 0.9)"},
    {.name = "remedies", .meta = "LIST", .type = CLI_PARSE, CLI_AT(A, remedies),
     .parse = parse_remedies, .dflt = REMEDY_LIST, .hide_default = true,
     .help = "off, gra, relu_he (relu + He init), bn (batch norm), residual (skip connections), "
             "maxnorm (max-norm 3), clip (global gradient norm 1), agc (adaptive clipping 0.01), "
             "aux (3 auxiliary heads, weight 0.3 decaying to 0), prune (train, prune half of each "
             "layer's weights, fine-tune one more epoch); default all"},
    {.name = "epochs", .meta = "N", .type = CLI_INT, CLI_AT(A, epochs), .lo = 1, .hi = 1000,
     .dflt = "1", .help = "epochs per run"},
    {.name = "seeds", .meta = "N", .type = CLI_INT, CLI_AT(A, seeds), .lo = 1, .hi = 100, .dflt = "1",
     .help = "seeds per cell; the tables show the mean and spread"},
    {.name = "first-seed", .meta = "N", .type = CLI_INT, CLI_AT(A, first_seed), .lo = 1, .hi = 1 << 30,
     .dflt = "1", .help = "the first seed: seeds N..N+seeds-1"},
    {.name = "model-family", .meta = "NAME", .type = CLI_TEXT, CLI_AT(A, family), .dflt = "mlp",
     .help = "mlp (plain MLPs) or cnn (plain CNNs: plaincnn, 3x3 convolutions, two of stride 2, "
             "global average pooling; the residual remedy has no plain-CNN form)"},
    {.name = "width", .meta = "N", .type = CLI_INT, CLI_AT(A, width), .lo = 1, .hi = 65536,
     .help = "hidden width, or a CNN's channels (default 128 for mlp, 16 for cnn)"},
    {.name = "limit", .meta = "N", .type = CLI_INT, CLI_AT(A, limit), .lo = 128, .hi = 1 << 30,
     .help = "train on the first N images only (default: all)"},
    {.name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(A, data), .dflt = "fashion-mnist",
     .help = "dataset, with a test split"},
    {.name = "json", .meta = "FILE", .type = CLI_TEXT, CLI_AT(A, json),
     .help = "also write every run as JSON"},
    {.name = "report", .meta = "FILE.html", .type = CLI_TEXT, CLI_AT(A, report),
     .help = "an HTML report: the table and a bar chart per cell (the runs go to FILE.html.json "
             "unless --json names a file)"},
    {.table = cli_threads_options, CLI_AT(A, threads)},
    {.table = cli_device_options, CLI_AT(A, device)},
    {.table = cli_precision_options, CLI_AT(A, precision)},
    CLI_END,
};
#undef A

static const cli_command experiment_command = {
    .name = "experiment", .usage = "[options]",
    .about = "Train plain deep MLPs (width 128, PyTorch's default init), or plain CNNs, with GRA "
             "off, GRA on and the classic remedies, and print test accuracy and the "
             "first-to-last layer gradient-norm ratio.",
    .options = experiment_options};

typedef struct run_result {
    double acc, ratio, seconds;
    long repairs;
    bool failed;
} run_result;

static void count_repair(void *user, const rg_repair_event *e) {
    (void)e;
    ++*(long *)user;
}

/* One training run with one remedy; ratio is |dW first| / |dW last| on 128 test images
 * after training. */
static rg_status run_one(const char *spec, const char *remedy, const char *optim, int epochs, uint64_t seed,
                         const char *device, const char *precision, const rg_dataset *train,
                         const rg_dataset *test, run_result *r) {
    const bool repair = !strcmp(remedy, "gra");
    rg_model m;
    rg_status s = rg_model_build(spec, &(rg_model_opts){.c = train->c, .h = train->h, .w = train->w, .classes = train->classes, .seed = seed}, &m);
    if (s) return s;
    if ((!strcmp(remedy, "aux") && (s = rg_model_add_aux_heads(&m, EXP_AUX))) ||
        (s = cli_place(m.graph, device, precision)) || (s = rg_graph_compile(m.graph, 128))) {
        rg_model_free(&m);
        return s;
    }
    rg_fit_config fc = {.epochs = epochs, .batch = 128, .seed = seed, .repair = repair};
    if (!strcmp(remedy, "maxnorm")) fc.max_norm = EXP_MAX_NORM;
    if (!strcmp(remedy, "clip")) fc.clip_norm = EXP_CLIP_NORM;
    if (!strcmp(remedy, "agc")) fc.agc = EXP_AGC;
    rg_model_set_aux_weight(&m, EXP_AUX_WEIGHT);
    rg_schedule_parse("constant", &fc.schedule);
    if (strcmp(optim, "adam") == 0) {
        fc.optim = rg_optim_defaults(RG_OPTIM_ADAM);
    } else {
        fc.optim = rg_optim_defaults(RG_OPTIM_SGD);
        fc.optim.lr = 0.01f, fc.optim.momentum = 0.9f;
    }
    long repairs = 0;
    rg_fit_callbacks cb = {.on_repair = count_repair, .user = &repairs};
    const double w0 = rg_seconds();
    s = rg_fit(&m, train, &fc, &cb);
    if (!s && !strcmp(remedy, "prune")) { /* prune, then fine-tune one epoch */
        rg_prune_opts po = {.amount = EXP_PRUNE, .norm = 2};
        s = rg_prune(&m, &po, NULL);
        fc.epochs = 1, fc.seed = seed + 1000;
        if (!s) s = rg_fit(&m, train, &fc, &cb);
    }
    if (s == RG_ERR_STATE || s == RG_ERR_ARG) { /* refused (GRA where an op has no tangent on the device) */
        rg_model_free(&m);
        return s;
    }
    r->failed = s != RG_OK; /* a run that blows up scores as it is: not an error */
    double loss;
    r->acc = NAN, r->ratio = NAN;
    if (!r->failed) rg_evaluate(&m, test, NULL, test->n, &loss, &r->acc);
    if (!r->failed) {
        rg_monitor *mon = rg_monitor_create(m.graph);
        if (mon) {
            int idx[128];
            for (int i = 0; i < 128; i++) idx[i] = i;
            rg_dataset_batch(test, idx, 128, rg_graph_input_buffer(m.graph, m.input), rg_graph_labels(m.graph));
            rg_monitor_enable(mon, 1);
            if (rg_graph_forward(m.graph, 128, 1) == RG_OK && rg_graph_backward(m.graph, m.loss) == RG_OK) {
                /* against the classifier (auxiliary heads come after it and get no gradient here) */
                int last = rg_monitor_layer_count(mon) - 1;
                for (int i = 0; i <= last; i++)
                    if (!strcmp(rg_monitor_layer(mon, i)->name, rg_node_name(m.graph, m.logits))) last = i;
                r->ratio = rg_monitor_layer(mon, 0)->grad_norm / rg_monitor_layer(mon, last)->grad_norm;
            }
            rg_monitor_free(mon);
        }
    }
    r->seconds = rg_seconds() - w0;
    r->repairs = repairs;
    rg_model_free(&m);
    return RG_OK;
}

/* The model of one run: the family's plain network, or the remedy's variant of it; false
 * when the remedy has no form in the family. */
static bool spec_for(char *buf, size_t len, bool cnn, const char *remedy, int depth, int width,
                     const char *act) {
    const char *family = cnn ? "plaincnn" : "mlp";
    if (!strcmp(remedy, "relu_he"))
        snprintf(buf, len, "%s:depth=%d,width=%d,act=relu,init=he", family, depth, width);
    else if (cnn && !strcmp(remedy, "residual"))
        return false;
    else if (!strcmp(remedy, "bn")) snprintf(buf, len, "%s:depth=%d,width=%d,act=%s,init=torch,bn=1", family, depth, width, act);
    else if (!strcmp(remedy, "residual")) snprintf(buf, len, "mlp:depth=%d,width=%d,act=%s,init=torch,residual=1", depth, width, act);
    else snprintf(buf, len, "%s:depth=%d,width=%d,act=%s,init=torch", family, depth, width, act);
    return true;
}

/* "0.812" or "0.812±0.004" */
static void cell_text(char *buf, size_t len, const double *v, int n, const char *fmt) {
    double s = 0, s2 = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], s2 += v[i] * v[i], k++;
    if (!k) {
        snprintf(buf, len, "failed");
        return;
    }
    const double mean = s / k, sd = k > 1 ? sqrt(fmax(s2 / k - mean * mean, 0)) : 0;
    int used = snprintf(buf, len, fmt, mean);
    if (k > 1 && used < (int)len) {
        snprintf(buf + used, len - (size_t)used, "±");
        used = (int)strlen(buf);
        snprintf(buf + used, len - (size_t)used, fmt, sd);
    }
}

/* The two tables: accuracy and gradient-norm ratio, a row per cell, a column per remedy. */
static void print_tables(const experiment_args *a, const double *acc, const double *ratio) {
    const int seeds = (int)a->seeds;
    for (int table = 0; table < 2; table++) {
        printf("\n%s\n", table == 0 ? "Test accuracy after training (mean±std over seeds)"
                                    : "First-to-last layer gradient-norm ratio after training");
        printf("%-6s %-8s %-5s", "depth", "act", "opt");
        for (int ri = 0; ri < a->remedies.n; ri++) printf(" %16s", a->remedies.item[ri]);
        printf("\n");
        int k = 0;
        for (int di = 0; di < a->depths.n; di++)
            for (int ai = 0; ai < a->acts.n; ai++)
                for (int oi = 0; oi < a->optims.n; oi++) {
                    printf("%-6s %-8s %-5s", a->depths.item[di], a->acts.item[ai], a->optims.item[oi]);
                    for (int ri = 0; ri < a->remedies.n; ri++, k += seeds) {
                        char text[48];
                        cell_text(text, sizeof text, (table == 0 ? acc : ratio) + k, seeds,
                                  table == 0 ? "%.3f" : "%.2g");
                        printf(" %16s", text);
                    }
                    printf("\n");
                }
    }
}

int cmd_experiment(int argc, char **argv) {
    const char *cmd = "experiment";
    char report_json[4200];
    experiment_args a = {0};
    cli_defaults(&experiment_command, &a);
    const int parsed = cli_parse(&experiment_command, argc, argv, &a, NULL);
    if (parsed >= 0) return parsed;
    const bool cnn = !strcmp(a.family, "cnn");
    if (!cnn && strcmp(a.family, "mlp")) {
        cli_error(cmd, "--model-family '%s': give mlp or cnn", a.family);
        return EXIT_USAGE;
    }
    char probe[160];
    for (int ri = 0; ri < a.remedies.n; ri++) /* residual: no plain CNN form */
        if (!spec_for(probe, sizeof probe, cnn, a.remedies.item[ri], 1, 1, "sigmoid")) {
            printf("(remedy %s has no plain-CNN form: left out)\n", a.remedies.item[ri]);
            memmove(a.remedies.item[ri], a.remedies.item[ri + 1], (size_t)(a.remedies.n - ri - 1) * sizeof *a.remedies.item);
            a.remedies.n--, ri--;
        }
    if (!a.remedies.n) {
        cli_error(cmd, "no remedy left for --model-family cnn: choose from off,gra,relu_he,bn,maxnorm,"
                       "clip,agc,aux,prune");
        return EXIT_USAGE;
    }
    const list depths = a.depths, acts = a.acts, optims = a.optims, remedies = a.remedies;
    const long epochs = a.epochs, seeds = a.seeds, width = a.width ? a.width : cnn ? 16 : 128, limit = a.limit;
    const long first_seed = a.first_seed;
    const char *data = a.data, *json_path = a.json, *report = a.report;
    if (report && !json_path) {
        snprintf(report_json, sizeof report_json, "%s.json", report);
        json_path = report_json;
    }
    rg_set_threads((int)a.threads);
    const int ready = cli_device(cmd, a.device);
    if (ready >= 0) return ready;
    rg_dataset *train = NULL, *test = NULL;
    rg_status s = rg_dataset_open(data, &(rg_data_options){.limit = (int)limit}, &train, &test);
    if (s) return cli_fail(cmd, s);
    if (!test) {
        rg_dataset_free(train);
        cli_error(cmd, "data '%s' has no test split: give idx:IMAGES,LABELS,TEST_IMAGES,TEST_LABELS", data);
        return EXIT_USAGE;
    }
    FILE *jf = NULL;
    if (json_path && !(jf = fopen(json_path, "w"))) {
        cli_error(cmd, "cannot write '%s'", json_path);
        rg_dataset_free(train);
        rg_dataset_free(test);
        return EXIT_RUNTIME;
    }
    const int cells = depths.n * acts.n * optims.n, runs = cells * remedies.n * (int)seeds;
    double *acc = malloc((size_t)runs * sizeof *acc), *ratio = malloc((size_t)runs * sizeof *ratio);
    if (!acc || !ratio) {
        free(acc);
        free(ratio);
        rg_dataset_free(train);
        rg_dataset_free(test);
        if (jf) fclose(jf);
        cli_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    printf("regrad experiment: %d cells x %d remedies x %ld seeds = %d runs, %ld epoch(s) of %d "
           "images each\n", cells, remedies.n, seeds, runs, epochs, train->n);
    if (jf) fprintf(jf, "[\n");
    int done_runs = 0;
    double elapsed = 0;
    for (int di = 0; di < depths.n; di++)
        for (int ai = 0; ai < acts.n; ai++)
            for (int oi = 0; oi < optims.n; oi++)
                for (int ri = 0; ri < remedies.n; ri++)
                    for (int si = 0; si < seeds; si++) {
                        const int depth = atoi(depths.item[di]);
                        char spec[160];
                        spec_for(spec, sizeof spec, cnn, remedies.item[ri], depth, (int)width, acts.item[ai]);
                        run_result r;
                        s = run_one(spec, remedies.item[ri], optims.item[oi], (int)epochs,
                                    (uint64_t)(first_seed + si), a.device, a.precision, train, test, &r);
                        if (s) {
                            cli_fail(cmd, s);
                            goto out;
                        }
                        acc[done_runs] = r.acc, ratio[done_runs] = r.ratio;
                        done_runs++;
                        elapsed += r.seconds;
                        fprintf(stderr, "\r\033[K[%d/%d] %s %s %s seed %d: acc %.3f  (ETA %.0fs)",
                                done_runs, runs, spec, optims.item[oi], remedies.item[ri], (int)(first_seed + si),
                                r.acc, elapsed / done_runs * (runs - done_runs));
                        if (jf)
                            fprintf(jf, "%s{\"depth\":%d,\"act\":\"%s\",\"optimizer\":\"%s\","
                                        "\"remedy\":\"%s\",\"seed\":%d,\"spec\":\"%s\","
                                        "\"test_acc\":%.4f,\"grad_ratio\":%.4g,\"repairs\":%ld,"
                                        "\"failed\":%s,\"seconds\":%.2f}",
                                    done_runs > 1 ? ",\n" : "", depth, acts.item[ai],
                                    optims.item[oi], remedies.item[ri], (int)(first_seed + si), spec,
                                    isfinite(r.acc) ? r.acc : -1, isfinite(r.ratio) ? r.ratio : -1,
                                    r.repairs, r.failed ? "true" : "false", r.seconds);
                    }
    fprintf(stderr, "\r\033[K");
    print_tables(&a, acc, ratio);
out:
    if (jf) {
        fprintf(jf, "\n]\n");
        fclose(jf);
    }
    if (report && !s) {
        int rc = cli_write_report(cmd, json_path, report, "regrad experiment");
        if (rc) {
            free(acc), free(ratio);
            rg_dataset_free(train), rg_dataset_free(test);
            return rc;
        }
        printf("report: %s\n", report);
    }
    free(acc);
    free(ratio);
    rg_dataset_free(train);
    rg_dataset_free(test);
    return s ? cli_exit_code(s) : 0;
}
