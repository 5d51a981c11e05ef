/*
 * cmd_train.c — `regrad train`: builds a model from a spec, trains it on a dataset, shows
 * progress, writes JSON-lines metrics, and evaluates the test split at the end.  It runs in
 * phases over one train_ctx: parse (replaying a resumed run's own arguments first), check
 * every value, the model spec and conflicting options before anything is read, open the
 * data, build the model, open the metrics, train, finish.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* GRA: on unless a classic remedy is asked for without it (--repair auto keeps it on). */
enum { REPAIR_DEFAULT = 0, REPAIR_AUTO, REPAIR_OFF };

typedef struct lasso_path {
    double lambda, factor;
    int stages;
} lasso_path;

typedef struct prune_schedule {
    float amount;
    int start, end;
} prune_schedule;

/* Everything the options set; parsed twice when resuming (the run's saved arguments, then
 * these), so later flags override earlier ones. */
typedef struct train_opts {
    const char *data, *test_data, *model_spec, *metrics_path, *checkpoint_dir, *resume;
    const char *weights, *aux_heads, *report, *device, *precision;
    long limit, epochs, batch, seed, threads, monitor_every, curvature_every, workers, checkpoint_every, keep;
    long stop_after, classes, log_every;
    double lr, momentum, wd, val_split, smoothing, max_memory;
    double clip_norm, clip_layer, clip_value, agc, max_norm, aux_weight, lasso;
    rg_optim_kind optimizer;
    rg_schedule schedule;
    rg_augment augment;
    rg_loss_kind loss;
    rg_data_options dopt;
    rg_prune_opts prune;
    prune_schedule prune_schedule;
    lasso_path lasso_path;
    cli_patterns patterns;
    int repair;
    bool partial, quiet, check_numerics, sync_bn;
} train_opts;

static bool parse_repair(const char *cmd, const cli_option *r, const char *text, void *field) {
    if (strcmp(text, "auto") != 0 && strcmp(text, "off") != 0) {
        cli_error(cmd, "--%s '%s': use auto or off", r->name, text);
        return false;
    }
    *(int *)field = text[0] == 'a' ? REPAIR_AUTO : REPAIR_OFF;
    return true;
}

static bool parse_prune_schedule(const char *cmd, const cli_option *r, const char *text, void *field) {
    prune_schedule *p = field;
    char tail;
    if (sscanf(text, "%f:%d:%d%c", &p->amount, &p->start, &p->end, &tail) != 3 ||
        !(p->amount > 0 && p->amount < 1) || p->start < 1 || p->end < p->start) {
        cli_error(cmd, "--%s '%s': write AMOUNT:START:END, amount in (0, 1), epochs 1 <= START "
                       "<= END, e.g. 0.8:2:6", r->name, text);
        return false;
    }
    return true;
}

static bool parse_lasso_path(const char *cmd, const cli_option *r, const char *text, void *field) {
    lasso_path *p = field;
    char tail;
    if (sscanf(text, "%lf:%lf:%d%c", &p->lambda, &p->factor, &p->stages, &tail) != 3 ||
        !(p->lambda > 0) || !(p->factor > 1) || p->stages < 1 || p->stages > 100) {
        cli_error(cmd, "--%s '%s': write LAMBDA:FACTOR:STAGES with lambda > 0, factor > 1 and "
                       "1..100 stages, e.g. 0.1:2:8", r->name, text);
        return false;
    }
    return true;
}

#define T train_opts
static const cli_option train_options[] = {
    {.section = "Data and model", .name = "data", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(T, data),
     .dflt = "fashion-mnist",
     .help = "fashion-mnist, fashion-mnist:DIR, idx:IMAGES,LABELS, idx:IMAGES,LABELS,TEST_IMAGES,"
             "TEST_LABELS, or a folder DIR with one subfolder of JPEG/PNG images per class"},
    {.name = "test-data", .meta = "DIR", .type = CLI_TEXT, CLI_AT(T, test_data),
     .help = "a separate test folder (same class folders)"},
    {.name = "limit", .meta = "N", .type = CLI_INT, CLI_AT(T, limit), .lo = 1, .hi = 1 << 30,
     .help = "train on the first N training samples only"},
    {.table = cli_data_options, CLI_AT(T, dopt)},
    {.name = "augment", .meta = "LIST", .type = CLI_PARSE, CLI_AT(T, augment), .parse = cli_parse_augment,
     .choices = 1 + RG_NAMES_AUGMENTATIONS, .help = "training only, comma-separated"},
    {.name = "workers", .meta = "N", .type = CLI_INT, CLI_AT(T, workers), .lo = 1, .hi = 256,
     .help = "loader threads for image files and augmentation (default: half of --threads, at "
             "least 1; all of them with a GPU's --device)"},
    {.name = "model", .meta = "SPEC", .type = CLI_TEXT, CLI_AT(T, model_spec), .dflt = "mlp",
     .help = "a model and its options (all take classes=N, input=CxHxW, top=0|1; 'regrad summary "
             "--help' lists each one's)", .choices = 1 + RG_NAMES_MODELS},
    {.name = "loss", .meta = "NAME", .type = CLI_PARSE, CLI_AT(T, loss), .parse = cli_parse_loss,
     .dflt = "xent", .choices = 1 + RG_NAMES_LOSSES,
     .help = "softmax cross-entropy, or mean squared error of the softmax"},
    {.name = "label-smoothing", .meta = "F", .type = CLI_REAL, CLI_AT(T, smoothing), .lo = 0, .hi = 0.999,
     .dflt = "0", .help = "cross-entropy label smoothing"},

    {.section = "Optimisation", .name = "epochs", .meta = "N", .type = CLI_INT, CLI_AT(T, epochs),
     .lo = 1, .hi = 100000, .dflt = "1", .help = "passes over the training data"},
    {.name = "batch", .meta = "N", .type = CLI_INT, CLI_AT(T, batch), .lo = 1, .hi = 65536,
     .dflt = "128", .help = "samples per step"},
    {.name = "optimizer", .meta = "NAME", .type = CLI_PARSE, CLI_AT(T, optimizer),
     .parse = cli_parse_optimizer, .dflt = "adam", .choices = 1 + RG_NAMES_OPTIMIZERS, .help = "one of"},
    {.name = "lr", .meta = "F", .type = CLI_REAL, CLI_AT(T, lr), .lo = 0, .hi = 1e6, .open_lo = true,
     .help = "learning rate (default: the optimizer's PyTorch default)"},
    {.name = "momentum", .meta = "F", .type = CLI_REAL, CLI_AT(T, momentum), .lo = 0, .hi = 0.999999,
     .help = "momentum for sgd, momentum, nesterov and rmsprop"},
    {.name = "weight-decay", .meta = "F", .type = CLI_REAL, CLI_AT(T, wd), .lo = 0, .hi = 1e6,
     .help = "L2 penalty (decoupled for adamw; default 0, adamw 0.01)"},
    {.name = "schedule", .meta = "S", .type = CLI_PARSE, CLI_AT(T, schedule), .parse = cli_parse_schedule,
     .dflt = "constant", .choices = 1 + RG_NAMES_SCHEDULES,
     .help = "learning-rate schedule, optionally followed by ,warmup:STEPS"},
    {.name = "val-split", .meta = "F", .type = CLI_REAL, CLI_AT(T, val_split), .lo = 0, .hi = 0.99,
     .help = "hold out this fraction (per class, from a seeded permutation)"},
    {.name = "seed", .meta = "N", .type = CLI_INT, CLI_AT(T, seed), .lo = 0, .hi = 9.2e18, .dflt = "42",
     .help = "seed for initialisation, dropout and data order"},

    {.section = "Checkpoints and transfer learning", .name = "checkpoint-dir", .meta = "DIR",
     .type = CLI_TEXT, CLI_AT(T, checkpoint_dir),
     .help = "save DIR/epoch_N.safetensors (and DIR/last.safetensors, a link to the newest) every "
             "--checkpoint-every epochs and at the end"},
    {.name = "checkpoint-every", .meta = "N", .type = CLI_INT, CLI_AT(T, checkpoint_every), .lo = 1,
     .hi = 100000, .dflt = "1", .help = "epochs between checkpoints"},
    {.name = "keep", .meta = "K", .type = CLI_INT, CLI_AT(T, keep), .lo = 1, .hi = 100000,
     .help = "keep only the newest K epoch checkpoints"},
    {.name = "resume", .meta = "FILE|DIR", .type = CLI_TEXT, CLI_AT(T, resume),
     .help = "continue a run from its checkpoint (DIR: its last one) with the run's own settings, "
             "bitwise the same as never stopping; flags given here override, e.g. --epochs for a "
             "longer run"},
    {.name = "stop-after", .meta = "N", .type = CLI_INT, CLI_AT(T, stop_after), .lo = 1, .hi = 100000,
     .help = "stop after N epochs of this run (the schedule still spans --epochs), as if "
             "interrupted; resume later"},
    {.name = "weights", .meta = "FILE", .type = CLI_TEXT, CLI_AT(T, weights),
     .help = "start from a checkpoint's weights, or a Keras HDF5 weights file's (the ImageNet "
             "files included), matched by layer name"},
    {.name = "weights-partial", .type = CLI_FLAG, CLI_AT(T, partial),
     .help = "load the tensors that fit and list the rest, instead of failing"},
    {.name = "classes", .meta = "N", .type = CLI_INT, CLI_AT(T, classes), .lo = 2, .hi = 1 << 20,
     .help = "classifier outputs (labels must be below); with --weights of another head size, "
             "the classifier alone starts afresh"},
    {.name = "freeze", .meta = "PATTERN", .type = CLI_PARSE, CLI_AT(T, patterns), .parse = cli_parse_freeze,
     .help = "freeze the layers whose names match the glob (repeatable; --freeze and --trainable "
             "apply in order)"},
    {.name = "trainable", .meta = "PATTERN", .type = CLI_PARSE, CLI_AT(T, patterns),
     .parse = cli_parse_trainable,
     .help = "unfreeze them again: --freeze '*' --trainable '*conv5*' trains only conv5"},

    {.section = "Classic remedies (GRA is off with these unless --repair auto is given)",
     .name = "clip-norm", .meta = "C", .type = CLI_REAL, CLI_AT(T, clip_norm), .lo = 0, .hi = 1e9,
     .open_lo = true, .help = "scale all gradients down when their global norm exceeds C"},
    {.name = "clip-layer-norm", .meta = "C", .type = CLI_REAL, CLI_AT(T, clip_layer), .lo = 0,
     .hi = 1e9, .open_lo = true, .help = "scale each tensor's gradient down to norm C (Keras clipnorm)"},
    {.name = "clip-value", .meta = "V", .type = CLI_REAL, CLI_AT(T, clip_value), .lo = 0, .hi = 1e9,
     .open_lo = true, .help = "clamp every gradient value to [-V, V]"},
    {.name = "agc", .meta = "L", .type = CLI_REAL, CLI_AT(T, agc), .lo = 0, .hi = 1e9, .open_lo = true,
     .help = "adaptive gradient clipping: each unit's gradient at most L x its weight norm "
             "(classifier excluded)"},
    {.name = "max-norm", .meta = "C", .type = CLI_REAL, CLI_AT(T, max_norm), .lo = 0, .hi = 1e9,
     .open_lo = true,
     .help = "each unit's incoming weight norm at most C after every step (Keras MaxNorm)"},
    {.name = "aux-heads", .meta = "N|LIST", .type = CLI_TEXT, CLI_AT(T, aux_heads),
     .help = "intermediate-layer prediction: N classifier heads spread over the hidden layers, or "
             "on the named layers (dense_2,dense_4); each head's test accuracy is reported; heads "
             "are not exported"},
    {.name = "aux-weight", .meta = "W", .type = CLI_REAL, CLI_AT(T, aux_weight), .lo = 0, .hi = 100,
     .open_lo = true, .dflt = "0.3", .help = "the heads' loss weight, decaying linearly to 0"},
    {.name = "lasso", .meta = "L", .type = CLI_REAL, CLI_AT(T, lasso), .lo = 0, .hi = 1e9,
     .help = "lassonet models: the L1 strength on the skip (feature selection)"},
    {.name = "lasso-path", .meta = "L:F:N", .type = CLI_PARSE, CLI_AT(T, lasso_path),
     .parse = parse_lasso_path,
     .help = "N stages of --epochs each, lambda L, L*F, L*F^2, ...: prints the features left and "
             "the accuracy at each, then the selection"},
    {.name = "prune-schedule", .meta = "F:A:B", .type = CLI_PARSE, CLI_AT(T, prune_schedule),
     .parse = parse_prune_schedule,
     .help = "gradual magnitude pruning to fraction F at the end of epochs A..B (cubic, Zhu & "
             "Gupta)"},
    {.name = "prune-structure", .meta = "S", .type = CLI_PARSE, CLI_AT(T, prune.structure),
     .parse = cli_parse_structure, .dflt = "weights", .help = "weights or units"},
    {.name = "prune-scope", .meta = "S", .type = CLI_PARSE, CLI_AT(T, prune.global),
     .parse = cli_parse_scope, .dflt = "layer", .help = "layer or global"},
    {.name = "prune-criterion", .meta = "C", .type = CLI_PARSE, CLI_AT(T, prune.norm),
     .parse = cli_parse_criterion, .dflt = "l2", .help = "units: l1 or l2 norm"},

    {.section = "Gradient health", .name = "repair", .meta = "MODE", .type = CLI_PARSE, CLI_AT(T, repair),
     .parse = parse_repair,
     .help = "auto (default): GRA probes the network, re-conditions unhealthy layers and repairs "
             "gradients every step; off: plain training"},
    {.name = "monitor-every", .meta = "N", .type = CLI_INT, CLI_AT(T, monitor_every), .lo = 1,
     .hi = 1 << 30, .help = "write per-layer gradient health to --metrics every N steps"},
    {.name = "curvature-every", .meta = "N", .type = CLI_INT, CLI_AT(T, curvature_every), .lo = 1,
     .hi = 1 << 30,
     .help = "with --monitor-every, every Nth health line also gets the curvature along that "
             "step (slope, Gauss-Newton curvature, Newton ratio; about 1.5 steps' time each)"},
    {.name = "check-numerics", .type = CLI_FLAG, CLI_AT(T, check_numerics),
     .help = "stop at the first NaN or Inf in any output or gradient, naming the op and layer "
             "(without it GRA keeps them out of the weights)"},

    {.section = "Running", .name = "threads", .meta = "N", .type = CLI_INT, CLI_AT(T, threads),
     .lo = 0, .hi = 1024,
     .help = "threads for OpenMP and the BLAS (default: all cores; under mpirun, the cores shared "
             "among the ranks)"},
    {.table = cli_device_options, CLI_AT(T, device)},
    {.table = cli_precision_options, CLI_AT(T, precision)},
    {.name = "sync-bn", .type = CLI_FLAG, CLI_AT(T, sync_bn),
     .help = "under mpirun: batch norm's statistics over the whole global batch"},
    {.name = "max-memory", .meta = "SIZE", .type = CLI_PARSE, CLI_AT(T, max_memory),
     .parse = cli_parse_bytes,
     .help = "memory the run may take, e.g. 2G or 512M (default: what the machine has "
             "available); checked before allocating"},
    {.name = "metrics", .meta = "FILE", .type = CLI_TEXT, CLI_AT(T, metrics_path),
     .help = "write JSON lines: one per epoch, one at the end"},
    {.name = "report", .meta = "FILE.html", .type = CLI_TEXT, CLI_AT(T, report),
     .help = "write an HTML report (loss, accuracy, gradient flow, each layer's curvature before and "
             "after training); turns on --monitor-every 10, --curvature-every 5 and "
             "keeps the metrics in FILE.html.jsonl unless --metrics names a file"},
    {.name = "quiet", .type = CLI_FLAG, CLI_AT(T, quiet), .help = "print only the final result"},
    {.name = "log-every", .meta = "N", .type = CLI_INT, CLI_AT(T, log_every), .lo = 1, .hi = 1 << 30,
     .help = "a plain progress line every N batches instead of the line redrawn in place"},
    CLI_END,
};
#undef T

static const cli_command train_command = {
    .name = "train", .usage = "[options]",
    .about = "Train a model and evaluate it on the test split.", .options = train_options,
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

static void on_repair(void *user, const rg_repair_event *e) {
    progress *p = user;
    if (!p->metrics) return;
    fprintf(p->metrics, "{\"event\":\"repair\",\"step\":%ld,\"layer\":", e->step);
    cli_json_str(p->metrics, e->layer);
    fprintf(p->metrics, ",\"verdict\":\"%s\",\"action\":\"%s\",", e->verdict, e->action);
    cli_json_num(p->metrics, "factor", e->factor, true);
    fprintf(p->metrics, "}\n");
}

static void on_checkpoint(void *user, const char *path) {
    progress *p = user;
    if (!p->quiet) printf("saved %s\n", path);
    if (p->metrics) {
        fprintf(p->metrics, "{\"event\":\"checkpoint\",\"path\":");
        cli_json_str(p->metrics, path);
        fprintf(p->metrics, "}\n");
    }
}

/* {"event":"health","step":S,"layers":[{"layer":..,"grad_norm":..,...},...]} */
static void on_health(void *user, long step, const rg_monitor *mon) {
    progress *p = user;
    if (!p->metrics) return;
    double slope, curvature;
    rg_monitor_step_curvature(mon, &slope, &curvature);
    fprintf(p->metrics, "{\"event\":\"health\",\"step\":%ld,", step);
    cli_json_num(p->metrics, "step_slope", slope, false);
    cli_json_num(p->metrics, "step_curvature", curvature, false);
    cli_json_num(p->metrics, "newton_ratio", curvature > 0 ? -slope / curvature : NAN, false);
    fprintf(p->metrics, "\"layers\":[");
    for (int i = 0; i < rg_monitor_layer_count(mon); i++) {
        const rg_layer_health *h = rg_monitor_layer(mon, i);
        fprintf(p->metrics, "%s{\"layer\":", i ? "," : "");
        cli_json_str(p->metrics, h->name);
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



/* Everything one `regrad train` holds, freed by train_ctx_free. */
typedef struct train_ctx {
    train_opts o;
    rg_tensor_file *resume, *weights;
    cJSON *saved;            /* a resumed run's own arguments */
    rg_optim_config optim;
    rg_dataset *train, *test;
    rg_model m;
    progress prog;
    rg_meta meta;
    char *args_json, *names_json;
    char report_metrics[4200];
    struct sigaction old_sa;
    bool sa_set;
    int ranks, rank;
    double t0;
} train_ctx;

/* The arguments worth replaying on resume, as a JSON array: all but --resume and
 * --stop-after, which belong to one invocation; after a resumed run's own. */
static char *saved_args(int argc, char **argv, const cJSON *before) {
    cJSON *a = before ? cJSON_Duplicate(before, 1) : cJSON_CreateArray();
    for (int i = 1; i < argc; i++) {
        const char *x = argv[i];
        if (strcmp(x, "--resume") == 0 || strcmp(x, "--stop-after") == 0) {
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

/* Opens the checkpoint a --resume names (a file, or a folder's last.safetensors): -1, or
 * the exit code after saying why not. */
static int open_resume(const char *cmd, const char *what, rg_tensor_file **f) {
    char path[4200];
    struct stat st;
    if (stat(what, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof path, "%s/last.safetensors", what);
        if (stat(path, &st) != 0) {
            cli_error(cmd, "--resume %s: no checkpoint in that folder (no last.safetensors): give a run's "
                           "--checkpoint-dir, or one of its epoch_N.safetensors", what);
            return EXIT_RUNTIME;
        }
    } else snprintf(path, sizeof path, "%s", what);
    const rg_status s = rg_safetensors_load(path, f);
    return s ? cli_fail(cmd, s) : -1;
}

/* The options: defaults, then (resuming) the run's own arguments, then these. */
static int train_parse(train_ctx *t, int argc, char **argv) {
    const char *cmd = train_command.name;
    train_opts *o = &t->o;
    *o = (train_opts){.lr = NAN, .momentum = NAN, .wd = NAN};
    cli_defaults(&train_command, o);
    int r = cli_parse(&train_command, argc, argv, o, NULL);
    if (r >= 0 || !o->resume) return r;
    if ((r = open_resume(cmd, o->resume, &t->resume)) >= 0) return r;
    const char *args = rg_tensor_file_meta(t->resume, "train_args");
    t->saved = args ? cJSON_Parse(args) : NULL;
    if (!cJSON_IsArray(t->saved)) {
        cli_error(cmd, "'%s' is not a training checkpoint of 'regrad train' (no saved arguments): "
                       "start a new run with --weights instead", o->resume);
        return EXIT_USAGE;
    }
    const int n = cJSON_GetArraySize(t->saved);
    char **replay = calloc((size_t)n + 2, sizeof *replay);
    if (!replay) return cli_error(cmd, "out of memory replaying %d saved arguments", n), EXIT_RUNTIME;
    replay[0] = argv[0];
    for (int i = 0; i < n; i++) replay[i + 1] = cJSON_GetArrayItem(t->saved, i)->valuestring;
    const char *resume_arg = o->resume;
    const long stop_after = o->stop_after;
    *o = (train_opts){.lr = NAN, .momentum = NAN, .wd = NAN};
    cli_defaults(&train_command, o);
    if ((r = cli_parse(&train_command, n + 1, replay, o, NULL)) < 0)
        r = cli_parse(&train_command, argc, argv, o, NULL);
    free(replay);
    o->resume = resume_arg, o->stop_after = stop_after;
    return r;
}

/* Every cheap check before any data is read: the settings together, the optimizer, the
 * model spec and what it can do, the weights file. */
static int train_check(train_ctx *t) {
    const char *cmd = train_command.name;
    train_opts *o = &t->o;
    rg_status s;
    /* the remedies are GRA's baselines: they run without it unless it is asked for */
    const bool remedy = o->clip_norm > 0 || o->clip_layer > 0 || o->clip_value > 0 || o->agc > 0 ||
                        o->max_norm > 0;
    const bool repair = o->repair == REPAIR_AUTO || (o->repair == REPAIR_DEFAULT && !remedy);
    t->ranks = rg_dist_size(), t->rank = rg_dist_rank();
    if (t->rank > 0) o->quiet = true, o->metrics_path = NULL, o->report = NULL; /* rank 0 reports */
    if (t->ranks > 1 && !o->threads) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN) / t->ranks;
        o->threads = cores > 0 ? cores : 1;
    }
    t->prog = (progress){.tty = isatty(2), .quiet = o->quiet, .repair = repair, .log_every = o->log_every};
    if (o->report) { /* the report reads the metrics, with gradient snapshots and the
                      * curvature along the steps */
        if (!o->monitor_every) o->monitor_every = 10;
        if (!o->curvature_every) o->curvature_every = 5;
        if (!o->metrics_path) {
            snprintf(t->report_metrics, sizeof t->report_metrics, "%s.jsonl", o->report);
            o->metrics_path = t->report_metrics;
        }
    }
    t->optim = rg_optim_defaults(o->optimizer);
    if (!isnan(o->lr)) t->optim.lr = (float)o->lr;
    if (!isnan(o->momentum)) t->optim.momentum = (float)o->momentum;
    if (!isnan(o->wd)) t->optim.weight_decay = (float)o->wd;
    rg_model probe = {0};
    const int r = cli_device(cmd, o->device);
    if (r >= 0) return r;
    if ((s = rg_optim_check(&t->optim))) return cli_fail(cmd, s);
    s = rg_model_build(o->model_spec, &(rg_model_opts){.loss = o->loss}, &probe);
    const bool open_size = s == RG_ERR_SHAPE && (strncmp(o->model_spec, "keras:", 6) == 0 ||
                                                 strncmp(o->model_spec, "onnx:", 5) == 0);
    if (s && !open_size) return cli_fail(cmd, s); /* an input of open size: the data's */
    const bool lassonet = probe.lasso_m > 0, classifier = open_size || probe.loss != RG_NONE;
    /* GRA by default on a device only where every op has a tangent there in this precision
     * (asked for by name, rg_fit says why not) */
    if (cli_on_gpu(o->device) && o->repair == REPAIR_DEFAULT && t->prog.repair) {
        rg_status why = s ? s : cli_place(probe.graph, o->device, o->precision);
        if (why == RG_ERR_ARG) { /* a bad --precision: its error alone */
            rg_model_free(&probe);
            return cli_fail(cmd, why);
        }
        if (!why) why = rg_graph_check_tangents(probe.graph);
        if (why) { /* a change to what was asked for: said even when quiet */
            fprintf(stderr, "%s: note: GRA does not run on %s for this model yet (%s): training without it\n", cmd,
                    o->device, s ? "its size comes from the data" : rg_last_error());
            t->prog.repair = false;
        }
    }
    rg_model_free(&probe);
    if (!classifier) {
        cli_error(cmd, "model '%s' has no classifier (top=0): training needs top=1", o->model_spec);
        return EXIT_USAGE;
    }
    if ((o->lasso > 0 || o->lasso_path.stages) && !lassonet) {
        cli_error(cmd, "--lasso and --lasso-path need a lassonet model (--model lassonet:...)");
        return EXIT_USAGE;
    }
    if (o->curvature_every && !o->monitor_every) {
        cli_error(cmd, "--curvature-every measures at health snapshots: add --monitor-every N (or --report)");
        return EXIT_USAGE;
    }
    if (o->lasso_path.stages && (o->checkpoint_dir || o->resume)) {
        cli_error(cmd, "--lasso-path runs several trainings: it does not combine with "
                       "--checkpoint-dir or --resume");
        return EXIT_USAGE;
    }
    if (!o->weights && !o->resume && strncmp(o->model_spec, "onnx:", 5) == 0)
        o->weights = o->model_spec + 5; /* an ONNX model comes with its weights */
    if (o->weights && (s = rg_weights_load(o->weights, &t->weights))) return cli_fail(cmd, s);
    return -1;
}

static int train_open_data(train_ctx *t) {
    const char *cmd = train_command.name;
    train_opts *o = &t->o;
    rg_status s;
    rg_set_threads((int)o->threads);
    o->dopt.warn = cli_warn;
    o->dopt.classes = (int)o->classes;
    rg_data_options train_opt = o->dopt;
    train_opt.limit = (int)o->limit;
    if ((s = rg_dataset_open(o->data, &train_opt, &t->train, &t->test))) return cli_fail(cmd, s);
    if (o->test_data) {
        rg_dataset_free(t->test);
        t->test = NULL;
        if ((s = rg_dataset_open(o->test_data, &o->dopt, &t->test, NULL)) ||
            (s = rg_dataset_match_classes(t->test, t->train)))
            return cli_fail(cmd, s);
    }
    return -1;
}

/* What training runs with, from the options. */
static rg_fit_config fit_config(train_ctx *t) {
    const train_opts *o = &t->o;
    rg_prune_opts prune = o->prune;
    prune.amount = o->prune_schedule.amount;
    return (rg_fit_config){
        .epochs = (int)o->epochs, .batch = (int)o->batch, .seed = (uint64_t)o->seed,
        .val_split = (float)o->val_split, .optim = t->optim, .schedule = o->schedule,
        .augment = o->augment, .workers = (int)o->workers, .repair = t->prog.repair,
        .monitor_every = (int)o->monitor_every, .curvature_every = (int)o->curvature_every,
        .checkpoint_dir = o->checkpoint_dir,
        .checkpoint_every = (int)o->checkpoint_every, .keep = (int)o->keep, .meta = &t->meta,
        .resume = t->resume, .stop_after = (int)o->stop_after, .clip_norm = (float)o->clip_norm,
        .clip_tensor_norm = (float)o->clip_layer, .clip_value = (float)o->clip_value,
        .agc = (float)o->agc, .max_norm = (float)o->max_norm, .prune = prune,
        .prune_start = o->prune_schedule.start, .prune_end = o->prune_schedule.end,
        .stop = &stop_requested, .sync_bn = o->sync_bn};
}

/* The model for the data: built, heads added, layers frozen, compiled within the memory
 * budget, the weights loaded. */
static int train_build_model(train_ctx *t) {
    const char *cmd = train_command.name;
    const train_opts *o = &t->o;
    const rg_dataset *d = t->train;
    rg_status s;
    const rg_model_opts mo = {.c = d->c, .h = d->h, .w = d->w,
                              .classes = o->classes ? (int)o->classes : d->classes, .loss = o->loss,
                              .label_smoothing = (float)o->smoothing, .seed = (uint64_t)o->seed};
    if ((s = rg_model_build(o->model_spec, &mo, &t->m)) ||
        (o->aux_heads && (s = rg_model_add_aux_heads(&t->m, o->aux_heads))))
        return cli_fail(cmd, s);
    if (t->m.n_aux) rg_model_set_aux_weight(&t->m, (float)o->aux_weight);
    if (!cli_patterns_apply(cmd, &o->patterns, t->m.graph, o->model_spec)) return EXIT_USAGE;
    const rg_fit_config fc = fit_config(t);
    /* the budget is host memory's */
    const double budget = o->max_memory > 0 ? o->max_memory : !cli_on_gpu(o->device) ? (double)rg_memory_available() : 0;
    if ((s = cli_place(t->m.graph, o->device, o->precision)) ||
        (budget > 0 && (s = rg_fit_budget(&t->m, d, &fc, budget))) ||
        (s = rg_graph_compile(t->m.graph, (int)o->batch)))
        return cli_fail(cmd, s);
    rg_graph_check_numerics(t->m.graph, o->check_numerics);
    if (t->weights) {
        rg_load_report rep;
        const int flags = (o->partial ? RG_LOAD_PARTIAL : 0) | (o->classes ? RG_LOAD_NEW_HEAD : 0);
        if ((s = rg_model_load(&t->m, t->weights, flags, &rep))) return cli_fail(cmd, s);
        if (!o->quiet) cli_print_load_report(o->weights, &rep);
    }
    return -1;
}

/* The metrics file's first line, the banner, and what each checkpoint records to rebuild
 * this run or predict with its model. */
static int train_open_metrics(train_ctx *t, int argc, char **argv) {
    const train_opts *o = &t->o;
    const rg_dataset *d = t->train;
    if (o->metrics_path && !(t->prog.metrics = fopen(o->metrics_path, o->resume ? "a" : "w"))) {
        cli_error(train_command.name, "cannot write metrics file '%s': check the directory exists "
                                      "and is writable", o->metrics_path);
        return EXIT_RUNTIME;
    }
    if (t->prog.metrics) {
        fprintf(t->prog.metrics, "{\"event\":\"start\",\"model\":");
        cli_json_str(t->prog.metrics, o->model_spec);
        fprintf(t->prog.metrics, ",\"data\":");
        cli_json_str(t->prog.metrics, o->data);
        fprintf(t->prog.metrics, ",\"regrad\":\"%s\"}\n", RG_VERSION);
    }
    if (!o->quiet)
        printf("regrad %s: %s on %s (%d samples, %dx%dx%d, %d classes), %s lr %g, batch %ld, "
               "%d threads, GRA %s\n", RG_VERSION, o->model_spec, o->data, d->n, d->c, d->h, d->w,
               d->classes, rg_optim_name(o->optimizer), (double)t->optim.lr, o->batch,
               rg_get_threads(), t->prog.repair ? "auto" : "off");
    if (o->resume && !o->quiet)
        printf("resuming from %s at epoch %s\n", o->resume, rg_tensor_file_meta(t->resume, "epoch"));
    if (t->ranks > 1 && !o->quiet)
        printf("data-parallel: %d ranks x batch %ld = %ld per step, %d threads each, %s\n", t->ranks,
               o->batch, t->ranks * o->batch, rg_get_threads(),
               t->prog.repair ? "rank 0's weights broadcast after each step (GRA)" : "gradients all-reduced");
    static char size_text[32], channels_text[8];
    snprintf(size_text, sizeof size_text, "%dx%d", d->h, d->w);
    snprintf(channels_text, sizeof channels_text, "%d", d->c);
    t->args_json = saved_args(argc, argv, t->saved);
    t->names_json = class_names_json(d);
    rg_meta_set(&t->meta, "train_args", t->args_json);
    rg_meta_set(&t->meta, "data", o->data);
    rg_meta_set(&t->meta, "preprocess", rg_preprocess_name(o->dopt.preprocess));
    rg_meta_set(&t->meta, "input_size", size_text);
    rg_meta_set(&t->meta, "channels", channels_text);
    if (t->names_json) rg_meta_set(&t->meta, "class_names", t->names_json);
    return -1;
}

/* With --report: every layer's curvature figures (rg_monitor_measure_curvature, 10 power
 * iterations) on the first training samples, before training and after, as a metrics
 * event (in bf16 the inputs' conditioning alone).  The measurement leaves the weights, the
 * statistics and the dropout stream as they were; a model whose loss has no curvature
 * products (or a failure) writes nothing. */
#define CURVATURE_SAMPLES 64
static void write_curvature(train_ctx *t, const char *when) {
    FILE *f = t->prog.metrics;
    rg_graph *g = t->m.graph;
    if (!f || !t->o.report || t->m.loss == RG_NONE) return;
    int idx[CURVATURE_SAMPLES], b = rg_graph_max_batch(g);
    if (b > CURVATURE_SAMPLES) b = CURVATURE_SAMPLES;
    if (b > t->train->n) b = t->train->n;
    for (int i = 0; i < b; i++) idx[i] = i;
    rg_monitor *mon = rg_monitor_create(g);
    /* the layers' Gauss-Newton eigenvalues by 10 power iterations (not in bf16, whose
     * gradients would round the products away) */
    if (mon && !rg_dataset_batch(t->train, idx, b, rg_graph_input_buffer(g, t->m.input), rg_graph_labels(g)) &&
        !rg_monitor_measure_curvature(mon, t->m.loss, b, t->o.precision && !strcmp(t->o.precision, "bf16") ? 0 : 10)) {
        fprintf(f, "{\"event\":\"curvature\",\"when\":\"%s\",\"layers\":[", when);
        for (int i = 0; i < rg_monitor_layer_count(mon); i++) {
            const rg_layer_health *h = rg_monitor_layer(mon, i);
            fprintf(f, "%s{\"layer\":", i ? "," : "");
            cli_json_str(f, h->name);
            fprintf(f, ",");
            cli_json_num(f, "input_cond", h->input_cond, false);
            cli_json_num(f, "mean_outlier", h->mean_outlier, false);
            cli_json_num(f, "gn_top", h->gn_top, false);
            fprintf(f, "\"ill_conditioned\":%s}", h->ill_conditioned ? "true" : "false");
        }
        fprintf(f, "]}\n");
    }
    rg_monitor_free(mon);
}

/* Training: once, or once per stage of a lasso path (printing each stage's selection). */
static int train_run(train_ctx *t) {
    const char *cmd = train_command.name;
    const train_opts *o = &t->o;
    rg_status s;
    rg_fit_config fc = fit_config(t);
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &t->old_sa);
    t->sa_set = true;
    const rg_fit_callbacks cb = {.on_batch = on_batch, .on_epoch = on_epoch, .on_repair = on_repair,
                                 .on_health = on_health, .on_checkpoint = on_checkpoint, .user = &t->prog};
    write_curvature(t, "before");
    t->t0 = rg_seconds();
    const lasso_path *path = &o->lasso_path;
    for (int stage = 0; stage < (path->stages ? path->stages : 1); stage++) {
        const double lambda = path->stages ? path->lambda * pow(path->factor, stage) : o->lasso;
        if (t->m.lasso_m > 0 && (s = rg_lassonet_set_lambda(&t->m, (float)lambda))) return cli_fail(cmd, s);
        if ((s = rg_fit(&t->m, t->train, &fc, &cb))) {
            if (t->prog.tty && !o->quiet && s != RG_STOPPED) fputc('\n', stderr);
            cli_progress_line(false);
            return s == RG_STOPPED ? (cli_error(cmd, "%s", rg_last_error()), 130) : cli_fail(cmd, s);
        }
        double loss = NAN, acc = NAN;
        if (path->stages && t->test && (s = rg_evaluate(&t->m, t->test, NULL, t->test->n, &loss, &acc)))
            return cli_fail(cmd, s);
        if (path->stages)
            printf("lambda %-10.4g %5d features selected  test_acc %.4f\n", lambda,
                   rg_lassonet_selected(&t->m, NULL), acc);
    }
    write_curvature(t, "after");
    return -1;
}

/* A lassonet's selection, as indices (and pixels for images). */
static void print_selection(const rg_model *m, const rg_dataset *d) {
    const int total = d->c * d->h * d->w;
    int *feat = malloc((size_t)total * sizeof *feat);
    const int nf = feat ? rg_lassonet_selected(m, feat) : 0;
    printf("selected features (%d of %d):", nf, total);
    for (int i = 0; i < nf && i < 64; i++) {
        if (d->h > 1 && d->c == 1) printf(" %d(r%d,c%d)", feat[i], feat[i] / d->w, feat[i] % d->w);
        else printf(" %d", feat[i]);
    }
    printf("%s\n", nf > 64 ? " ..." : "");
    free(feat);
}

/* Every rank must hold the same weights after training. */
static int ranks_agree(train_ctx *t, uint64_t hash) {
    const char *cmd = train_command.name;
    const train_opts *o = &t->o;
    bool same;
    rg_status s = rg_dist_agree(hash, &same);
    if (s) return cli_fail(cmd, s);
    if (!same) {
        cli_error(cmd, "the ranks' weights differ after training (a bug): report it");
        return EXIT_RUNTIME;
    }
    const double steps = (double)o->epochs * ((t->train->n * (1 - o->val_split) + t->ranks * o->batch - 1) /
                                              (t->ranks * o->batch));
    if (!o->quiet)
        printf("weights identical on %d ranks; %.1f MiB all-reduced/broadcast per step, %.2f s in "
               "collectives\n", t->ranks, (double)rg_dist_comm_bytes() / (1 << 20) / fmax(1, steps),
               rg_dist_comm_seconds());
    return -1;
}

/* The selection, the test split and the heads' accuracy, the ranks' agreement, the end. */
static int train_finish(train_ctx *t) {
    const char *cmd = train_command.name;
    rg_status s;
    if (t->m.lasso_m > 0) print_selection(&t->m, t->train);
    double test_loss = NAN, test_acc = NAN, aux_acc[RG_MAX_AUX];
    if (t->test && ((s = rg_evaluate(&t->m, t->test, NULL, t->test->n, &test_loss, &test_acc)) ||
                    (t->m.n_aux && (s = rg_evaluate_aux(&t->m, t->test, aux_acc)))))
        return cli_fail(cmd, s);
    for (int h = 0; t->test && h < t->m.n_aux; h++)
        printf("aux_head_%d (after %s): test_acc %.4f\n", h + 1,
               rg_node_name(t->m.graph, t->m.aux_layer[h]), aux_acc[h]);
    const double seconds = rg_seconds() - t->t0;
    if (t->train->skipped || (t->test && t->test->skipped))
        cli_warn(NULL, "skipped files: see the warnings above (use --strict to stop on them)");
    const char *uncaptured;
    rg_graph_replays(t->m.graph, &uncaptured);
    if (uncaptured) {
        char line[300];
        snprintf(line, sizeof line, "CUDA graphs (REGRAD_GRAPHS=1): a pass ran uncaptured: %s", uncaptured);
        cli_warn(NULL, line);
    }
    const unsigned long long hash = (unsigned long long)rg_graph_params_hash(t->m.graph);
    int r;
    if (t->ranks > 1 && (r = ranks_agree(t, hash)) >= 0) return r;
    if (t->rank > 0) return -1;
    if (t->test) printf("test_loss %.4f  test_acc %.4f", test_loss, test_acc);
    else printf("no test split");
    printf("  (%.1fs, weights %016llx)\n", seconds, hash);
    if (t->prog.metrics) {
        fprintf(t->prog.metrics, "{\"event\":\"end\",");
        cli_json_num(t->prog.metrics, "test_loss", test_loss, false);
        cli_json_num(t->prog.metrics, "test_acc", test_acc, false);
        cli_json_num(t->prog.metrics, "seconds", seconds, false);
        fprintf(t->prog.metrics, "\"weights_hash\":\"%016llx\"}\n", hash);
    }
    return -1;
}

/* Closes what is open; the metrics file's close can still fail the run, and the report is
 * written from it.  Returns the final exit code. */
static int train_ctx_free(train_ctx *t, int code) {
    const train_opts *o = &t->o;
    if (t->sa_set) sigaction(SIGINT, &t->old_sa, NULL);
    if (t->prog.metrics && fclose(t->prog.metrics) != 0 && code == 0) {
        cli_error(train_command.name, "could not finish writing '%s' (disk full?)", o->metrics_path);
        code = EXIT_RUNTIME;
    }
    if (o->report && t->prog.metrics && (code == 0 || code == 130)) {
        const int rc = cli_write_report(train_command.name, o->metrics_path, o->report, NULL);
        if (rc) code = rc;
        else if (!o->quiet) printf("report: %s\n", o->report);
    }
    free(t->args_json);
    free(t->names_json);
    rg_model_free(&t->m);
    rg_dataset_free(t->train);
    rg_dataset_free(t->test);
    rg_tensor_file_free(t->resume);
    rg_tensor_file_free(t->weights);
    cJSON_Delete(t->saved);
    return code;
}

static int train_main(int argc, char **argv) {
    train_ctx t = {0};
    int r = train_parse(&t, argc, argv);
    if (r < 0) r = train_check(&t);
    if (r < 0) r = train_open_data(&t);
    if (r < 0) r = train_build_model(&t);
    if (r < 0) r = train_open_metrics(&t, argc, argv);
    if (r < 0) r = train_run(&t);
    if (r < 0) r = train_finish(&t);
    return train_ctx_free(&t, r < 0 ? 0 : r);
}

/* Under mpirun every rank runs this; a rank that fails takes the job down. */
int cmd_train(int argc, char **argv) {
    rg_status s = rg_dist_init(&argc, &argv);
    if (s) return cli_fail("train", s);
    const int code = train_main(argc, argv);
    if (code && rg_dist_size() > 1) {
        fflush(NULL);
        rg_dist_abort(code);
    }
    rg_dist_finalize();
    return code;
}
