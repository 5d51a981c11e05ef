/*
 * cli.h — helpers shared by the regrad subcommands: argument parsing that fails with one
 * clear line, exit codes, and the subcommand entry points.
 */
#ifndef RG_CLI_H
#define RG_CLI_H

#include "regrad.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

enum { EXIT_USAGE = 2, EXIT_RUNTIME = 1 };

/* Prints "regrad CMD: message" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a library status: 2 for argument errors, 1 for the rest. */
int cli_exit_code(rg_status s);
/* Reports a library failure and returns its exit code. */
int cli_fail(const char *cmd, rg_status s);

/* Strict parsers: the whole text must be a number in [lo, hi]; on failure they print one
 * line naming the option and the valid range and return false. */
bool cli_int(const char *cmd, const char *opt, const char *text, long lo, long hi, long *out);
bool cli_float(const char *cmd, const char *opt, const char *text, double lo, double hi,
               bool lo_open, double *out);

/* Parses "CxHxW" with each size in 1..65536, or prints one line and returns false. */
bool cli_shape(const char *cmd, const char *opt, const char *text, int *c, int *h, int *w);
/* Writes "key":value (null for NaN or Inf) and a comma unless last. */
void cli_json_num(FILE *f, const char *key, double v, bool last);

/* Reports an unknown or malformed option, suggesting the closest valid one. */
void cli_bad_option(const char *cmd, char **argv, int optind_now, const struct option *opts);
/* Runs getopt_long quietly and reports problems itself; returns getopt's value, or -2
 * (after printing) on an unknown option or missing argument. */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shorts,
               const struct option *opts);

/* Options every command that reads images shares (values from 1000 up). */
enum { CLI_OPT_INPUT_SIZE = 1000, CLI_OPT_CHANNELS, CLI_OPT_PREPROCESS, CLI_OPT_STRICT,
       CLI_OPT_MAX_PIXELS };
#define CLI_DATA_OPTIONS                                                   \
    {"input-size", required_argument, 0, CLI_OPT_INPUT_SIZE},             \
    {"channels", required_argument, 0, CLI_OPT_CHANNELS},                 \
    {"preprocess", required_argument, 0, CLI_OPT_PREPROCESS},             \
    {"strict", no_argument, 0, CLI_OPT_STRICT},                           \
    {"max-pixels", required_argument, 0, CLI_OPT_MAX_PIXELS}
#define CLI_DATA_HELP                                                                         \
    "  --input-size HxW      resize every image to HxW (triangle filter widened when\n"       \
    "                        shrinking, as PIL's BILINEAR; folders default to 224x224)\n"    \
    "  --channels 1|3        gray or RGB (converted as needed; folders default to 3)\n"      \
    "  --preprocess MODE     scale01 (default, [0,1]), tf ([-1,1]), torch (ImageNet mean and\n" \
    "                        std), caffe (BGR, ImageNet mean subtracted, 0..255)\n"          \
    "  --strict              a corrupt or unreadable image is an error (default: skip it\n"  \
    "                        with a warning)\n"                                               \
    "  --max-pixels N        refuse images with more pixels (default 100000000)\n"
/* Handles one of CLI_DATA_OPTIONS: returns 1 when handled, 0 when c is not one, -1 after
 * printing why the value is bad.  Sets o->warn to print warnings. */
int cli_data_option(const char *cmd, int c, const char *arg, rg_data_options *o);
/* Prints a library warning as "regrad: warning: ..." (thread-safe), on its own line even
 * while a progress line is drawn (cli_progress_line says when one is). */
void cli_warn(void *user, const char *message);
void cli_progress_line(bool shown);

/* A model rebuilt from a checkpoint's metadata (model, input, classes), compiled for
 * `batch`, its weights loaded; class_names parsed when present (trained.c). */
typedef struct cli_trained {
    rg_tensor_file *file;
    rg_model m;
    int c, h, w, classes;
    struct cJSON *names; /* array of class names, or NULL */
} cli_trained;
/* Returns -1 when loaded, else the exit code after printing why. */
int cli_load_trained(const char *cmd, const char *path, int batch, cli_trained *t);
void cli_trained_free(cli_trained *t);
const char *cli_class_name(const cli_trained *t, int k, char *buf, size_t len);
/* Data options as the model was trained: input size, channels, preprocessing. */
void cli_trained_data_options(const cli_trained *t, rg_data_options *o);

/* --freeze and --trainable patterns, in the order given, and their application to a graph
 * (before compile): a pattern that matches no layer is a usage error naming it. */
#define CLI_MAX_PATTERNS 64
typedef struct cli_patterns {
    int n;
    const char *pattern[CLI_MAX_PATTERNS];
    bool trainable[CLI_MAX_PATTERNS];
} cli_patterns;
bool cli_pattern_add(const char *cmd, cli_patterns *p, const char *pattern, bool trainable);
bool cli_patterns_apply(const char *cmd, const cli_patterns *p, rg_graph *g, const char *spec);

/* Parses --structure weights|units, --scope layer|global, --criterion l1|l2 (opt names
 * which) into o; prints and returns false on a bad value (cmd_prune.c). */
bool cli_prune_option(const char *cmd, const char *opt, const char *arg, rg_prune_opts *o);

int cmd_train(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_diagnose(int argc, char **argv);
int cmd_experiment(int argc, char **argv);
int cmd_export_images(int argc, char **argv);
int cmd_augment_preview(int argc, char **argv);
int cmd_bench_data(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* Writes the HTML report of a metrics file or an experiment's JSON (report.c); returns an
 * exit code after printing any problem. */
int cli_write_report(const char *cmd, const char *in_path, const char *out_path, const char *title);

#endif
