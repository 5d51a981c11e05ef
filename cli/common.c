/*
 * common.c — what every regrad subcommand shares: one-line errors, exit codes, the parsers
 * of option values and the option tables several commands use, warnings, JSON output.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "regrad %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_exit_code(rg_status s) {
    return s == RG_OK ? 0 : s == RG_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
}

int cli_fail(const char *cmd, rg_status s) {
    cli_error(cmd, "%s", rg_last_error());
    return cli_exit_code(s);
}

/* "CxHxW" with each size in 1..65536. */
static bool cli_shape(const char *cmd, const char *opt, const char *text, int *c, int *h, int *w) {
    char tail;
    if (sscanf(text, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c < 1 || *h < 1 || *w < 1 ||
        *c > 65536 || *h > 65536 || *w > 65536) {
        cli_error(cmd, "--%s '%s': write CxHxW with positive sizes, e.g. 3x224x224", opt, text);
        return false;
    }
    return true;
}

/* ---- parsers of option values (cli_parser), shared by the commands' tables */

bool cli_parse_input_size(const char *cmd, const cli_option *r, const char *text, void *field) {
    rg_data_options *o = field;
    char tail;
    if (sscanf(text, "%dx%d%c", &o->height, &o->width, &tail) != 2 || o->height < 1 ||
        o->width < 1 || o->height > 16384 || o->width > 16384) {
        cli_error(cmd, "--%s '%s': write HxW with sizes in 1..16384, e.g. 224x224", r->name, text);
        return false;
    }
    return true;
}

bool cli_parse_channels(const char *cmd, const cli_option *r, const char *text, void *field) {
    if (strcmp(text, "1") != 0 && strcmp(text, "3") != 0) {
        cli_error(cmd, "--%s '%s': use 1 (gray) or 3 (RGB)", r->name, text);
        return false;
    }
    *(int *)field = text[0] - '0';
    return true;
}

/* A library parser's failure as one line naming the option. */
static bool library_says(const char *cmd, const cli_option *r, rg_status s) {
    if (s) cli_error(cmd, "--%s: %s", r->name, rg_last_error());
    return s == RG_OK;
}

bool cli_parse_preprocess(const char *cmd, const cli_option *r, const char *text, void *field) {
    return library_says(cmd, r, rg_preprocess_parse(text, field));
}
bool cli_parse_optimizer(const char *cmd, const cli_option *r, const char *text, void *field) {
    return library_says(cmd, r, rg_optim_parse(text, field));
}
bool cli_parse_schedule(const char *cmd, const cli_option *r, const char *text, void *field) {
    return library_says(cmd, r, rg_schedule_parse(text, field));
}
bool cli_parse_augment(const char *cmd, const cli_option *r, const char *text, void *field) {
    return library_says(cmd, r, rg_augment_parse(text, field));
}
bool cli_parse_loss(const char *cmd, const cli_option *r, const char *text, void *field) {
    return library_says(cmd, r, rg_loss_parse(text, field));
}

bool cli_parse_shape(const char *cmd, const cli_option *r, const char *text, void *field) {
    int *chw = field;
    return cli_shape(cmd, r->name, text, &chw[0], &chw[1], &chw[2]);
}

bool cli_parse_bytes(const char *cmd, const cli_option *r, const char *text, void *field) {
    char *end;
    const double v = strtod(text, &end);
    const double unit = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' || *end == 'm' ? 1048576.0
                        : *end == 'G' || *end == 'g' ? 1073741824.0 : 1.0;
    if (unit > 1) end++;
    if (end == text || *end || !(v > 0) || v * unit > 1e18) {
        cli_error(cmd, "--%s '%s': write a size such as 2G, 512M or 1000000", r->name, text);
        return false;
    }
    *(double *)field = v * unit;
    return true;
}

static bool add_pattern(const char *cmd, const char *text, void *field, bool trainable) {
    cli_patterns *p = field;
    if (p->n == CLI_MAX_PATTERNS) {
        cli_error(cmd, "at most %d --freeze/--trainable patterns", CLI_MAX_PATTERNS);
        return false;
    }
    p->pattern[p->n] = text;
    p->trainable[p->n++] = trainable;
    return true;
}
bool cli_parse_freeze(const char *cmd, const cli_option *r, const char *text, void *field) {
    (void)r;
    return add_pattern(cmd, text, field, false);
}
bool cli_parse_trainable(const char *cmd, const cli_option *r, const char *text, void *field) {
    (void)r;
    return add_pattern(cmd, text, field, true);
}

/* One of `n` words into an int (its index), or one line listing them. */
static bool one_of(const char *cmd, const cli_option *r, const char *text, const char *const *words,
                   int n, int *out) {
    for (int i = 0; i < n; i++)
        if (strcmp(text, words[i]) == 0) return *out = i, true;
    char list[128] = "";
    for (int i = 0, at = 0; i < n; i++)
        at += snprintf(list + at, sizeof list - (size_t)at, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", words[i]);
    cli_error(cmd, "--%s '%s': use %s", r->name, text, list);
    return false;
}

bool cli_parse_structure(const char *cmd, const cli_option *r, const char *text, void *field) {
    static const char *const w[] = {[RG_PRUNE_WEIGHTS] = "weights", [RG_PRUNE_UNITS] = "units"};
    int i;
    if (!one_of(cmd, r, text, w, 2, &i)) return false;
    *(rg_prune_structure *)field = (rg_prune_structure)i;
    return true;
}
bool cli_parse_scope(const char *cmd, const cli_option *r, const char *text, void *field) {
    static const char *const w[] = {"layer", "global"};
    int i;
    if (!one_of(cmd, r, text, w, 2, &i)) return false;
    *(bool *)field = i == 1;
    return true;
}
bool cli_parse_criterion(const char *cmd, const cli_option *r, const char *text, void *field) {
    static const char *const w[] = {"l1", "l2"};
    int i;
    if (!one_of(cmd, r, text, w, 2, &i)) return false;
    *(int *)field = i + 1;
    return true;
}

/* ---- options several commands share */

const cli_option cli_threads_options[] = {
    {.name = "threads", .meta = "N", .type = CLI_INT, .at = 0, .size = sizeof(long), .lo = 0,
     .hi = 1024, .help = "threads for OpenMP and the BLAS (default: all cores)"},
    CLI_END,
};

const cli_option cli_device_options[] = {
    {.name = "device", .meta = "NAME", .type = CLI_TEXT, .at = 0, .size = sizeof(const char *),
     .dflt = "cpu", .help = "cpu (default), or cuda[:N]: an NVIDIA GPU (docs/cuda.md)"},
    CLI_END,
};

const cli_option cli_precision_options[] = {
    {.name = "precision", .meta = "P", .type = CLI_TEXT, .at = 0, .size = sizeof(const char *), .dflt = "fp32",
     .help = "fp32 (strict), tf32 (the GPU's products on TF32 tensor cores) or bf16 (the GPU's "
             "activations and products in bf16; weights, loss and optimizer fp32)"},
    CLI_END,
};

rg_status cli_place(rg_graph *g, const char *device, const char *precision) {
    rg_status s = rg_graph_set_device(g, device);
    return s ? s : rg_graph_set_precision(g, precision);
}

bool cli_on_gpu(const char *device) { return device && strcmp(device, "cpu") != 0; }

int cli_device(const char *cmd, const char *device) {
    char desc[160];
    const rg_status s = rg_device_check(device, desc, sizeof desc);
    return s ? cli_fail(cmd, s) : -1;
}

const cli_option cli_data_options[] = {
    {.name = "input-size", .meta = "HxW", .type = CLI_PARSE, .at = 0, .parse = cli_parse_input_size,
     .help = "resize every image to HxW (triangle filter widened when shrinking, as PIL's "
             "BILINEAR; folders default to 224x224)"},
    {.name = "channels", .meta = "1|3", .type = CLI_PARSE, CLI_AT(rg_data_options, channels),
     .parse = cli_parse_channels, .help = "gray or RGB (converted as needed; folders default to 3)"},
    {.name = "preprocess", .meta = "MODE", .type = CLI_PARSE, CLI_AT(rg_data_options, preprocess),
     .parse = cli_parse_preprocess, .dflt = "scale01",
     .help = "scale01 ([0,1]), tf ([-1,1]), torch (ImageNet mean and std), caffe (BGR, "
             "ImageNet mean subtracted, 0..255)"},
    {.name = "strict", .type = CLI_FLAG, CLI_AT(rg_data_options, strict),
     .help = "a corrupt or unreadable image is an error (default: skip it with a warning)"},
    {.name = "max-pixels", .meta = "N", .type = CLI_INT, CLI_AT(rg_data_options, max_pixels),
     .lo = 1, .hi = 1099511627776.0, .help = "refuse images with more pixels (default 100000000)"},
    CLI_END,
};

/* Whether a progress line is drawn in place on stderr right now: warnings clear it first
 * so the two never share a line. */
static bool progress_shown;

void cli_progress_line(bool shown) { progress_shown = shown; }

void cli_warn(void *user, const char *message) {
    flockfile(stderr);
    if (progress_shown) fputs("\r\033[K", stderr);
    fprintf(stderr, "regrad: warning: %s\n", message);
    funlockfile(stderr);
}

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void cli_json_num(FILE *f, const char *key, double v, bool last) {
    if (isfinite(v)) fprintf(f, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

void cli_print_load_report(const char *path, const rg_load_report *rep) {
    printf("weights: %d tensors loaded from %s", rep->loaded, path);
    if (rep->reinitialised) printf(", classifier re-initialised (%d tensors)", rep->reinitialised);
    if (rep->missing) printf(", %d missing (e.g. %s)", rep->missing, rep->first_missing);
    if (rep->unexpected) printf(", %d unexpected (e.g. %s)", rep->unexpected, rep->first_unexpected);
    if (rep->mismatched) printf(", %d of another shape (e.g. %s)", rep->mismatched, rep->first_mismatched);
    printf("\n");
}

bool cli_patterns_apply(const char *cmd, const cli_patterns *p, rg_graph *g, const char *spec) {
    for (int i = 0; i < p->n; i++)
        if (rg_graph_set_trainable(g, p->pattern[i], p->trainable[i]) == 0) {
            cli_error(cmd, "--%s '%s' matches no layer with parameters; 'regrad summary --model "
                           "%s' lists the layer names", p->trainable[i] ? "trainable" : "freeze",
                      p->pattern[i], spec);
            return false;
        }
    return true;
}
