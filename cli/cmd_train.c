/*
 * cmd_train.c — `regrad train`: builds a model from a spec, trains it on a dataset, shows
 * progress, writes JSON-lines metrics, and evaluates the test split at the end.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/stat.h>
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
    "Checkpoints and transfer learning\n"
    "  --checkpoint-dir DIR  save DIR/epoch_N.safetensors (and DIR/last.safetensors, a link\n"
    "                        to the newest) every --checkpoint-every epochs and at the end\n"
    "  --checkpoint-every N  epochs between checkpoints (default 1)\n"
    "  --keep K              keep only the newest K epoch checkpoints\n"
    "  --resume FILE|DIR     continue a run from its checkpoint (DIR: its last one) with the\n"
    "                        run's own settings; bitwise the same as never stopping.  Flags\n"
    "                        given here override, e.g. --epochs for a longer run\n"
    "  --stop-after N        stop after N epochs of this run (the schedule still spans\n"
    "                        --epochs), as if interrupted; resume later\n"
    "  --weights FILE        start from a checkpoint's weights (matched by name)\n"
    "  --weights-partial     load the tensors that fit and list the rest, instead of failing\n"
    "  --classes N           classifier outputs; with --weights of another head size, the\n"
    "                        classifier alone starts afresh\n"
    "  --freeze PATTERN      freeze the layers whose names match the glob (repeatable;\n"
    "  --trainable PATTERN   --freeze and --trainable apply in order): --freeze '*'\n"
    "                        --trainable '*conv5*' trains only conv5\n"
    "\n"
    "Classic remedies (GRA is off with these unless --repair auto is given)\n"
    "  --clip-norm C         scale all gradients down when their global norm exceeds C\n"
    "  --clip-layer-norm C   scale each tensor's gradient down to norm C (Keras clipnorm)\n"
    "  --clip-value V        clamp every gradient value to [-V, V]\n"
    "  --agc L               adaptive gradient clipping: each unit's gradient at most L x\n"
    "                        its weight norm (classifier excluded)\n"
    "  --max-norm C          each unit's incoming weight norm at most C after every step\n"
    "                        (Keras MaxNorm: dense rows, conv filters)\n"
    "  --aux-heads N|LIST    intermediate-layer prediction: N classifier heads spread over\n"
    "                        the hidden layers, or on the named layers (dense_2,dense_4);\n"
    "                        each head's test accuracy is reported; heads are not exported\n"
    "  --aux-weight W        the heads' loss weight, decaying linearly to 0 (default 0.3)\n"
    "  --lasso L             lassonet models: the L1 strength on the skip (feature selection)\n"
    "  --lasso-path L:F:N    N stages of --epochs each, lambda L, L*F, L*F^2, ...: prints the\n"
    "                        features left and the accuracy at each, then the selection\n"
    "  --prune-schedule F:A:B  gradual magnitude pruning to fraction F at the end of epochs\n"
    "                        A..B (cubic, Zhu & Gupta); with --prune-structure weights|units,\n"
    "                        --prune-scope layer|global, --prune-criterion l1|l2 (see\n"
    "                        'regrad prune --help')\n"
    "\n"
    "Gradient health\n"
    "  --repair MODE         auto (default): GRA probes the network, re-conditions unhealthy\n"
    "                        layers and repairs gradients every step; off: plain training\n"
    "  --monitor-every N     write per-layer gradient health to --metrics every N steps\n"
    "  --check-numerics      stop at the first NaN or Inf in any output or gradient, naming\n"
    "                        the op and layer (without it GRA keeps them out of the weights)\n"
    "\n"
    "Running\n"
    "  --threads N           threads for OpenMP and the BLAS (default: all cores; under\n"
    "                        mpirun, the cores shared among the ranks)\n"
    "  --sync-bn             under mpirun: batch norm's statistics over the whole global\n"
    "                        batch, all ranks' samples (synchronised batch norm)\n"
    "  --max-memory SIZE     memory the run may take, e.g. 2G or 512M (default: what the\n"
    "                        machine has available); checked before allocating\n"
    "  --metrics FILE        write JSON lines: one per epoch, one at the end\n"
    "  --report FILE.html    write an HTML report (loss, accuracy, gradient flow); turns on\n"
    "                        --monitor-every 10 and keeps the metrics in FILE.html.jsonl\n"
    "                        unless --metrics names a file\n"
    "  --quiet               print only the final result\n"
    "  --log-every N         a plain progress line every N batches instead of the line\n"
    "                        redrawn in place (plain lines are the default off a terminal\n"
    "                        only with this option)\n"
    "  -h, --help            show this help\n";

enum {
    OPT_DATA = 256, OPT_LIMIT, OPT_MODEL, OPT_LOSS, OPT_SMOOTH, OPT_EPOCHS, OPT_BATCH, OPT_OPTIM,
    OPT_LR, OPT_MOMENTUM, OPT_WD, OPT_SCHEDULE, OPT_VAL, OPT_SEED, OPT_THREADS, OPT_METRICS,
    OPT_QUIET, OPT_REPAIR, OPT_MONITOR, OPT_TEST_DATA, OPT_AUGMENT, OPT_WORKERS, OPT_CKPT_DIR,
    OPT_CKPT_EVERY, OPT_KEEP, OPT_RESUME, OPT_STOP_AFTER, OPT_WEIGHTS, OPT_PARTIAL, OPT_CLASSES,
    OPT_FREEZE, OPT_TRAINABLE, OPT_CLIP_NORM, OPT_CLIP_LAYER, OPT_CLIP_VALUE, OPT_AGC, OPT_MAX_NORM,
    OPT_PRUNE_SCHEDULE, OPT_PRUNE_STRUCTURE, OPT_PRUNE_SCOPE, OPT_PRUNE_CRITERION, OPT_AUX,
    OPT_AUX_WEIGHT, OPT_LASSO, OPT_LASSO_PATH, OPT_LOG_EVERY, OPT_REPORT, OPT_NUMERICS,
    OPT_MAX_MEMORY, OPT_SYNC_BN
};

static const struct option train_opts_table[] = {
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
    {"checkpoint-dir", required_argument, 0, OPT_CKPT_DIR},
    {"checkpoint-every", required_argument, 0, OPT_CKPT_EVERY},
    {"keep", required_argument, 0, OPT_KEEP},
    {"resume", required_argument, 0, OPT_RESUME},
    {"stop-after", required_argument, 0, OPT_STOP_AFTER},
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"weights-partial", no_argument, 0, OPT_PARTIAL},
    {"classes", required_argument, 0, OPT_CLASSES},
    {"freeze", required_argument, 0, OPT_FREEZE},
    {"trainable", required_argument, 0, OPT_TRAINABLE},
    {"clip-norm", required_argument, 0, OPT_CLIP_NORM},
    {"clip-layer-norm", required_argument, 0, OPT_CLIP_LAYER},
    {"clip-value", required_argument, 0, OPT_CLIP_VALUE},
    {"agc", required_argument, 0, OPT_AGC},
    {"max-norm", required_argument, 0, OPT_MAX_NORM},
    {"prune-schedule", required_argument, 0, OPT_PRUNE_SCHEDULE},
    {"prune-structure", required_argument, 0, OPT_PRUNE_STRUCTURE},
    {"prune-scope", required_argument, 0, OPT_PRUNE_SCOPE},
    {"prune-criterion", required_argument, 0, OPT_PRUNE_CRITERION},
    {"aux-heads", required_argument, 0, OPT_AUX},
    {"aux-weight", required_argument, 0, OPT_AUX_WEIGHT},
    {"lasso", required_argument, 0, OPT_LASSO},
    {"lasso-path", required_argument, 0, OPT_LASSO_PATH},
    {"log-every", required_argument, 0, OPT_LOG_EVERY},
    {"report", required_argument, 0, OPT_REPORT},
    {"check-numerics", no_argument, 0, OPT_NUMERICS},
    {"max-memory", required_argument, 0, OPT_MAX_MEMORY},
    {"sync-bn", no_argument, 0, OPT_SYNC_BN},
    CLI_DATA_OPTIONS,
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

typedef struct progress {
    bool tty, quiet, repair;
    long log_every;
    FILE *metrics;
    double last_draw;
} progress;

static void fmt_eta(double s, char *buf, size_t len) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

/* The progress line: redrawn in place on a terminal (at most 5 times a second), or a plain
 * line every --log-every batches (the only form when stderr is not a terminal). */
static void on_batch(void *user, int epoch, int batch, int batches, double loss, double acc,
                     double ips, double eta, long repairs) {
    progress *p = user;
    if (p->quiet) return;
    const bool plain = p->log_every > 0 || !p->tty;
    if (plain && (p->log_every <= 0 || batch % p->log_every != 0)) return;
    double t = rg_seconds();
    if (!plain && batch != batches && t - p->last_draw < 0.2) return;
    p->last_draw = t;
    char e[32];
    fmt_eta(eta, e, sizeof e);
    flockfile(stderr);
    fprintf(stderr, "%sepoch %d  batch %d/%d  loss %.4f  acc %.4f  %.0f img/s  ETA %s",
            plain ? "" : "\r\033[K", epoch, batch, batches, loss, acc, ips, e);
    if (p->repair) fprintf(stderr, "  GRA %ld", repairs);
    fputs(plain ? "\n" : "", stderr);
    fflush(stderr);
    cli_progress_line(!plain);
    funlockfile(stderr);
}

/* Ctrl-C: the first stops training after the current step (with a checkpoint when
 * checkpointing); the second exits at once. */
static volatile int stop_requested = 0;

static void on_interrupt(int sig) {
    (void)sig;
    if (stop_requested) _exit(130);
    stop_requested = 1;
    static const char msg[] = "\nregrad train: stopping after this step (Ctrl-C again to quit now)\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
}


static void on_epoch(void *user, const rg_epoch_stats *s) {
    progress *p = user;
    if (p->tty && !p->quiet && !p->log_every) fprintf(stderr, "\r\033[K");
    cli_progress_line(false);
    if (!p->quiet) {
        printf("epoch %d  loss %.4f  acc %.4f", s->epoch, s->loss, s->acc);
        if (isfinite(s->val_loss)) printf("  val_loss %.4f  val_acc %.4f", s->val_loss, s->val_acc);
        printf("  %.1fs  %.0f img/s", s->seconds, s->images_per_sec);
        if (p->repair) printf("  GRA %ld", s->repairs);
        if (s->skipped) printf("  skipped %ld", s->skipped);
        if (s->sparsity > 0) printf("  sparsity %.3f", s->sparsity);
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
        cli_json_num(p->metrics, "sparsity", s->sparsity, false);
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

static void on_checkpoint(void *user, const char *path) {
    progress *p = user;
    if (!p->quiet) printf("saved %s\n", path);
    if (p->metrics) {
        fprintf(p->metrics, "{\"event\":\"checkpoint\",\"path\":");
        json_str(p->metrics, path);
        fprintf(p->metrics, "}\n");
    }
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


/* Everything the options set; parsed twice when resuming (the run's saved arguments, then
 * these), so later flags override earlier ones. */
typedef struct train_opts {
    const char *data, *model_spec, *metrics_path, *optim_name, *schedule_text, *test_data;
    const char *augment_text, *checkpoint_dir, *resume, *weights, *aux_heads, *report;
    long limit, epochs, batch, seed, threads, monitor_every, workers, checkpoint_every, keep;
    long stop_after, classes, log_every;
    double max_memory; /* bytes, 0: what the machine has */
    double lr, momentum, wd, val_split, smoothing;
    double clip_norm, clip_layer, clip_value, agc, max_norm, aux_weight, lasso, path_factor;
    int path_stages;
    rg_prune_opts prune;
    int prune_start, prune_end;
    bool partial, quiet, repair, repair_given, check_numerics, sync_bn;
    rg_loss_kind loss;
    rg_data_options dopt;
    cli_patterns patterns;
} train_opts;

/* The defaults every option starts from (see train_help). */
static train_opts train_defaults(void) {
    return (train_opts){.data = "fashion-mnist", .model_spec = "mlp", .optim_name = "adam",
                        .schedule_text = "constant", .augment_text = "none", .epochs = 1,
                        .batch = 128, .seed = 42, .checkpoint_every = 1, .lr = NAN,
                        .momentum = NAN, .wd = NAN, .repair = true, .loss = RG_LOSS_XENT,
                        .dopt = {.warn = cli_warn}, .prune = {.norm = 2}, .aux_weight = 0.3};
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(const char *cmd, int argc, char **argv, train_opts *o) {
    int c;
    optind = 1;
    while ((c = cli_getopt(cmd, argc, argv, "h", train_opts_table)) != -1) {
        bool ok = true;
        int handled = cli_data_option(cmd, c, optarg, &o->dopt);
        if (handled < 0) return EXIT_USAGE;
        if (handled) continue;
        switch (c) {
        case 'h': fputs(train_help, stdout); return 0;
        case OPT_DATA: o->data = optarg; break;
        case OPT_TEST_DATA: o->test_data = optarg; break;
        case OPT_AUGMENT: o->augment_text = optarg; break;
        case OPT_WORKERS: ok = cli_int(cmd, "workers", optarg, 1, 256, &o->workers); break;
        case OPT_LIMIT: ok = cli_int(cmd, "limit", optarg, 1, 1L << 30, &o->limit); break;
        case OPT_MODEL: o->model_spec = optarg; break;
        case OPT_LOSS:
            if (strcmp(optarg, "xent") == 0) o->loss = RG_LOSS_XENT;
            else if (strcmp(optarg, "mse") == 0) o->loss = RG_LOSS_MSE;
            else cli_error(cmd, "--loss '%s': use xent or mse", optarg), ok = false;
            break;
        case OPT_SMOOTH: ok = cli_float(cmd, "label-smoothing", optarg, 0, 0.999, false, &o->smoothing); break;
        case OPT_EPOCHS: ok = cli_int(cmd, "epochs", optarg, 1, 100000, &o->epochs); break;
        case OPT_BATCH: ok = cli_int(cmd, "batch", optarg, 1, 65536, &o->batch); break;
        case OPT_OPTIM: o->optim_name = optarg; break;
        case OPT_LR: ok = cli_float(cmd, "lr", optarg, 0, 1e6, true, &o->lr); break;
        case OPT_MOMENTUM: ok = cli_float(cmd, "momentum", optarg, 0, 0.999999, false, &o->momentum); break;
        case OPT_WD: ok = cli_float(cmd, "weight-decay", optarg, 0, 1e6, false, &o->wd); break;
        case OPT_SCHEDULE: o->schedule_text = optarg; break;
        case OPT_VAL: ok = cli_float(cmd, "val-split", optarg, 0, 0.99, false, &o->val_split); break;
        case OPT_SEED: ok = cli_int(cmd, "seed", optarg, 0, 0x7fffffffffffffffL, &o->seed); break;
        case OPT_THREADS: ok = cli_int(cmd, "threads", optarg, 0, 1024, &o->threads); break;
        case OPT_METRICS: o->metrics_path = optarg; break;
        case OPT_QUIET: o->quiet = true; break;
        case OPT_REPAIR:
            if (strcmp(optarg, "auto") == 0) o->repair = true;
            else if (strcmp(optarg, "off") == 0) o->repair = false;
            else cli_error(cmd, "--repair '%s': use auto or off", optarg), ok = false;
            o->repair_given = true;
            break;
        case OPT_CLIP_NORM: ok = cli_float(cmd, "clip-norm", optarg, 0, 1e9, true, &o->clip_norm); break;
        case OPT_CLIP_LAYER: ok = cli_float(cmd, "clip-layer-norm", optarg, 0, 1e9, true, &o->clip_layer); break;
        case OPT_CLIP_VALUE: ok = cli_float(cmd, "clip-value", optarg, 0, 1e9, true, &o->clip_value); break;
        case OPT_AGC: ok = cli_float(cmd, "agc", optarg, 0, 1e9, true, &o->agc); break;
        case OPT_MAX_NORM: ok = cli_float(cmd, "max-norm", optarg, 0, 1e9, true, &o->max_norm); break;
        case OPT_PRUNE_SCHEDULE: {
            char tail;
            if (sscanf(optarg, "%f:%d:%d%c", &o->prune.amount, &o->prune_start, &o->prune_end, &tail) != 3 ||
                !(o->prune.amount > 0 && o->prune.amount < 1) || o->prune_start < 1 ||
                o->prune_end < o->prune_start) {
                cli_error(cmd, "--prune-schedule '%s': write AMOUNT:START:END, amount in (0, 1), "
                               "epochs 1 <= START <= END, e.g. 0.8:2:6", optarg);
                ok = false;
            }
            break;
        }
        case OPT_AUX: o->aux_heads = optarg; break;
        case OPT_REPORT: o->report = optarg; break;
        case OPT_NUMERICS: o->check_numerics = true; break;
        case OPT_SYNC_BN: o->sync_bn = true; break;
        case OPT_MAX_MEMORY: {
            char *end;
            double v = strtod(optarg, &end);
            const double unit = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' || *end == 'm'
                                ? 1048576.0 : *end == 'G' || *end == 'g' ? 1073741824.0 : 1.0;
            if (unit > 1) end++;
            if (end == optarg || *end || !(v > 0) || v * unit > 1e18) {
                cli_error(cmd, "--max-memory '%s': write a size such as 2G, 512M or 1000000", optarg);
                ok = false;
            }
            o->max_memory = v * unit;
            break;
        }
        case OPT_LOG_EVERY: ok = cli_int(cmd, "log-every", optarg, 1, 1L << 30, &o->log_every); break;
        case OPT_LASSO: ok = cli_float(cmd, "lasso", optarg, 0, 1e9, false, &o->lasso); break;
        case OPT_LASSO_PATH: {
            char tail;
            if (sscanf(optarg, "%lf:%lf:%d%c", &o->lasso, &o->path_factor, &o->path_stages, &tail) != 3 ||
                !(o->lasso > 0) || !(o->path_factor > 1) || o->path_stages < 1 || o->path_stages > 100) {
                cli_error(cmd, "--lasso-path '%s': write LAMBDA:FACTOR:STAGES with lambda > 0, "
                               "factor > 1 and 1..100 stages, e.g. 0.1:2:8", optarg);
                ok = false;
            }
            break;
        }
        case OPT_AUX_WEIGHT: ok = cli_float(cmd, "aux-weight", optarg, 0, 100, true, &o->aux_weight); break;
        case OPT_PRUNE_STRUCTURE: ok = cli_prune_option(cmd, "prune-structure", optarg, &o->prune); break;
        case OPT_PRUNE_SCOPE: ok = cli_prune_option(cmd, "prune-scope", optarg, &o->prune); break;
        case OPT_PRUNE_CRITERION: ok = cli_prune_option(cmd, "prune-criterion", optarg, &o->prune); break;
        case OPT_MONITOR: ok = cli_int(cmd, "monitor-every", optarg, 1, 1L << 30, &o->monitor_every); break;
        case OPT_CKPT_DIR: o->checkpoint_dir = optarg; break;
        case OPT_CKPT_EVERY: ok = cli_int(cmd, "checkpoint-every", optarg, 1, 100000, &o->checkpoint_every); break;
        case OPT_KEEP: ok = cli_int(cmd, "keep", optarg, 1, 100000, &o->keep); break;
        case OPT_RESUME: o->resume = optarg; break;
        case OPT_STOP_AFTER: ok = cli_int(cmd, "stop-after", optarg, 1, 100000, &o->stop_after); break;
        case OPT_WEIGHTS: o->weights = optarg; break;
        case OPT_PARTIAL: o->partial = true; break;
        case OPT_CLASSES: ok = cli_int(cmd, "classes", optarg, 2, 1 << 20, &o->classes); break;
        case OPT_FREEZE:
        case OPT_TRAINABLE:
            ok = cli_pattern_add(cmd, &o->patterns, optarg, c == OPT_TRAINABLE);
            break;
        default: return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error(cmd, "unexpected argument '%s'; see 'regrad train --help'", argv[optind]);
        return EXIT_USAGE;
    }
    return -1;
}

/* The arguments worth replaying on resume, as a JSON array: all but --resume and
 * --stop-after, which belong to one invocation. */
static char *saved_args(int argc, char **argv) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 1; i < argc; i++) {
        const char *x = argv[i];
        bool skip_next = strcmp(x, "--resume") == 0 || strcmp(x, "--stop-after") == 0;
        if (skip_next) {
            i++;
            continue;
        }
        if (strncmp(x, "--resume=", 9) == 0 || strncmp(x, "--stop-after=", 13) == 0) continue;
        cJSON_AddItemToArray(a, cJSON_CreateString(x));
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return text;
}

/* A JSON array of the class names (or NULL). */
static char *class_names_json(const rg_dataset *d) {
    if (!d->class_names) return NULL;
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < d->classes; k++) cJSON_AddItemToArray(a, cJSON_CreateString(d->class_names[k]));
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return text;
}

/* Opens the checkpoint a --resume names (a file, or a folder's last.safetensors). */
static rg_status open_resume(const char *what, rg_tensor_file **f) {
    char path[4200];
    struct stat st;
    if (stat(what, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/last.safetensors", what);
    else snprintf(path, sizeof path, "%s", what);
    return rg_safetensors_load(path, f);
}

static int train_main(int argc, char **argv);

/* Under mpirun every rank runs this; a rank that fails takes the job down. */
int cmd_train(int argc, char **argv) {
    rg_status s = rg_dist_init(&argc, &argv);
    if (s) return cli_fail("train", s);
    int code = train_main(argc, argv);
    if (code && rg_dist_size() > 1) {
        fflush(NULL);
        rg_dist_abort(code);
    }
    rg_dist_finalize();
    return code;
}

static int train_main(int argc, char **argv) {
    const char *cmd = "train";
    train_opts o = train_defaults();
    int r = parse_args(cmd, argc, argv, &o);
    if (r >= 0) return r;
    rg_tensor_file *resume = NULL, *weights = NULL;
    char **replay = NULL;
    cJSON *saved = NULL;
    rg_status s;
    int code = 0;
    if (o.resume) {
        /* The run's own settings first, then this command line's. */
        if ((s = open_resume(o.resume, &resume))) return cli_fail(cmd, s);
        const char *args = rg_tensor_file_meta(resume, "train_args");
        saved = args ? cJSON_Parse(args) : NULL;
        if (!cJSON_IsArray(saved)) {
            cli_error(cmd, "'%s' is not a training checkpoint of 'regrad train' (no saved "
                           "arguments): start a new run with --weights instead", o.resume);
            rg_tensor_file_free(resume);
            cJSON_Delete(saved);
            return EXIT_USAGE;
        }
        const int n = cJSON_GetArraySize(saved);
        replay = calloc((size_t)n + 2, sizeof *replay);
        replay[0] = argv[0];
        for (int i = 0; i < n; i++) replay[i + 1] = cJSON_GetArrayItem(saved, i)->valuestring;
        const char *resume_arg = o.resume;
        long stop_after = o.stop_after;
        o = train_defaults();
        if ((r = parse_args(cmd, n + 1, replay, &o)) >= 0 || (r = parse_args(cmd, argc, argv, &o)) >= 0) {
            code = r;
            goto done;
        }
        o.resume = resume_arg;
        o.stop_after = stop_after;
    }
    /* The remedies are GRA's baselines: they run without it unless it is asked for. */
    if (!o.repair_given && (o.clip_norm > 0 || o.clip_layer > 0 || o.clip_value > 0 || o.agc > 0 ||
                            o.max_norm > 0))
        o.repair = false;
    const int ranks = rg_dist_size(), rank = rg_dist_rank();
    if (rank > 0) { /* rank 0 alone prints and writes metrics and reports */
        o.quiet = true, o.metrics_path = NULL, o.report = NULL;
    }
    if (ranks > 1 && !o.threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / ranks;
        o.threads = cores > 0 ? cores : 1;
    }
    progress prog = {.tty = isatty(2), .quiet = o.quiet, .repair = o.repair,
                     .log_every = o.log_every};
    char report_metrics[4200];
    if (o.report) { /* the report reads the metrics, with gradient snapshots */
        if (!o.monitor_every) o.monitor_every = 10;
        if (!o.metrics_path) {
            snprintf(report_metrics, sizeof report_metrics, "%s.jsonl", o.report);
            o.metrics_path = report_metrics;
        }
    }

    /* Validate every cheap argument before reading any data. */
    rg_optim_kind kind;
    rg_schedule schedule;
    rg_augment augment;
    if ((s = rg_optim_parse(o.optim_name, &kind)) || (s = rg_schedule_parse(o.schedule_text, &schedule)) ||
        (s = rg_augment_parse(o.augment_text, &augment))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    rg_optim_config oc = rg_optim_defaults(kind);
    if (!isnan(o.lr)) oc.lr = (float)o.lr;
    if (!isnan(o.momentum)) oc.momentum = (float)o.momentum;
    if (!isnan(o.wd)) oc.weight_decay = (float)o.wd;
    if ((s = rg_optim_check(&oc))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    rg_model probe; /* catches spec errors before any data is read */
    if ((s = rg_model_build(o.model_spec, &(rg_model_opts){.loss = o.loss, .label_smoothing = (float)o.smoothing}, &probe))) {
        code = cli_fail(cmd, s);
        goto done;
    }
    rg_model_free(&probe);
    if (o.weights && (s = rg_safetensors_load(o.weights, &weights))) {
        code = cli_fail(cmd, s);
        goto done;
    }

    rg_set_threads((int)o.threads);
    rg_dataset *train = NULL, *test = NULL;
    rg_model m = {0};
    char *args_json = NULL, *names_json = NULL;
    struct sigaction old_sa;
    bool sa_set = false;
    o.dopt.classes = (int)o.classes;
    if ((s = rg_dataset_open(o.data, &o.dopt, &train, &test))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    if (o.test_data) {
        rg_dataset_free(test);
        if ((s = rg_dataset_open(o.test_data, &o.dopt, &test, NULL)) ||
            (s = rg_dataset_match_classes(test, train))) {
            code = cli_fail(cmd, s);
            goto done_data;
        }
    }
    if (o.limit > 0 && o.limit < train->n) rg_dataset_truncate(train, (int)o.limit);
    if ((s = rg_model_build(o.model_spec, &(rg_model_opts){.c = train->c, .h = train->h, .w = train->w, .classes = o.classes ? (int)o.classes : train->classes, .loss = o.loss, .label_smoothing = (float)o.smoothing, .seed = (uint64_t)o.seed}, &m))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    if (m.loss == RG_NONE) {
        cli_error(cmd, "model '%s' has no classifier (top=0): training needs top=1", o.model_spec);
        code = EXIT_USAGE;
        goto done_data;
    }
    if (o.aux_heads && (s = rg_model_add_aux_heads(&m, o.aux_heads))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    if (m.n_aux) rg_model_set_aux_weight(&m, (float)o.aux_weight);
    if (0) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    if (!cli_patterns_apply(cmd, &o.patterns, m.graph, o.model_spec)) {
        code = EXIT_USAGE;
        goto done_data;
    }
    /* Memory: the optimizer's moments and the loader's batches come out of the budget
     * first; the rest bounds what compile may allocate (checked before it allocates). */
    {
        const double budget = o.max_memory > 0 ? o.max_memory : (double)rg_memory_available();
        double params = 0;
        for (int i = 0; i < rg_graph_param_count(m.graph); i++) {
            rg_param_info pi;
            rg_graph_param(m.graph, i, &pi);
            if (!pi.state) params += (double)pi.size;
        }
        const int moments = rg_optim_moment_count(&oc);
        const long workers = o.workers ? o.workers : rg_loader_default_workers();
        const double loader = train->paths || rg_augment_any(&augment)
                                  ? 2.0 * workers * o.batch * train->c * train->h * train->w * 4 : 0;
        const double extra = 4.0 * params * moments + loader;
        if (budget > 0) {
            if (extra >= budget) {
                char a[32], b[32], c[32];
                cli_error(cmd, "the optimizer's state (%s) and the loader's batches (%s) alone "
                               "exceed the %s %s: use a smaller model or --batch",
                          rg_bytes_text(4.0 * params * moments, a), rg_bytes_text(loader, b),
                          rg_bytes_text(budget, c),
                          o.max_memory > 0 ? "of --max-memory" : "this machine has available");
                code = EXIT_RUNTIME;
                goto done_data;
            }
            rg_graph_set_memory_limit(m.graph, (size_t)(budget - extra));
        }
    }
    if ((s = rg_graph_compile(m.graph, (int)o.batch))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    rg_graph_check_numerics(m.graph, o.check_numerics);
    if (weights) {
        rg_load_report rep;
        int flags = (o.partial ? RG_LOAD_PARTIAL : 0) | (o.classes ? RG_LOAD_NEW_HEAD : 0);
        if ((s = rg_model_load(&m, weights, flags, &rep))) {
            code = cli_fail(cmd, s);
            goto done_data;
        }
        if (!o.quiet) {
            printf("weights: %d tensors loaded from %s", rep.loaded, o.weights);
            if (rep.reinitialised) printf(", classifier re-initialised (%d tensors)", rep.reinitialised);
            if (rep.missing) printf(", %d missing (e.g. %s)", rep.missing, rep.first_missing);
            if (rep.unexpected) printf(", %d unexpected (e.g. %s)", rep.unexpected, rep.first_unexpected);
            if (rep.mismatched) printf(", %d of another shape (e.g. %s)", rep.mismatched, rep.first_mismatched);
            printf("\n");
        }
    }
    if (o.metrics_path && !(prog.metrics = fopen(o.metrics_path, o.resume ? "a" : "w"))) {
        cli_error(cmd, "cannot write metrics file '%s': check the directory exists and is "
                       "writable", o.metrics_path);
        code = EXIT_RUNTIME;
        goto done_data;
    }
    if (prog.metrics) {
        fprintf(prog.metrics, "{\"event\":\"start\",\"model\":");
        json_str(prog.metrics, o.model_spec);
        fprintf(prog.metrics, ",\"data\":");
        json_str(prog.metrics, o.data);
        fprintf(prog.metrics, ",\"regrad\":\"%s\"}\n", RG_VERSION);
    }
    if (!o.quiet)
        printf("regrad %s: %s on %s (%d samples, %dx%dx%d, %d classes), %s lr %g, batch %ld, "
               "%d threads, GRA %s\n", RG_VERSION, o.model_spec, o.data, train->n, train->c, train->h,
               train->w, train->classes, rg_optim_name(kind), (double)oc.lr, o.batch,
               rg_get_threads(), prog.repair ? "auto" : "off");
    if (o.resume && !o.quiet)
        printf("resuming from %s at epoch %s\n", o.resume, rg_tensor_file_meta(resume, "epoch"));
    if (ranks > 1 && !o.quiet)
        printf("data-parallel: %d ranks x batch %ld = %ld per step, %d threads each, %s\n", ranks,
               o.batch, ranks * o.batch, rg_get_threads(),
               o.repair ? "rank 0's weights broadcast after each step (GRA)" : "gradients all-reduced");

    /* What a checkpoint needs to rebuild this run, or to predict with its model. */
    rg_meta meta = {0};
    char size_text[32], channels_text[8];
    snprintf(size_text, sizeof size_text, "%dx%d", train->h, train->w);
    snprintf(channels_text, sizeof channels_text, "%d", train->c);
    args_json = saved_args(argc, argv);
    if (saved) { /* resumed: the original arguments, then this command line's */
        cJSON *all = cJSON_Duplicate(saved, 1);
        cJSON *now = cJSON_Parse(args_json);
        cJSON *x;
        cJSON_ArrayForEach(x, now) cJSON_AddItemToArray(all, cJSON_CreateString(x->valuestring));
        free(args_json);
        args_json = cJSON_PrintUnformatted(all);
        cJSON_Delete(all);
        cJSON_Delete(now);
    }
    names_json = class_names_json(train);
    rg_meta_set(&meta, "train_args", args_json);
    rg_meta_set(&meta, "data", o.data);
    rg_meta_set(&meta, "preprocess", rg_preprocess_name(o.dopt.preprocess));
    rg_meta_set(&meta, "input_size", size_text);
    rg_meta_set(&meta, "channels", channels_text);
    if (names_json) rg_meta_set(&meta, "class_names", names_json);

    rg_fit_config fc = {.epochs = (int)o.epochs, .batch = (int)o.batch, .seed = (uint64_t)o.seed,
                        .val_split = (float)o.val_split, .optim = oc, .schedule = schedule,
                        .augment = augment, .workers = (int)o.workers,
                        .repair = prog.repair, .monitor_every = (int)o.monitor_every,
                        .checkpoint_dir = o.checkpoint_dir, .checkpoint_every = (int)o.checkpoint_every,
                        .keep = (int)o.keep, .meta = &meta, .resume = resume,
                        .stop_after = (int)o.stop_after, .clip_norm = (float)o.clip_norm,
                        .clip_tensor_norm = (float)o.clip_layer, .clip_value = (float)o.clip_value,
                        .agc = (float)o.agc, .max_norm = (float)o.max_norm, .prune = o.prune,
                        .prune_start = o.prune_start, .prune_end = o.prune_end,
                        .stop = &stop_requested, .sync_bn = o.sync_bn};
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    sa_set = true;
    rg_fit_callbacks cb = {.on_batch = on_batch, .on_epoch = on_epoch, .on_repair = on_repair,
                           .on_health = on_health, .on_checkpoint = on_checkpoint, .user = &prog};
    double t0 = rg_seconds();
    if ((o.lasso > 0 || o.path_stages) && m.lasso_m <= 0) {
        cli_error(cmd, "--lasso and --lasso-path need a lassonet model (--model lassonet:...)");
        code = EXIT_USAGE;
        goto done_data;
    }
    if (o.path_stages && (o.checkpoint_dir || o.resume)) {
        cli_error(cmd, "--lasso-path runs several trainings: it does not combine with "
                       "--checkpoint-dir or --resume");
        code = EXIT_USAGE;
        goto done_data;
    }
    for (int stage = 0; stage < (o.path_stages ? o.path_stages : 1); stage++) {
        if (m.lasso_m > 0) rg_lassonet_set_lambda(&m, (float)(o.lasso * pow(o.path_factor, stage)));
        if ((s = rg_fit(&m, train, &fc, &cb))) {
            if (prog.tty && !prog.quiet && s != RG_STOPPED) fputc('\n', stderr);
            cli_progress_line(false);
            code = s == RG_STOPPED ? (cli_error(cmd, "%s", rg_last_error()), 130) : cli_fail(cmd, s);
            goto done_data;
        }
        if (o.path_stages) {
            double l = NAN, a = NAN;
            if (test && (s = rg_evaluate(&m, test, NULL, test->n, &l, &a))) {
                code = cli_fail(cmd, s);
                goto done_data;
            }
            printf("lambda %-10.4g %5d features selected  test_acc %.4f\n", (double)m.lasso_lambda,
                   rg_lassonet_selected(&m, NULL), a);
        }
    }
    if (m.lasso_m > 0) { /* the selection, as indices (and pixels for images) */
        int *feat = malloc((size_t)train->c * train->h * train->w * sizeof *feat);
        const int nf = feat ? rg_lassonet_selected(&m, feat) : 0;
        printf("selected features (%d of %d):", nf, train->c * train->h * train->w);
        for (int i = 0; i < nf && i < 64; i++) {
            if (train->h * train->w > train->w && train->c == 1)
                printf(" %d(r%d,c%d)", feat[i], feat[i] / train->w, feat[i] % train->w);
            else printf(" %d", feat[i]);
        }
        printf("%s\n", nf > 64 ? " ..." : "");
        free(feat);
    }
    double test_loss = NAN, test_acc = NAN;
    if (test && (s = rg_evaluate(&m, test, NULL, test->n, &test_loss, &test_acc))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    double aux_acc[RG_MAX_AUX];
    if (test && m.n_aux && (s = rg_evaluate_aux(&m, test, aux_acc))) {
        code = cli_fail(cmd, s);
        goto done_data;
    }
    for (int h = 0; test && h < m.n_aux; h++)
        printf("aux_head_%d (after %s): test_acc %.4f\n", h + 1,
               rg_node_name(m.graph, m.aux_layer[h]), aux_acc[h]);
    double seconds = rg_seconds() - t0;
    if (train->skipped || (test && test->skipped))
        cli_warn(NULL, "skipped files: see the warnings above (use --strict to stop on them)");
    unsigned long long hash = (unsigned long long)rg_graph_params_hash(m.graph);
    if (ranks > 1) { /* every rank must hold the same weights */
        bool same;
        if ((s = rg_dist_agree(hash, &same))) {
            code = cli_fail(cmd, s);
            goto done_data;
        }
        if (!same) {
            cli_error(cmd, "the ranks' weights differ after training (a bug): report it");
            code = EXIT_RUNTIME;
            goto done_data;
        }
        if (!o.quiet)
            printf("weights identical on %d ranks; %.1f MiB all-reduced/broadcast per step, "
                   "%.2f s in collectives\n", ranks,
                   (double)rg_dist_comm_bytes() / (1 << 20) / (double)fmax(1, (double)o.epochs *
                   ((train->n * (1 - o.val_split) + ranks * o.batch - 1) / (ranks * o.batch))),
                   rg_dist_comm_seconds());
    }
    if (rank > 0) goto done_data;
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
done_data:
    if (sa_set) sigaction(SIGINT, &old_sa, NULL);
    if (prog.metrics && fclose(prog.metrics) != 0 && code == 0) {
        cli_error(cmd, "could not finish writing '%s' (disk full?)", o.metrics_path);
        code = EXIT_RUNTIME;
    }
    if (o.report && prog.metrics && (code == 0 || code == 130)) {
        int rc = cli_write_report(cmd, o.metrics_path, o.report, NULL);
        if (rc) code = rc;
        else if (!o.quiet) printf("report: %s\n", o.report);
    }
    free(args_json);
    free(names_json);
    rg_model_free(&m);
    rg_dataset_free(train);
    rg_dataset_free(test);
done:
    rg_tensor_file_free(resume);
    rg_tensor_file_free(weights);
    cJSON_Delete(saved);
    free(replay);
    return code;
}
