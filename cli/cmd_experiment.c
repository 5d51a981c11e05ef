/*
 * cmd_experiment.c — `regrad experiment`: the experiment behind GRA.  Plain MLPs (width
 * 128, PyTorch's default init) of several depths and activations, trained with each
 * optimizer with GRA off, with GRA on, and with each classic remedy, over several seeds;
 * prints test accuracy and the first-to-last layer gradient-norm ratio as tables.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const experiment_help =
    "Usage: regrad experiment [options]\n"
    "Train plain deep MLPs (width 128, PyTorch's default init) with GRA off, GRA on and the\n"
    "classic remedies, and print test accuracy and first-to-last layer gradient-norm ratio.\n"
    "\n"
    "  --depths LIST      hidden layers, e.g. 10,20,30 (default)\n"
    "  --acts LIST        sigmoid,tanh (default); any activation\n"
    "  --optimizers LIST  adam (lr 1e-3), sgd (lr 0.01, momentum 0.9); default both\n"
    "  --remedies LIST    off, gra, relu_he (relu + He init), bn (batch norm),\n"
    "                     residual (skip connections), maxnorm (max-norm 3), clip\n"
    "                     (global gradient norm 1), agc (adaptive clipping 0.01), aux (3\n"
    "                     auxiliary heads, weight 0.3 decaying to 0), prune\n"
    "                     (train, prune half of each layer's weights, fine-tune one\n"
    "                     more epoch); default all\n"
    "  --epochs N         epochs per run (default 1)\n"
    "  --seeds N          seeds per cell; the tables show the mean and spread (default 1)\n"
    "  --first-seed N     the first seed (default 1): seeds N..N+seeds-1\n"
    "  --width N          hidden width (default 128)\n"
    "  --limit N          train on the first N images only (default: all)\n"
    "  --data SPEC        dataset (default fashion-mnist)\n"
    "  --json FILE        also write every run as JSON\n"
    "  --report FILE      an HTML report: the table and a bar chart per cell (the runs go\n"
    "                     to FILE.json unless --json names a file)\n"
    "  --threads N        threads (default: all cores)\n"
    "  -h, --help         show this help\n";

enum { OPT_DEPTHS = 256, OPT_ACTS, OPT_OPTIMS, OPT_REMEDIES, OPT_EPOCHS, OPT_SEEDS, OPT_WIDTH,
       OPT_LIMIT, OPT_DATA, OPT_JSON, OPT_THREADS, OPT_FIRST_SEED, OPT_REPORT };

static const struct option experiment_opts[] = {
    {"depths", required_argument, 0, OPT_DEPTHS},     {"acts", required_argument, 0, OPT_ACTS},
    {"optimizers", required_argument, 0, OPT_OPTIMS}, {"remedies", required_argument, 0, OPT_REMEDIES},
    {"epochs", required_argument, 0, OPT_EPOCHS},     {"seeds", required_argument, 0, OPT_SEEDS},
    {"width", required_argument, 0, OPT_WIDTH},       {"limit", required_argument, 0, OPT_LIMIT},
    {"data", required_argument, 0, OPT_DATA},         {"json", required_argument, 0, OPT_JSON},
    {"threads", required_argument, 0, OPT_THREADS},   {"first-seed", required_argument, 0, OPT_FIRST_SEED},
    {"report", required_argument, 0, OPT_REPORT},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

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
static rg_status run_one(const char *spec, const char *remedy, const char *optim, int epochs,
                         uint64_t seed, const rg_dataset *train, const rg_dataset *test,
                         run_result *r) {
    const bool repair = !strcmp(remedy, "gra");
    rg_model m;
    rg_status s = rg_model_build(spec, &(rg_model_opts){.c = train->c, .h = train->h, .w = train->w, .classes = train->classes, .seed = seed}, &m);
    if (s) return s;
    if ((!strcmp(remedy, "aux") && (s = rg_model_add_aux_heads(&m, EXP_AUX))) ||
        (s = rg_graph_compile(m.graph, 128))) {
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
            rg_graph_forward(m.graph, 128, 1);
            rg_graph_backward(m.graph, m.loss);
            /* against the classifier (auxiliary heads come after it and get no gradient here) */
            int last = rg_monitor_layer_count(mon) - 1;
            for (int i = 0; i <= last; i++)
                if (!strcmp(rg_monitor_layer(mon, i)->name, rg_node_name(m.graph, m.logits))) last = i;
            r->ratio = rg_monitor_layer(mon, 0)->grad_norm / rg_monitor_layer(mon, last)->grad_norm;
            rg_monitor_free(mon);
        }
    }
    r->seconds = rg_seconds() - w0;
    r->repairs = repairs;
    rg_model_free(&m);
    return RG_OK;
}

static void spec_for(char *buf, size_t len, const char *remedy, int depth, int width, const char *act) {
    if (!strcmp(remedy, "relu_he")) snprintf(buf, len, "mlp:depth=%d,width=%d,act=relu,init=he", depth, width);
    else if (!strcmp(remedy, "bn")) snprintf(buf, len, "mlp:depth=%d,width=%d,act=%s,init=torch,bn=1", depth, width, act);
    else if (!strcmp(remedy, "residual")) snprintf(buf, len, "mlp:depth=%d,width=%d,act=%s,init=torch,residual=1", depth, width, act);
    else snprintf(buf, len, "mlp:depth=%d,width=%d,act=%s,init=torch", depth, width, act);
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

int cmd_experiment(int argc, char **argv) {
    const char *cmd = "experiment", *data = "fashion-mnist", *json_path = NULL, *report = NULL;
    char report_json[4200];
    list depths, acts, optims, remedies;
    split(cmd, "depths", "10,20,30", &depths);
    split(cmd, "acts", "sigmoid,tanh", &acts);
    split(cmd, "optimizers", "adam,sgd", &optims);
    split(cmd, "remedies", REMEDY_LIST, &remedies);
    long epochs = 1, seeds = 1, width = 128, limit = 0, threads = 0, first_seed = 1;
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", experiment_opts)) != -1) {
        bool ok = true;
        switch (c) {
        case 'h': fputs(experiment_help, stdout); return 0;
        case OPT_DEPTHS: ok = split(cmd, "depths", optarg, &depths); break;
        case OPT_ACTS: ok = split(cmd, "acts", optarg, &acts); break;
        case OPT_OPTIMS: ok = split(cmd, "optimizers", optarg, &optims); break;
        case OPT_REMEDIES: ok = split(cmd, "remedies", optarg, &remedies); break;
        case OPT_EPOCHS: ok = cli_int(cmd, "epochs", optarg, 1, 1000, &epochs); break;
        case OPT_SEEDS: ok = cli_int(cmd, "seeds", optarg, 1, 100, &seeds); break;
        case OPT_WIDTH: ok = cli_int(cmd, "width", optarg, 1, 65536, &width); break;
        case OPT_LIMIT: ok = cli_int(cmd, "limit", optarg, 128, 1L << 30, &limit); break;
        case OPT_DATA: data = optarg; break;
        case OPT_JSON: json_path = optarg; break;
        case OPT_REPORT: report = optarg; break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &threads); break;
        case OPT_FIRST_SEED: ok = cli_int(cmd, "first-seed", optarg, 1, 1L << 30, &first_seed); break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad experiment --help'", argv[optind]);
        return EXIT_USAGE;
    }
    /* Validate every list before any training. */
    for (int i = 0; i < depths.n; i++) {
        long d;
        if (!cli_int(cmd, "depths", depths.item[i], 1, 1000, &d)) return EXIT_USAGE;
    }
    for (int i = 0; i < acts.n; i++) {
        rg_act a;
        rg_status s = rg_act_parse(acts.item[i], &a);
        if (s) return cli_fail(cmd, s);
    }
    for (int i = 0; i < optims.n; i++)
        if (strcmp(optims.item[i], "adam") && strcmp(optims.item[i], "sgd")) {
            cli_error(cmd, "--optimizers: '%s' is not adam or sgd", optims.item[i]);
            return EXIT_USAGE;
        }
    list known_remedies;
    split(cmd, "remedies", REMEDY_LIST, &known_remedies);
    for (int i = 0; i < remedies.n; i++) {
        bool known = false;
        for (int k = 0; k < known_remedies.n; k++) known |= !strcmp(remedies.item[i], known_remedies.item[k]);
        if (!known) {
            cli_error(cmd, "--remedies: unknown remedy '%s' (%s)", remedies.item[i], REMEDY_LIST);
            return EXIT_USAGE;
        }
    }
    if (report && !json_path) {
        snprintf(report_json, sizeof report_json, "%s.json", report);
        json_path = report_json;
    }
    rg_set_threads((int)threads);
    rg_dataset *train = NULL, *test = NULL;
    rg_status s = rg_dataset_open(data, NULL, &train, &test);
    if (s) return cli_fail(cmd, s);
    if (!test) {
        rg_dataset_free(train);
        cli_error(cmd, "data '%s' has no test split: give idx:IMAGES,LABELS,TEST_IMAGES,TEST_LABELS", data);
        return EXIT_USAGE;
    }
    if (limit > 0 && limit < train->n) train->n = (int)limit;
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
                        spec_for(spec, sizeof spec, remedies.item[ri], depth, (int)width, acts.item[ai]);
                        run_result r;
                        s = run_one(spec, remedies.item[ri], optims.item[oi],
                                    (int)epochs, (uint64_t)(first_seed + si), train, test, &r);
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
    for (int table = 0; table < 2; table++) {
        printf("\n%s\n", table == 0 ? "Test accuracy after training (mean±std over seeds)"
                                    : "First-to-last layer gradient-norm ratio after training");
        printf("%-6s %-8s %-5s", "depth", "act", "opt");
        for (int ri = 0; ri < remedies.n; ri++) printf(" %16s", remedies.item[ri]);
        printf("\n");
        int k = 0;
        for (int di = 0; di < depths.n; di++)
            for (int ai = 0; ai < acts.n; ai++)
                for (int oi = 0; oi < optims.n; oi++) {
                    printf("%-6s %-8s %-5s", depths.item[di], acts.item[ai], optims.item[oi]);
                    for (int ri = 0; ri < remedies.n; ri++, k += (int)seeds) {
                        char text[48];
                        cell_text(text, sizeof text, (table == 0 ? acc : ratio) + k, (int)seeds,
                                  table == 0 ? "%.3f" : "%.2g");
                        printf(" %16s", text);
                    }
                    printf("\n");
                }
    }
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
