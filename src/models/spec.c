/*
 * spec.c — model specs: a model name, optionally a colon and comma-separated key=value
 * options ("mlp:depth=4,width=128,act=tanh").  Each model reads the options it knows; any
 * option left unread is an error naming the valid ones, so a typo never passes silently.
 */
#include "models.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

rg_status spec_parse(const char *spec, spec_opts *o) {
    memset(o, 0, sizeof *o);
    if (!spec || !*spec) return rg_fail(RG_ERR_ARG, "empty model spec: try mlp:depth=2,width=256");
    if (strlen(spec) >= sizeof o->text) return rg_fail(RG_ERR_ARG, "model spec too long");
    strcpy(o->text, spec);
    char *colon = strchr(o->text, ':');
    o->model = o->text;
    if (!colon) return RG_OK;
    *colon = 0;
    for (char *item = colon + 1; item && *item;) {
        char *next = strchr(item, ',');
        if (next) *next++ = 0;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1])
            return rg_fail(RG_ERR_ARG, "bad model option '%s' in '%s': write key=value, "
                                       "e.g. mlp:depth=4,width=128", item, spec);
        *eq = 0;
        if (o->n == SPEC_MAX_OPTS || strlen(item) >= 32 || strlen(eq + 1) >= 64)
            return rg_fail(RG_ERR_ARG, "model spec '%s' has too many or too long options", spec);
        for (int k = 0; k < o->n; k++)
            if (strcmp(o->key[k], item) == 0)
                return rg_fail(RG_ERR_ARG, "model option '%s' given twice in '%s'", item, spec);
        strcpy(o->key[o->n], item);
        strcpy(o->val[o->n], eq + 1);
        o->n++;
        item = next;
    }
    return RG_OK;
}

const char *spec_find(spec_opts *o, const char *key) {
    for (int k = 0; k < o->n; k++)
        if (strcmp(o->key[k], key) == 0) {
            o->used[k] = true;
            return o->val[k];
        }
    return NULL;
}

rg_status spec_int(spec_opts *o, const char *key, int dflt, int lo, int hi, int *out) {
    const char *v = spec_find(o, key);
    if (!v) {
        *out = dflt;
        return RG_OK;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || errno || x < lo || x > hi)
        return rg_fail(RG_ERR_ARG, "model option %s=%s: expected a whole number in %d..%d", key,
                       v, lo, hi);
    *out = (int)x;
    return RG_OK;
}

rg_status spec_float(spec_opts *o, const char *key, float dflt, float lo, float hi, float *out) {
    const char *v = spec_find(o, key);
    if (!v) {
        *out = dflt;
        return RG_OK;
    }
    char *end;
    double x = strtod(v, &end);
    if (*end || !isfinite(x) || x < lo || x >= hi)
        return rg_fail(RG_ERR_ARG, "model option %s=%s: expected a number in [%g, %g)", key, v,
                       (double)lo, (double)hi);
    *out = (float)x;
    return RG_OK;
}

rg_status spec_act(spec_opts *o, rg_act dflt, rg_act *out) {
    const char *v = spec_find(o, "act");
    *out = dflt;
    return v ? rg_act_parse(v, out) : RG_OK;
}

rg_status spec_init(spec_opts *o, rg_init dflt, rg_init *out) {
    const char *v = spec_find(o, "init");
    *out = dflt;
    return v ? rg_init_parse(v, out) : RG_OK;
}

rg_status spec_init_only(spec_opts *o, rg_init dflt, rg_init *out) {
    rg_status s = spec_init(o, dflt, out);
    return s ? s : spec_done(o, "init, classes, input, top");
}

rg_status spec_done(spec_opts *o, const char *valid) {
    for (int k = 0; k < o->n; k++)
        if (!o->used[k])
            return rg_fail(RG_ERR_ARG, "unknown option '%s' for model %s: valid options are %s",
                           o->key[k], o->model, valid);
    return RG_OK;
}

rg_node named(rg_graph *g, rg_node n, const char *fmt, ...) {
    if (n == RG_NONE) return n;
    char name[RG_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    rg_node_set_name(g, n, name);
    return n;
}

rg_node model_input(rg_model *m, const model_dims *d) {
    return m->input = rg_input(m->graph, "input", 3, (int[]){d->c, d->h, d->w});
}

rg_node model_conv(rg_graph *g, rg_node x, int filters, int kernel, int stride, rg_padding mode,
                   int pad, bool bias, rg_init init, const char *name) {
    rg_conv_opts o = rg_conv_defaults();
    o.stride = stride, o.padding = mode, o.pad = pad, o.bias = bias, o.init = init;
    rg_node n = rg_conv2d(g, x, filters, kernel, &o);
    return name ? named(g, n, "%s", name) : n;
}
