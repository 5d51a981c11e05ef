/*
 * schedule.c — learning-rate schedules: constant, step decay per epoch (StepLR), cosine
 * annealing per step (CosineAnnealingLR over the whole run), each with an optional linear
 * warm-up over the first N steps.
 */
#include "../internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_float(const char *s, char **end, float *out) {
    double v = strtod(s, end);
    if (*end == s || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

/* The forms rg_schedule_parse takes, each optionally followed by ",warmup:STEPS". */
static const char *const schedule_names[] = {"constant", "step:EPOCHS:GAMMA", "cosine",
                                             "cosine:MIN_LR"};

const char *const *rg_schedule_names(int *n) {
    *n = RG_COUNT_OF(schedule_names);
    return schedule_names;
}

rg_status rg_schedule_parse(const char *text, rg_schedule *out) {
    rg_schedule s = {.kind = RG_SCHED_CONSTANT, .gamma = 0.1f};
    char usage[160], list[96];
    snprintf(usage, sizeof usage, "use %s, optionally followed by ,warmup:STEPS (e.g. "
             "cosine,warmup:500)", rg_name_list(schedule_names, RG_COUNT_OF(schedule_names), list, sizeof list));
    if (!text || !*text) return rg_fail(RG_ERR_ARG, "empty schedule: %s", usage);
    char buf[128];
    if (strlen(text) >= sizeof buf) return rg_fail(RG_ERR_ARG, "schedule too long: %s", usage);
    strcpy(buf, text);
    char *warm = strstr(buf, ",warmup:");
    if (warm) {
        *warm = 0;
        char *end;
        long w = strtol(warm + 8, &end, 10);
        if (end == warm + 8 || *end || w < 0)
            return rg_fail(RG_ERR_ARG, "bad warm-up in schedule '%s': %s", text, usage);
        s.warmup_steps = w;
    }
    char *end;
    if (strcmp(buf, "constant") == 0) {
        s.kind = RG_SCHED_CONSTANT;
    } else if (strncmp(buf, "step:", 5) == 0) {
        s.kind = RG_SCHED_STEP;
        long e = strtol(buf + 5, &end, 10);
        if (end == buf + 5 || *end != ':' || e < 1 || !parse_float(end + 1, &end, &s.gamma) ||
            *end || !(s.gamma > 0 && s.gamma <= 1))
            return rg_fail(RG_ERR_ARG, "bad schedule '%s': step needs EPOCHS >= 1 and GAMMA in "
                                       "(0, 1], e.g. step:10:0.1", text);
        s.step_epochs = (int)e;
    } else if (strcmp(buf, "cosine") == 0) {
        s.kind = RG_SCHED_COSINE;
    } else if (strncmp(buf, "cosine:", 7) == 0) {
        s.kind = RG_SCHED_COSINE;
        if (!parse_float(buf + 7, &end, &s.min_lr) || *end || s.min_lr < 0)
            return rg_fail(RG_ERR_ARG, "bad schedule '%s': cosine:MIN_LR needs MIN_LR >= 0", text);
    } else {
        return rg_fail(RG_ERR_ARG, "unknown schedule '%s': %s", text, usage);
    }
    *out = s;
    return RG_OK;
}

float rg_schedule_lr(const rg_schedule *s, float base_lr, long step, int epoch, long total_steps) {
    double lr = base_lr;
    switch (s->kind) {
    case RG_SCHED_STEP: lr *= pow(s->gamma, epoch / s->step_epochs); break;
    case RG_SCHED_COSINE:
        if (total_steps > 0 && s->min_lr < base_lr)
            lr = s->min_lr + (base_lr - s->min_lr) * 0.5 *
                                 (1.0 + cos(M_PI * (double)step / (double)total_steps));
        break;
    default: break;
    }
    if (step < s->warmup_steps) lr *= (double)(step + 1) / (double)s->warmup_steps;
    return (float)lr;
}
