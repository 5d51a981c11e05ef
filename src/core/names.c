/*
 * names.c — tables of names: every enumerated choice (activations, initialisers,
 * optimizers, schedules, preprocessing, models, augmentations, losses) is one array of names
 * in the file that owns it, and from it come its parser, the "use a, b or c" of its error,
 * and the list the command's help prints (rg_names).
 */
#include "../internal.h"

#include <stdio.h>
#include <string.h>

int rg_name_index(const char *const *names, int n, const char *text) {
    for (int i = 0; text && i < n; i++)
        if (names[i] && strcmp(text, names[i]) == 0) return i;
    return -1;
}

const char *rg_name_list(const char *const *names, int n, char *buf, size_t len) {
    size_t at = 0;
    int shown = 0, total = 0;
    for (int i = 0; i < n; i++) total += names[i] != NULL;
    buf[0] = 0;
    for (int i = 0; i < n && at < len; i++) {
        if (!names[i]) continue;
        const char *sep = shown == 0 ? "" : shown == total - 1 ? " or " : ", ";
        at += (size_t)snprintf(buf + at, len - at, "%s%s", sep, names[i]);
        shown++;
    }
    return buf;
}

const char *rg_names(rg_names_of which, char *buf, size_t len) {
    const char *const *(*const tables[])(int *) = {
        [RG_NAMES_ACTIVATIONS] = rg_act_names,      [RG_NAMES_INITIALISERS] = rg_init_names,
        [RG_NAMES_OPTIMIZERS] = rg_optim_names,     [RG_NAMES_SCHEDULES] = rg_schedule_names,
        [RG_NAMES_PREPROCESSING] = rg_preprocess_names, [RG_NAMES_AUGMENTATIONS] = rg_augment_names,
        [RG_NAMES_MODELS] = rg_model_table_names,   [RG_NAMES_LOSSES] = rg_loss_names,
    };
    if ((unsigned)which >= (unsigned)RG_COUNT_OF(tables)) return buf[0] = 0, buf;
    int n;
    const char *const *names = tables[which](&n);
    return rg_name_list(names, n, buf, len);
}

rg_status rg_fail_unknown(const char *what, const char *text, const char *const *names, int n) {
    char list[512];
    return rg_fail(RG_ERR_ARG, "unknown %s '%s': use %s", what, text ? text : "",
                   rg_name_list(names, n, list, sizeof list));
}
