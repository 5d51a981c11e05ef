/*
 * checkpoint.c — models and training runs as safetensors files.
 *
 * Tensors: every parameter and state tensor under its graph name ("dense_1.kernel",
 * "conv5_block3_3_conv.bias", "post_bn.moving_variance"); for a training checkpoint also
 * the optimizer's moments, "optimizer.<moment>.<parameter>" (e.g. optimizer.exp_avg.
 * dense_1.kernel), and GRA's trust-region statistics, "gra.<layer>.input_moment|mean|rows"
 * (rows: the samples of a dense layer with more inputs than its batch has samples).
 * Metadata (strings): format, regrad_version, model (the spec), input (CxHxW), classes,
 * and for training epoch, step, optimizer, optimizer_steps, forward_count (dropout's
 * counter), seed, gra (its counters, JSON), plus what the caller adds (the data spec,
 * class names, preprocessing, the command's arguments).
 *
 * Loading matches tensors by name and checks every one before changing anything, so a
 * load either fits or fails whole (or, when asked, loads exactly the part that fits and
 * says what it skipped).  rg_weights_load reads any weights file regrad takes: its own,
 * Keras's or ONNX's.
 */
#include "../internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT "regrad-checkpoint/1"

void rg_meta_set(rg_meta *m, const char *key, const char *value) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0) {
            m->value[i] = value;
            return;
        }
    if (m->n < RG_META_MAX) {
        m->key[m->n] = key;
        m->value[m->n++] = value;
    }
}

/* Auxiliary heads' tensors: training scaffolding, not part of an exported model. */
static bool is_aux(const char *name) { return strncmp(name, "aux_head_", 9) == 0; }

/* The buffers a save reads, in host memory: the graph's own, or (on a device) copies
 * down, which live until released. */
typedef struct host_buffers {
    const float *params, *state, *masks;
    float *moment[2];
    float *owned[5];
} host_buffers;

static rg_status host_buffers_take(host_buffers *h, rg_graph *g, rg_optim *o) {
    *h = (host_buffers){g->param_buf, g->state_buf, g->mask_buf, {NULL, NULL}, {NULL}};
    for (int k = 0; o && k < 2; k++) h->moment[k] = rg_optim_moment(o, k, NULL);
    if (!rg_graph_on_device(g)) return RG_OK;
    if (!(h->owned[0] = rg_graph_host_copy(g, g->param_buf, g->param_floats)) ||
        !(h->owned[1] = rg_graph_host_copy(g, g->state_buf, g->state_floats)) ||
        (g->mask_buf && !(h->owned[4] = rg_graph_host_copy(g, g->mask_buf, g->param_floats))))
        return RG_ERR_MEMORY;
    h->params = h->owned[0], h->state = h->owned[1], h->masks = h->owned[4];
    for (int k = 0; k < 2; k++)
        if (h->moment[k] && !(h->moment[k] = h->owned[2 + k] = rg_graph_host_copy(g, h->moment[k], g->param_floats)))
            return RG_ERR_MEMORY;
    return RG_OK;
}

static void host_buffers_release(host_buffers *h) {
    for (int i = 0; i < 5; i++) free(h->owned[i]);
}

/* The model's tensors and identity, into a writer; auxiliary heads only when asked. */
static rg_status add_model(rg_tensor_writer *w, const rg_model *m, const host_buffers *h,
                           const rg_meta *meta, bool with_aux) {
    rg_graph *g = m->graph;
    rg_status s = RG_OK;
    char input[64] = "", classes[32];
    const rg_node_impl *in = &g->nodes[m->input];
    for (int d = 0, len = 0; d < in->ndim; d++)
        len += snprintf(input + len, sizeof input - (size_t)len, "%s%d", d ? "x" : "", in->shape[d]);
    snprintf(classes, sizeof classes, "%zu", m->logits >= 0 ? g->nodes[m->logits].size : 0);
    if ((s = rg_tensor_writer_meta(w, "format", FORMAT)) ||
        (s = rg_tensor_writer_meta(w, "regrad_version", RG_VERSION)) ||
        (m->spec[0] && (s = rg_tensor_writer_meta(w, "model", m->spec))) || /* none: by hand */
        (s = rg_tensor_writer_meta(w, "input", input)) ||
        (s = rg_tensor_writer_meta(w, "classes", classes)))
        return s;
    for (int i = 0; meta && i < meta->n && !s; i++)
        s = rg_tensor_writer_meta(w, meta->key[i], meta->value[i]);
    for (int i = 0; i < g->n_params && !s; i++) {
        const rg_param_impl *p = &g->params[i];
        if (!with_aux && is_aux(p->name)) continue;
        const float *data = (p->state ? h->state : h->params) + p->offset;
        s = rg_tensor_writer_add(w, p->name, data, p->ndim, p->shape);
    }
    /* pruning masks, for the tensors that have a pruned value */
    char name[RG_NAME_MAX + 48];
    for (int i = 0; i < g->n_params && !s && g->mask_buf; i++) {
        const rg_param_impl *p = &g->params[i];
        const float *mk = h->masks && !p->state ? h->masks + p->offset : NULL;
        bool any = false;
        for (size_t j = 0; mk && j < p->size && !any; j++) any = mk[j] == 0.0f;
        if (!any) continue;
        snprintf(name, sizeof name, "mask.%s", p->name);
        s = rg_tensor_writer_add(w, name, mk, p->ndim, p->shape);
    }
    return s;
}

rg_status rg_model_save(const rg_model *m, const char *path, const rg_meta *meta) {
    if (!m->graph || !m->graph->compiled) return rg_fail(RG_ERR_STATE, "compile the model before saving it");
    rg_tensor_writer *w = rg_tensor_writer_create();
    if (!w) return RG_ERR_MEMORY;
    host_buffers h;
    rg_status s = host_buffers_take(&h, m->graph, NULL);
    if (!s) s = add_model(w, m, &h, meta, false);
    if (!s) s = rg_tensor_writer_save(w, path);
    host_buffers_release(&h);
    rg_tensor_writer_free(w);
    return s;
}

static bool same_shape(const rg_param_impl *p, int ndim, const int *shape) {
    if (p->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (p->shape[d] != shape[d]) return false;
    return true;
}

static void shape_text(char *buf, size_t len, int ndim, const int *shape) {
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%d", d ? "," : "", shape[d]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

rg_status rg_model_load(rg_model *m, const rg_tensor_file *f, int flags, rg_load_report *out) {
    rg_graph *g = m->graph;
    rg_load_report r = {0};
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before loading into it");
    const int head = m->logits;
    /* 1. check everything */
    int *found = calloc((size_t)(rg_tensor_file_count(f) + 1), sizeof *found);
    if (!found) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        int ndim, shape[RG_MAX_DIMS];
        size_t count;
        const float *data = rg_tensor_file_find(f, p->name, &count, &ndim, shape);
        if (!data && is_aux(p->name) && !(flags & RG_LOAD_STRICT_AUX)) continue; /* new heads */
        if (!data) {
            if (!r.missing++) snprintf(r.first_missing, sizeof r.first_missing, "%s", p->name);
            continue;
        }
        for (int k = 0; k < rg_tensor_file_count(f); k++)
            if (strcmp(rg_tensor_file_name(f, k), p->name) == 0) found[k] = 1;
        if (!same_shape(p, ndim, shape)) {
            if (p->node == head && (flags & RG_LOAD_NEW_HEAD)) {
                r.reinitialised++;
                continue;
            }
            if (!r.mismatched++) {
                char a[64], b[64];
                shape_text(a, sizeof a, ndim, shape);
                shape_text(b, sizeof b, p->ndim, p->shape);
                snprintf(r.first_mismatched, sizeof r.first_mismatched, "%s: %s in the file, %s "
                         "in the model", p->name, a, b);
            }
        }
    }
    for (int k = 0; k < rg_tensor_file_count(f); k++) {
        const char *name = rg_tensor_file_name(f, k);
        if (found[k] || strncmp(name, "optimizer.", 10) == 0 || strncmp(name, "gra.", 4) == 0 ||
            is_aux(name))
            continue;
        if (strncmp(name, "mask.", 5) == 0) { /* a pruning mask: of a tensor the model has? */
            bool known = false;
            for (int i = 0; i < g->n_params && !known; i++) known = strcmp(g->params[i].name, name + 5) == 0;
            if (known) continue;
        }
        if (!r.unexpected++) snprintf(r.first_unexpected, sizeof r.first_unexpected, "%s", name);
    }
    free(found);
    if (out) *out = r;
    if ((r.missing || r.unexpected || r.mismatched) && !(flags & RG_LOAD_PARTIAL))
        return rg_fail(RG_ERR_SHAPE,
                       "the checkpoint does not fit model '%s': %d missing%s%s%s, %d unexpected%s%s%s, "
                       "%d of another shape%s%s%s; load what fits with --weights-partial",
                       m->spec[0] ? m->spec : "built by hand", r.missing, r.missing ? " (" : "", r.first_missing,
                       r.missing ? ")" : "", r.unexpected, r.unexpected ? " (" : "",
                       r.first_unexpected, r.unexpected ? ")" : "", r.mismatched,
                       r.mismatched ? " (" : "", r.first_mismatched, r.mismatched ? ")" : "");
    /* 2. copy what fits, and the pruning masks of what was loaded */
    char mask_name[RG_NAME_MAX + 48];
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        int ndim, shape[RG_MAX_DIMS];
        size_t count;
        const float *data = rg_tensor_file_find(f, p->name, &count, &ndim, shape);
        if (!data || !same_shape(p, ndim, shape)) continue;
        rg_graph_write(g, (p->state ? g->state_buf : g->param_buf) + p->offset, data, p->size);
        r.loaded++;
        snprintf(mask_name, sizeof mask_name, "mask.%s", p->name);
        const float *mask = rg_tensor_file_find(f, mask_name, &count, NULL, NULL);
        if (mask && count == p->size) {
            rg_status s = rg_graph_set_mask(g, i, mask);
            if (s) return s;
        }
    }
    rg_graph_apply_masks(g);
    if (out) *out = r;
    return RG_OK;
}

/* ---------------------------------------------------------------- training checkpoints */

/* A moment's tensor name: optimizer.<moment>.<parameter>. */
static const char *moment_name(char *buf, size_t len, const char *moment, const rg_param_impl *p) {
    snprintf(buf, len, "optimizer.%s.%s", moment, p->name);
    return buf;
}

rg_status rg_checkpoint_save(const char *path, const rg_model *m, rg_optim *o,
                             const rg_repair *gra, const rg_train_state *st, const rg_meta *meta) {
    rg_graph *g = m->graph;
    rg_tensor_writer *w = rg_tensor_writer_create();
    if (!w) return RG_ERR_MEMORY;
    char epoch[32], batch[32], step[32], osteps[32], fwd[32], seed[32];
    snprintf(epoch, sizeof epoch, "%d", st->epoch);
    snprintf(batch, sizeof batch, "%ld", st->batch);
    snprintf(step, sizeof step, "%ld", st->step);
    snprintf(osteps, sizeof osteps, "%ld", rg_optim_steps(o));
    snprintf(fwd, sizeof fwd, "%" PRIu64, rg_graph_forward_count(g));
    snprintf(seed, sizeof seed, "%" PRIu64, st->seed);
    char *gra_json = gra ? rg_repair_state_json(gra) : NULL;
    host_buffers h;
    rg_status s = host_buffers_take(&h, g, o);
    if (!s) s = add_model(w, m, &h, meta, true);
    if (!s && (s = rg_tensor_writer_meta(w, "epoch", epoch))) goto done;
    if (!s && (s = rg_tensor_writer_meta(w, "batch", batch))) goto done;
    if (!s && (s = rg_tensor_writer_meta(w, "step", step))) goto done;
    if (!s && (s = rg_tensor_writer_meta(w, "optimizer_steps", osteps))) goto done;
    if (!s && (s = rg_tensor_writer_meta(w, "forward_count", fwd))) goto done;
    if (!s && (s = rg_tensor_writer_meta(w, "seed", seed))) goto done;
    if (!s && gra_json && (s = rg_tensor_writer_meta(w, "gra", gra_json))) goto done;
    char name[RG_NAME_MAX + 64];
    for (int k = 0; !s; k++) {
        const char *mname;
        if (!rg_optim_moment(o, k, &mname)) break;
        const float *mom = h.moment[k];
        for (int i = 0; i < g->n_params && !s; i++) {
            const rg_param_impl *p = &g->params[i];
            if (p->state) continue;
            s = rg_tensor_writer_add(w, moment_name(name, sizeof name, mname, p), mom + p->offset,
                                     p->ndim, p->shape);
        }
    }
    if (!s && gra) s = rg_repair_add_tensors(gra, w);
    if (!s) s = rg_tensor_writer_save(w, path);
done:
    free(gra_json);
    host_buffers_release(&h);
    rg_tensor_writer_free(w);
    return s;
}

/* Checks (copy false) or restores (copy true) the optimizer's moments from f. */
static rg_status moments(const rg_tensor_file *f, rg_graph *g, rg_optim *o, bool copy) {
    char name[RG_NAME_MAX + 64];
    for (int k = 0;; k++) {
        const char *mname;
        float *mom = rg_optim_moment(o, k, &mname);
        if (!mom) return RG_OK;
        for (int i = 0; i < g->n_params; i++) {
            const rg_param_impl *p = &g->params[i];
            if (p->state) continue;
            size_t count;
            const float *data = rg_tensor_file_find(f, moment_name(name, sizeof name, mname, p),
                                                    &count, NULL, NULL);
            if (!data || count != p->size)
                return rg_fail(RG_ERR_FORMAT, "the checkpoint has no optimizer state '%s' of %zu "
                                              "values: resume with the optimizer it was saved "
                                              "with", name, p->size);
            if (copy) rg_optim_write(o, mom + p->offset, data, p->size);
        }
    }
}

/* A count from the metadata, in [0, hi]; absent keys are an error unless optional. */
static rg_status meta_count(const rg_tensor_file *f, const char *key, long long hi, bool optional,
                            long long *out) {
    const char *v = rg_tensor_file_meta(f, key);
    char *end;
    *out = 0;
    if (!v && optional) return RG_OK;
    if (!v) return rg_fail(RG_ERR_FORMAT, "not a training checkpoint: no '%s' in its metadata", key);
    *out = strtoll(v, &end, 10);
    if (end == v || *end || *out < 0 || *out > hi)
        return rg_fail(RG_ERR_FORMAT, "checkpoint metadata '%s' is '%s', not a count in 0..%lld",
                       key, v, hi);
    return RG_OK;
}

rg_status rg_checkpoint_restore(const rg_tensor_file *f, rg_model *m, rg_optim *o,
                                rg_train_state *st) {
    const long long big = 0x7fffffffLL * 1024, small = 0x7fffffff;
    long long epoch, batch, step, osteps, fwd;
    rg_status s;
    if ((s = meta_count(f, "epoch", small, false, &epoch)) ||
        (s = meta_count(f, "batch", small, true, &batch)) ||
        (s = meta_count(f, "step", big, false, &step)) ||
        (s = meta_count(f, "optimizer_steps", big, false, &osteps)) ||
        (s = meta_count(f, "forward_count", big, false, &fwd)))
        return s;
    /* everything is checked before anything changes */
    if ((s = moments(f, m->graph, o, false)) ||
        (s = rg_model_load(m, f, RG_LOAD_STRICT | RG_LOAD_STRICT_AUX, NULL)))
        return s;
    moments(f, m->graph, o, true);
    rg_optim_set_steps(o, (long)osteps);
    rg_graph_set_forward_count(m->graph, (uint64_t)fwd);
    st->epoch = (int)epoch;
    st->batch = (long)batch;
    st->step = (long)step;
    return RG_OK;
}

/* Any weights file, told apart by its name or first bytes: ONNX (.onnx), Keras's HDF5 or
 * a .keras archive (a zip), else safetensors. */
rg_status rg_weights_load(const char *path, rg_tensor_file **out) {
    const size_t n = strlen(path);
    if (n > 5 && strcmp(path + n - 5, ".onnx") == 0) return rg_onnx_weights(path, out);
    unsigned char head[8] = {0};
    FILE *fp = fopen(path, "rb");
    const size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
    if (fp) fclose(fp);
    if (rg_is_hdf5(head, got) || rg_is_zip(head, got)) return rg_keras_load(path, out);
    return rg_safetensors_load(path, out);
}
