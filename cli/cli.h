/*
 * cli.h — helpers shared by the regrad subcommands: argument parsing that fails with one
 * clear line, exit codes, and the subcommand entry points.
 */
#ifndef RG_CLI_H
#define RG_CLI_H

#include "regrad.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { EXIT_USAGE = 2, EXIT_RUNTIME = 1 };

/* Prints "regrad CMD: message" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a library status: 2 for argument errors, 1 for the rest. */
int cli_exit_code(rg_status s);
/* Reports a library failure and returns its exit code. */
int cli_fail(const char *cmd, rg_status s);

/* ---- options: one table per subcommand (options.c) */

typedef enum cli_type {
    CLI_FLAG, /* no value: sets a bool */
    CLI_INT,  /* a whole number in [lo, hi] into an int or a long */
    CLI_REAL, /* a number in [lo, hi] ((lo, hi] with open_lo) into a float or a double */
    CLI_TEXT, /* the text itself (const char *) */
    CLI_PARSE /* the row's parser decides */
} cli_type;

typedef struct cli_option cli_option;
/* Reads text into field; false after printing one line naming the option and the fix. */
typedef bool (*cli_parser)(const char *cmd, const cli_option *r, const char *text, void *field);

struct cli_option {
    const char *name;         /* "epochs" for --epochs; NULL (and no table) ends a table */
    char short_name;          /* 'o' for -o as well (0: none) */
    const char *meta;         /* what the value looks like in help: "N", "SPEC" */
    cli_type type;
    size_t at, size;          /* the field: offsetof and sizeof (CLI_AT) */
    double lo, hi;            /* CLI_INT and CLI_REAL: the accepted range */
    bool open_lo;             /* lo itself refused */
    const char *dflt;         /* the default as text, parsed as a value is (NULL: zero) */
    bool hide_default;        /* help does not show it (an internal or derived default) */
    cli_parser parse;         /* CLI_PARSE */
    int choices;              /* 1 + an rg_names_of: help lists what it takes (0: none) */
    const char *help;         /* a newline in it starts a line */
    const char *section;      /* a heading help prints before this option */
    const cli_option *table;  /* a table of shared options, its fields from `at` on */
};
#define CLI_AT(type, field) .at = offsetof(type, field), .size = sizeof(((type *)0)->field)
#define CLI_END {0}

typedef struct cli_command {
    const char *name;         /* "train" */
    const char *usage;        /* after "regrad NAME": "[options]" */
    const char *about;        /* what it does, a paragraph */
    const cli_option *options;
} cli_command;

/* Sets every option's default in opts. */
void cli_defaults(const cli_command *c, void *opts);
/* Parses argv into opts (over what is there: defaults, or an earlier parse).  Returns -1 to
 * go on, 0 after printing --help, or EXIT_USAGE after printing one line.  Arguments that
 * are not options start at *first_arg; with first_arg NULL any is a usage error. */
int cli_parse(const cli_command *c, int argc, char **argv, void *opts, int *first_arg);
void cli_help(const cli_command *c, FILE *f);

/* Writes s as a JSON string (quotes, backslashes and control characters escaped). */
void cli_json_str(FILE *f, const char *s);
/* Writes "key":value (null for NaN or Inf) and a comma unless last. */
void cli_json_num(FILE *f, const char *key, double v, bool last);


/* Parsers of option values (common.c): HxW into an rg_data_options' height and width
 * (the row's field is the struct); 1 or 3 channels (int); the library's names (an
 * rg_preprocess, rg_optim_kind, rg_schedule, rg_augment, rg_loss_kind); CxHxW into int[3];
 * a size with K, M or G into a double of bytes; --freeze and --trainable patterns, in order,
 * into a cli_patterns; pruning's weights|units (rg_prune_structure), layer|global (bool)
 * and l1|l2 (int norm). */
bool cli_parse_input_size(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_channels(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_preprocess(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_optimizer(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_schedule(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_augment(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_loss(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_shape(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_bytes(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_freeze(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_trainable(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_structure(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_scope(const char *cmd, const cli_option *r, const char *text, void *field);
bool cli_parse_criterion(const char *cmd, const cli_option *r, const char *text, void *field);

/* The options of every command that reads images, over an rg_data_options; --threads,
 * over a long. */
extern const cli_option cli_data_options[];
extern const cli_option cli_threads_options[];
/* --device, over a const char *; cli_device: -1 to go on (the CPU, or a device there is),
 * or the exit code after one line saying why the device cannot be used. */
extern const cli_option cli_device_options[];
int cli_device(const char *cmd, const char *device);
/* --precision, over a const char *: fp32 (the default, strict), or on a device tf32 or bf16 */
extern const cli_option cli_precision_options[];
/* g placed on the device, in the precision (before compiling it) */
rg_status cli_place(rg_graph *g, const char *device, const char *precision);
/* Whether a device name (NULL: the default) names a GPU rather than the CPU. */
bool cli_on_gpu(const char *device);
/* Prints a library warning as "regrad: warning: ..." (thread-safe), on its own line even
 * while a progress line is drawn (cli_progress_line says when one is). */
void cli_warn(void *user, const char *message);
void cli_progress_line(bool shown);

/* A model rebuilt from a checkpoint's metadata (model, input, classes), placed (cli_place)
 * and compiled for `batch`, its weights loaded; class_names parsed when present (trained.c). */
typedef struct cli_trained {
    rg_tensor_file *file;
    rg_model m;
    int c, h, w, classes;
    struct cJSON *names; /* array of class names, or NULL */
} cli_trained;
/* Returns -1 when loaded, else the exit code after printing why. */
int cli_load_trained(const char *cmd, const char *path, int batch, const char *device, const char *precision,
                     cli_trained *t);
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
bool cli_patterns_apply(const char *cmd, const cli_patterns *p, rg_graph *g, const char *spec);
/* "weights: N tensors loaded from PATH, ..." : what a load found. */
void cli_print_load_report(const char *path, const rg_load_report *rep);


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
int cmd_export(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* Writes the HTML report of a metrics file or an experiment's JSON (report.c); returns an
 * exit code after printing any problem. */
int cli_write_report(const char *cmd, const char *in_path, const char *out_path, const char *title);

#endif
