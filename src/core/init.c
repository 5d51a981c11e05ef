/*
 * init.c — parameter initialisers (He, Glorot, LeCun, PyTorch default, normal, zeros).
 *
 * Scales follow Keras and PyTorch: He N(0, 2/fan_in), Glorot U(±sqrt(6/(in+out))),
 * LeCun N(0, 1/fan_in), torch U(±1/sqrt(fan_in)) (what nn.Linear's kaiming_uniform(a=√5)
 * reduces to).  Keras draws its "normal" variants from a truncated normal; regrad uses the
 * plain normal with the same variance, as PyTorch's kaiming_normal_ and xavier_normal_ do.
 */
#include "../internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const init_names[RG_INIT_COUNT] = {
    [RG_INIT_ZEROS] = "zeros",
    [RG_INIT_ONES] = "ones",
    [RG_INIT_HE_NORMAL] = "he_normal",
    [RG_INIT_HE_UNIFORM] = "he_uniform",
    [RG_INIT_GLOROT_NORMAL] = "glorot_normal",
    [RG_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [RG_INIT_LECUN_NORMAL] = "lecun_normal",
    [RG_INIT_LECUN_UNIFORM] = "lecun_uniform",
    [RG_INIT_TORCH] = "torch",
    [RG_INIT_NORMAL] = "normal",
};

const char *rg_init_name(rg_init_kind k) {
    return (k >= 0 && k < RG_INIT_COUNT) ? init_names[k] : "?";
}

/* Every name rg_init_parse takes: the kinds' names (normal only as normal:STD) and Keras's
 * short forms, the normal variants for he and lecun, uniform for glorot (xavier). */
static const char *const parsed_names[] = {
    "he", "he_normal", "he_uniform", "glorot", "glorot_uniform", "xavier", "glorot_normal",
    "lecun", "lecun_normal", "lecun_uniform", "torch", "normal:STD", "zeros", "ones"};
static const rg_init_kind parsed_kinds[] = {
    RG_INIT_HE_NORMAL, RG_INIT_HE_NORMAL, RG_INIT_HE_UNIFORM, RG_INIT_GLOROT_UNIFORM,
    RG_INIT_GLOROT_UNIFORM, RG_INIT_GLOROT_UNIFORM, RG_INIT_GLOROT_NORMAL, RG_INIT_LECUN_NORMAL,
    RG_INIT_LECUN_NORMAL, RG_INIT_LECUN_UNIFORM, RG_INIT_TORCH, RG_INIT_NORMAL, RG_INIT_ZEROS,
    RG_INIT_ONES};
_Static_assert(RG_COUNT_OF(parsed_names) == RG_COUNT_OF(parsed_kinds), "a kind for every name");

const char *const *rg_init_names(int *n) {
    *n = RG_COUNT_OF(parsed_names);
    return parsed_names;
}

rg_status rg_init_parse(const char *text, rg_init *out) {
    if (!text) return rg_fail(RG_ERR_ARG, "missing initialiser");
    if (strncmp(text, "normal:", 7) == 0) {
        char *end;
        double std = strtod(text + 7, &end);
        if (end == text + 7 || *end || !(std > 0) || !isfinite(std))
            return rg_fail(RG_ERR_ARG, "bad initialiser '%s': normal:STD needs a positive "
                                       "number, e.g. normal:0.05", text);
        *out = (rg_init){RG_INIT_NORMAL, (float)std};
        return RG_OK;
    }
    int n;
    const char *const *names = rg_init_names(&n);
    const int i = rg_name_index(names, n, text);
    if (i < 0 || parsed_kinds[i] == RG_INIT_NORMAL) return rg_fail_unknown("initialiser", text, names, n);
    *out = RG_INIT(parsed_kinds[i]);
    return RG_OK;
}

void rg_init_fill(float *dst, size_t n, rg_init init, int fan_in, int fan_out, rg_rng *rng) {
    double fi = fan_in > 0 ? fan_in : 1, fo = fan_out > 0 ? fan_out : 1;
    double bound = 0, std = 0;
    bool uniform = false;
    switch (init.kind) {
    case RG_INIT_ZEROS: memset(dst, 0, n * sizeof *dst); return;
    case RG_INIT_ONES: for (size_t i = 0; i < n; i++) dst[i] = 1.0f; return;
    case RG_INIT_HE_NORMAL: std = sqrt(2.0 / fi); break;
    case RG_INIT_HE_UNIFORM: uniform = true; bound = sqrt(6.0 / fi); break;
    case RG_INIT_GLOROT_NORMAL: std = sqrt(2.0 / (fi + fo)); break;
    case RG_INIT_GLOROT_UNIFORM: uniform = true; bound = sqrt(6.0 / (fi + fo)); break;
    case RG_INIT_LECUN_NORMAL: std = sqrt(1.0 / fi); break;
    case RG_INIT_LECUN_UNIFORM: uniform = true; bound = sqrt(3.0 / fi); break;
    case RG_INIT_TORCH: uniform = true; bound = 1.0 / sqrt(fi); break;
    case RG_INIT_NORMAL: std = init.arg; break;
    case RG_INIT_COUNT: break;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = uniform ? (float)((2.0 * rg_rng_uniform(rng) - 1.0) * bound)
                         : (float)(std * rg_rng_normal(rng));
}
