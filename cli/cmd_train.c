/*
 * cmd_train.c — `regrad train`: builds a model from a spec, trains it on a dataset, shows
 * progress, writes JSON-lines metrics, and evaluates the test split at the end.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const train_help =
    "Usage: regrad train [options]\n"
    "Train a model and evaluate it on the test split.\n"
    "\n"
    "Data and model\n"
    "  --data SPEC           fashion-mnist (default), fashion-mnist:DIR, idx:IMAGES,LABELS,\n"
    "                        idx:IMAGES,LABELS,TEST_IMAGES,TEST_LABELS, or a folder DIR with\n"
    "                        one subfolder of JPEG/PNG images per class\n"
    "  --test-data DIR       a separate test folder (same class folders)\n"
    "  --limit N             train on the first N training samples only\n"
    CLI_DATA_HELP
    "  --augment LIST        training only: flip, crop=P, resized-crop, rotate=DEG,\n"
    "                        noise=STD, brightness=F, contrast=F (comma-separated)\n"
    "  --workers N           loader threads for image files and augmentation\n"
    "                        (default: half of --threads, at least 1)\n"
    "  --model SPEC          a model and its options (default mlp):\n"
    "                          mlp:depth=D,width=W,act=A,init=I,dropout=P,bn=0|1,residual=0|1\n"
    "                          cnn  plaincnn:depth=D,width=C,act=A,init=I\n"
    "                          resnet20v2 resnet56v2 plain20 plain56\n"
    "                          resnet18v2 resnet50v2 resnet101v2 densenet121\n"
    "                          densenet:depth=D,growth=K\n"
    "                        all take classes=N, input=CxHxW, top=0|1\n"
    "  --loss NAME           xent (softmax cross-entropy, default) or mse\n"
    "  --label-smoothing F   cross-entropy label smoothing in [0, 1) (default 0)\n"
    "\n"
    "Optimisation\n"
    "  --epochs N            passes over the training data (default 1)\n"
    "  --batch N             samples per step (default 128)\n"
    "  --optimizer NAME      sgd, momentum, nesterov, adagrad, rmsprop, adam (default), adamw\n"
    "  --lr F                learning rate (default: the optimizer's PyTorch default)\n"
    "  --momentum F          momentum for sgd/momentum/nesterov/rmsprop\n"
    "  --weight-decay F      L2 penalty (decoupled for adamw; default 0, adamw 0.01)\n"
    "  --schedule S          constant (default), step:EPOCHS:GAMMA, cosine[:MIN_LR],\n"
    "                        each optionally followed by ,warmup:STEPS\n"
    "  --val-split F         hold out this fraction (tail of a seeded permutation), [0, 1)\n"
    "  --seed N              seed for initialisation, dropout and data order (default 42)\n"
    "\n"
    "Gradient health\n"
    "  --repair MODE         auto (default): GRA probes the network, re-conditions unhealthy\n"
    "                        layers and repairs gradients every step; off: plain training\n"
    "  --monitor-every N     write per-layer gradient health to --metrics every N steps\n"
    "\n"
    "Running\n"
    "  --threads N           threads for OpenMP and the BLAS (default: all cores)\n"
    "  --metrics FILE        write JSON lines: one per epoch, one at the end\n"
    "  --quiet               print only the final result\n"
    "  -h, --help            show this help\n";

enum {
    OPT_DATA = 256, OPT_LIMIT, OPT_MODEL, OPT_LOSS, OPT_SMOOTH, OPT_EPOCHS, OPT_BATCH, OPT_OPTIM,
    OPT_LR, OPT_MOMENTUM, OPT_WD, OPT_SCHEDULE, OPT_VAL, OPT_SEED, OPT_THREADS, OPT_METRICS,
    OPT_QUIET, OPT_REPAIR, OPT_MONITOR, OPT_TEST_DATA, OPT_AUGMENT, OPT_WORKERS
};

static const struct option train_opts[] = {
    {"data", required_argument, 0, OPT_DATA},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"model", required_argument, 0, OPT_MODEL},
    {"loss", required_argument, 0, OPT_LOSS},
    {"label-smoothing", required_argument, 0, OPT_SMOOTH},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"optimizer", required_argument, 0, OPT_OPTIM},
    {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"val-split", required_argument, 0, OPT_VAL},
    {"seed", required_argument, 0, OPT_SEED},
    {"threads", required_argument, 0, OPT_THREADS},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"repair", required_argument, 0, OPT_REPAIR},
    {"monitor-every", required_argument, 0, OPT_MONITOR},
    {"test-data", required_argument, 0, OPT_TEST_DATA},
    {"augment", required_argument, 0, OPT_AUGMENT},
    {"workers", required_argument, 0, OPT_WORKERS},
    CLI_DATA_OPTIONS,
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

typedef struct progress {
    bool tty, quiet, repair;
    FILE *metrics;
    double last_draw;
} progress;

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fmt_eta(double s, char *buf, size_t len) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

static void on_batch(void *user, int epoch, int batch, int batches, double loss, double acc,
                     double ips, double eta) {
    progress *p = user;
    if (!p->tty || p->quiet) return;
    double t = wall();
    if (batch != batches && t - p->last_draw < 0.2) return;
    p->last_draw = t;
    char e[32];
    fmt_eta(eta, e, sizeof e);
    fprintf(stderr, "\r\033[Kepoch %d  batch %d/%d  loss %.4f  acc %.4f  %.0f img/s  ETA %s",
            epoch, batch, batches, loss, acc, ips, e);
    fflush(stderr);
}


static void on_epoch(void *user, const rg_epoch_stats *s) {
    progress *p = user;
    if (p->tty && !p->quiet) fprintf(stderr, "\r\033[K");
    if (!p->quiet) {
        printf("epoch %d  loss %.4f  acc %.4f", s->epoch, s->loss, s->acc);
        if (isfinite(s->val_loss)) printf("  val_loss %.4f  val_acc %.4f", s->val_loss, s->val_acc);
        printf("  %.1fs  %.0f img/s", s->seconds, s->images_per_sec);
        if (p->repair) printf("  GRA %ld", s->repairs);
        if (s->skipped) printf("  skipped %ld", s->skipped);
        printf("\n");
        fflush(stdout);
    }
    if (p->metrics) {
        fprintf(p->metrics, "{\"event\":\"epoch\",\"epoch\":%d,", s->epoch);
        cli_json_num(p->metrics, "loss", s->loss, false);
        cli_json_num(p->metrics, "acc", s->acc, false);
        cli_json_num(p->metrics, "val_loss", s->val_loss, false);
        cli_json_num(p->metrics, "val_acc", s->val_acc, false);
        cli_json_num(p->metrics, "lr", s->lr, false);
        cli_json_num(p->metrics, "seconds", s->seconds, false);
        cli_json_num(p->metrics, "images_per_sec", s->images_per_sec, false);
        fprintf(p->metrics, "\"repairs\":%ld,\"skipped\":%ld}\n", s->repairs, s->skipped);
        fflush(p->metrics);
    }
}

/* A JSON string: names here are the zoo's, but escape quotes and backslashes anyway. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

static void on_repair(void *user, const rg_repair_event *e) {
    progress *p = user;
    if (!p->metrics) return;
    fprintf(p->metrics, "{\"event\":\"repair\",\"step\":%ld,\"layer\":", e->step);
    json_str(p->metrics, e->layer);
    fprintf(p->metrics, ",\"verdict\":\"%s\",\"action\":\"%s\",", e->verdict, e->action);
    cli_json_num(p->metrics, "factor", e->factor, true);
    fprintf(p->metrics, "}\n");
}

/* {"event":"health","step":S,"layers":[{"layer":..,"grad_norm":..,...},...]} */
static void on_health(void *user, long step, const rg_monitor *mon) {
    progress *p = user;
    if (!p->metrics) return;
    fprintf(p->metrics, "{\"event\":\"health\",\"step\":%ld,\"layers\":[", step);
    for (int i = 0; i < rg_monitor_layer_count(mon); i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        fprintf(p->metrics, "%s{\"layer\":", i ? "," : "");
        json_str(p->metrics, h->name);
        fprintf(p->metrics, ",");
        cli_json_num(p->metrics, "grad_norm", h->grad_norm, false);
        cli_json_num(p->metrics, "weight_norm", h->weight_norm, false);
        cli_json_num(p->metrics, "grad_ratio", h->grad_ratio, false);
        cli_json_num(p->metrics, "update_ratio", h->update_ratio, false);
        cli_json_num(p->metrics, "grad_rms", h->grad_rms, false);
        cli_json_num(p->metrics, "backward_gain", h->backward_gain, false);
        cli_json_num(p->metrics, "pre_mean", h->pre_mean, false);
        cli_json_num(p->metrics, "pre_std", h->pre_std, false);
        cli_json_num(p->metrics, "act_mean", h->act_mean, false);
        cli_json_num(p->metrics, "act_std", h->act_std, false);
        cli_json_num(p->metrics, "saturated", h->saturated, false);
        cli_json_num(p->metrics, "dead", h->dead, false);
        fprintf(p->metrics, "\"nonfinite\":%ld,\"verdict\":\"%s\"}", h->nonfinite,
                rg_verdict_name(h->verdict));
    }
    fprintf(p->metrics, "]}\n");
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    const char *data = "fashion-mnist", *model_spec = "mlp", *metrics_path = NULL;
    const char *optim_name = "adam", *schedule_text = "constant", *test_data = NULL;
    const char *augment_text = "none";
    long limit = 0, epochs = 1, batch = 128, seed = 42, threads = 0, monitor_every = 0;
    long workers = 0;
    rg_data_options dopt = {.warn = cli_warn};
    double lr = NAN, momentum = NAN, wd = NAN, val_split = 0, smoothing = 0;
    rg_loss_kind loss = RG_LOSS_XENT;
    progress prog = {.tty = isatty(2), .repair = true};
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", train_opts)) != -1) {
        bool ok = true;
        int handled = cli_data_option(cmd, c, optarg, &dopt);
        if (handled < 0) return EXIT_USAGE;
        if (handled) continue;
        switch (c) {
        case 'h': fputs(train_help, stdout); return 0;
        case OPT_DATA: data = optarg; break;
        case OPT_TEST_DATA: test_data = optarg; break;
        case OPT_AUGMENT: augment_text = optarg; break;
        case OPT_WORKERS: ok = cli_int(cmd, "workers", optarg, 1, 256, &workers); break;
        case OPT_LIMIT: ok = cli_int(cmd, "limit", optarg, 1, 1L << 30, &limit); break;
        case OPT_MODEL: model_spec = optarg; break;
        case OPT_LOSS:
            if (strcmp(optarg, "xent") == 0) loss = RG_LOSS_XENT;
            else if (strcmp(optarg, "mse") == 0) loss = RG_LOSS_MSE;
            else cli_error(cmd, "--loss '%s': use xent or mse", optarg), ok = false;
            break;
        case OPT_SMOOTH: ok = cli_float(cmd, "label-smoothing", optarg, 0, 0.999, false, &smoothing); break;
        case OPT_EPOCHS: ok = cli_int(cmd, "epochs", optarg, 1, 100000, &epochs); break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 1, 65536, &batch); break;
        case OPT_OPTIM: optim_name = optarg; break;
        case OPT_LR: ok = cli_float(cmd, "lr", optarg, 0, 1e6, true, &lr); break;
        case OPT_MOMENTUM: ok = cli_float(cmd, "momentum", optarg, 0, 0.999999, false, &momentum); break;
        case OPT_WD: ok = cli_float(cmd, "weight-decay", optarg, 0, 1e6, false, &wd); break;
        case OPT_SCHEDULE: schedule_text = optarg; break;
        case OPT_VAL: ok = cli_float(cmd, "val-split", optarg, 0, 0.99, false, &val_split); break;
        case OPT_SEED: ok = cli_int(cmd, "seed", optarg, 0, 0x7fffffffffffffffL, &seed); break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &threads); break;
        case OPT_METRICS: metrics_path = optarg; break;
        case OPT_QUIET: prog.quiet = true; break;
        case OPT_REPAIR:
            if (strcmp(optarg, "auto") == 0) prog.repair = true;
            else if (strcmp(optarg, "off") == 0) prog.repair = false;
            else cli_error(cmd, "--repair '%s': use auto or off", optarg), ok = false;
            break;
        case OPT_MONITOR: ok = cli_int(cmd, "monitor-every", optarg, 1, 1L << 30, &monitor_every); break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad train --help'", argv[optind]);
        return EXIT_USAGE;
    }

    /* Validate every cheap argument before reading any data. */
    rg_optim_kind kind;
    rg_schedule schedule;
    rg_augment augment;
    rg_status s;
    if ((s = rg_optim_parse(optim_name, &kind)) || (s = rg_schedule_parse(schedule_text, &schedule)) ||
        (s = rg_augment_parse(augment_text, &augment)))
        return cli_fail(cmd, s);
    rg_optim_config oc = rg_optim_defaults(kind);
    if (!isnan(lr)) oc.lr = (float)lr;
    if (!isnan(momentum)) oc.momentum = (float)momentum;
    if (!isnan(wd)) oc.weight_decay = (float)wd;
    if ((s = rg_optim_check(&oc))) return cli_fail(cmd, s);
    rg_model probe; /* catches spec errors before any data is read */
    if ((s = rg_model_build(model_spec, 0, 0, 0, 0, loss, (float)smoothing, 0, &probe)))
        return cli_fail(cmd, s);
    rg_model_free(&probe);

    rg_set_threads((int)threads);
    rg_dataset *train = NULL, *test = NULL;
    if ((s = rg_dataset_open(data, &dopt, &train, &test))) return cli_fail(cmd, s);
    int code = 0;
    rg_model m = {0};
    if (test_data) {
        rg_dataset_free(test);
        if ((s = rg_dataset_open(test_data, &dopt, &test, NULL)) ||
            (s = rg_dataset_match_classes(test, train))) {
            code = cli_fail(cmd, s);
            goto done;
        }
    }
    if (limit > 0 && limit < train->n) rg_dataset_truncate(train, (int)limit);
    if ((s = rg_model_build(model_spec, train->c, train->h, train->w, train->classes, loss,
                            (float)smoothing, (uint64_t)seed, &m))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    if (m.loss == RG_NONE) {
        cli_error(cmd, "model '%s' has no classifier (top=0): training needs top=1", model_spec);
        code = EXIT_USAGE;
        goto done;
    }
    if ((s = rg_graph_compile(m.graph, (int)batch))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    if (metrics_path && !(prog.metrics = fopen(metrics_path, "w"))) {
        cli_error(cmd, "cannot write metrics file '%s': check the directory exists and is "
                       "writable", metrics_path);
        code = EXIT_RUNTIME;
        goto done;
    }
    if (!prog.quiet)
        printf("regrad %s: %s on %s (%d samples, %dx%dx%d, %d classes), %s lr %g, batch %ld, "
               "%d threads, GRA %s\n", RG_VERSION, model_spec, data, train->n, train->c, train->h,
               train->w, train->classes, rg_optim_name(kind), (double)oc.lr, batch,
               rg_get_threads(), prog.repair ? "auto" : "off");
    rg_fit_config fc = {.epochs = (int)epochs, .batch = (int)batch, .seed = (uint64_t)seed,
                        .val_split = (float)val_split, .optim = oc, .schedule = schedule,
                        .augment = augment, .workers = (int)workers,
                        .repair = prog.repair, .monitor_every = (int)monitor_every};
    rg_fit_callbacks cb = {.on_batch = on_batch, .on_epoch = on_epoch, .on_repair = on_repair,
                           .on_health = on_health, .user = &prog};
    double t0 = wall();
    if ((s = rg_fit(&m, train, &fc, &cb))) {
        if (prog.tty && !prog.quiet) fputc('\n', stderr);
        code = cli_fail(cmd, s);
        goto done;
    }
    double test_loss = NAN, test_acc = NAN;
    if (test && (s = rg_evaluate(&m, test, NULL, test->n, &test_loss, &test_acc))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    double seconds = wall() - t0;
    if (train->skipped || (test && test->skipped))
        cli_warn(NULL, "skipped files: see the warnings above (use --strict to stop on them)");
    unsigned long long hash = (unsigned long long)rg_graph_params_hash(m.graph);
    if (test) printf("test_loss %.4f  test_acc %.4f", test_loss, test_acc);
    else printf("no test split");
    printf("  (%.1fs, weights %016llx)\n", seconds, hash);
    if (prog.metrics) {
        fprintf(prog.metrics, "{\"event\":\"end\",");
        cli_json_num(prog.metrics, "test_loss", test_loss, false);
        cli_json_num(prog.metrics, "test_acc", test_acc, false);
        cli_json_num(prog.metrics, "seconds", seconds, false);
        fprintf(prog.metrics, "\"weights_hash\":\"%016llx\"}\n", hash);
    }
done:
    if (prog.metrics && fclose(prog.metrics) != 0 && code == 0) {
        cli_error(cmd, "could not finish writing '%s' (disk full?)", metrics_path);
        code = EXIT_RUNTIME;
    }
    rg_model_free(&m);
    rg_dataset_free(train);
    rg_dataset_free(test);
    return code;
}
