/*
 * fit.c — the training loop (shuffle, batch, forward, backward, update), evaluation, and the
 * bookkeeping users see: loss, accuracy, images/s, ETA.
 *
 * Determinism: the data order comes from one xoshiro stream seeded by cfg->seed, parameter
 * initialisation and dropout from the graph's seed, augmentation from (seed, epoch, position)
 * whatever thread makes a batch, and every kernel is deterministic for a fixed thread
 * count, so equal inputs give bitwise equal weights.
 *
 * Batches of image files, or augmented batches, are made ahead by the loader's background
 * threads; plain in-memory batches are a copy and are made in line.
 */
#include "../internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Checks that the model's input takes the dataset's samples. */
static rg_status check_fits(const rg_model *m, const rg_dataset *d) {
    const rg_graph *g = m->graph;
    if (!g || !g->compiled) return rg_fail(RG_ERR_STATE, "compile the model before training it");
    const rg_node_impl *in = &g->nodes[m->input];
    size_t sample = (size_t)d->c * d->h * d->w;
    if (in->size != sample)
        return rg_fail(RG_ERR_SHAPE, "the model takes %zu values per sample but the data has "
                                     "%dx%dx%d = %zu", in->size, d->c, d->h, d->w, sample);
    return rg_dataset_check_labels(d, m->logits >= 0 ? (int)g->nodes[m->logits].size : 0);
}

/* The predicted class of one row of k logits (the first of equal maxima). */
static int argmax(const float *z, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[best]) best = j;
    return best;
}

/* Correct predictions among the first n rows of logits (n, k). */
static int count_correct(const float *logits, const int *labels, int n, int k) {
    int correct = 0;
    for (int b = 0; b < n; b++) correct += argmax(logits + (size_t)b * k, k) == labels[b];
    return correct;
}

rg_status rg_evaluate_confusion(rg_model *m, const rg_dataset *d, const int *idx, int n,
                                double *loss, double *acc, long *confusion) {
    rg_status s = check_fits(m, d);
    if (s) return s;
    rg_graph *g = m->graph;
    const int bs = g->max_batch, k = (int)g->nodes[m->logits].size;
    int *order = NULL;
    if (!idx) {
        if (!(order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order)))
            return rg_fail(RG_ERR_MEMORY, "out of memory");
        for (int i = 0; i < n; i++) order[i] = i;
        idx = order;
    }
    double total_loss = 0;
    long correct = 0;
    for (int start = 0; start < n; start += bs) {
        int b = n - start < bs ? n - start : bs;
        if ((s = rg_dataset_batch(d, idx + start, b, rg_graph_input_buffer(g, m->input), g->labels)) ||
            (s = rg_graph_forward(g, b, 0)))
            break;
        total_loss += (double)g->nodes[m->loss].out[0] * b;
        correct += count_correct(g->nodes[m->logits].out, g->labels, b, k);
        for (int i = 0; confusion && i < b; i++)
            confusion[(size_t)g->labels[i] * k + argmax(g->nodes[m->logits].out + (size_t)i * k, k)]++;
    }
    free(order);
    *loss = n ? total_loss / n : NAN;
    *acc = n ? (double)correct / n : NAN;
    return s;
}

rg_status rg_evaluate(rg_model *m, const rg_dataset *d, const int *idx, int n, double *loss,
                      double *acc) {
    return rg_evaluate_confusion(m, d, idx, n, loss, acc, NULL);
}

rg_status rg_evaluate_aux(rg_model *m, const rg_dataset *d, double *acc) {
    rg_status s = check_fits(m, d);
    if (s) return s;
    rg_graph *g = m->graph;
    const int bs = g->max_batch, k = (int)g->nodes[m->logits].size;
    long correct[RG_MAX_AUX] = {0};
    int *idx = malloc((size_t)(bs > 0 ? bs : 1) * sizeof *idx);
    if (!idx) return rg_fail(RG_ERR_MEMORY, "out of memory");
    for (int start = 0; start < d->n && !s; start += bs) {
        int b = d->n - start < bs ? d->n - start : bs;
        for (int i = 0; i < b; i++) idx[i] = start + i;
        if ((s = rg_dataset_batch(d, idx, b, rg_graph_input_buffer(g, m->input), g->labels)) ||
            (s = rg_graph_forward(g, b, 0)))
            break;
        for (int h = 0; h < m->n_aux; h++)
            correct[h] += count_correct(g->nodes[m->aux_logits[h]].out, g->labels, b, k);
    }
    free(idx);
    for (int h = 0; h < m->n_aux; h++) acc[h] = d->n ? (double)correct[h] / d->n : NAN;
    return s;
}

/* Updates only the trainable parameters: the flat buffer's trainable runs. */
static rg_status limit_to_trainable(rg_optim *o, const rg_graph *g) {
    size_t *off = malloc((size_t)(g->n_params + 1) * sizeof *off);
    size_t *len = malloc((size_t)(g->n_params + 1) * sizeof *len);
    if (!off || !len) {
        free(off), free(len);
        return rg_fail(RG_ERR_MEMORY, "out of memory");
    }
    int n = 0;
    bool all = true;
    for (int i = 0; i < g->n_params; i++) {
        const rg_param_impl *p = &g->params[i];
        if (p->state) continue;
        if (!p->trainable) {
            all = false;
            continue;
        }
        if (n && off[n - 1] + len[n - 1] == p->offset) len[n - 1] += p->size;
        else off[n] = p->offset, len[n++] = p->size;
    }
    rg_status s = RG_OK;
    if (!all && n == 0) s = rg_fail(RG_ERR_ARG, "every layer is frozen: nothing to train "
                                                "(check the --freeze and --trainable patterns)");
    else if (!all) s = rg_optim_limit(o, n, off, len);
    free(off), free(len);
    return s;
}

static rg_status resume_run(const rg_fit_config *cfg, rg_model *m, rg_optim *o, rg_train_state *at) {
    const char *seed = rg_tensor_file_meta(cfg->resume, "seed");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)cfg->seed);
    if (!seed || strcmp(seed, want) != 0)
        return rg_fail(RG_ERR_ARG, "the checkpoint's run used seed %s, this one %s: resume with "
                                   "the same --seed", seed ? seed : "(none)", want);
    if (!cfg->repair != !rg_tensor_file_meta(cfg->resume, "gra"))
        return rg_fail(RG_ERR_ARG, "the checkpoint was saved with GRA %s: resume with --repair %s",
                       cfg->repair ? "off" : "on", cfg->repair ? "off" : "auto");
    return rg_checkpoint_restore(cfg->resume, m, o, at);
}

/* Temporary files of writes a crash cut short (NAME.safetensors.tmp-XXXXXX): never whole,
 * never read, removed before the next write. */
static void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".safetensors.tmp-") && snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    closedir(d);
}

/* DIR/epoch_N.safetensors, DIR/last.safetensors pointing at it, and the oldest epoch files
 * beyond the newest `keep` removed. */
static rg_status write_checkpoint(const rg_fit_config *cfg, const rg_model *m, rg_optim *o,
                                  const rg_repair *gra, const rg_train_state *at,
                                  const char *special, char *path, size_t len) {
    const char *dir = cfg->checkpoint_dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return rg_fail(RG_ERR_IO, "cannot create checkpoint folder '%s': %s", dir, strerror(errno));
    char name[64], link_tmp[4200], link_path[4200];
    if (special) snprintf(name, sizeof name, "%s.safetensors", special);
    else snprintf(name, sizeof name, "epoch_%d.safetensors", at->epoch);
    if (snprintf(path, len, "%s/%s", dir, name) >= (int)len)
        return rg_fail(RG_ERR_ARG, "checkpoint folder path too long");
    remove_stale_temporaries(dir);
    rg_status s = rg_checkpoint_save(path, m, o, gra, at, cfg->meta);
    if (s) return s;
    snprintf(link_path, sizeof link_path, "%s/last.safetensors", dir);
    snprintf(link_tmp, sizeof link_tmp, "%s/.last.safetensors.tmp", dir);
    unlink(link_tmp);
    if (symlink(name, link_tmp) != 0 || rename(link_tmp, link_path) != 0)
        return rg_fail(RG_ERR_IO, "cannot point '%s' at %s: %s", link_path, name, strerror(errno));
    if (cfg->keep > 0 && !special) {
        for (int e = at->epoch - 1; e >= 1; e--) {
            /* the newest `keep` saved epochs stay; an epoch file may not exist */
            char old[4200];
            int newer = 0;
            for (int f = e + 1; f <= at->epoch; f++) {
                snprintf(old, sizeof old, "%s/epoch_%d.safetensors", dir, f);
                newer += access(old, F_OK) == 0;
            }
            snprintf(old, sizeof old, "%s/epoch_%d.safetensors", dir, e);
            if (newer >= cfg->keep) unlink(old);
        }
    }
    return RG_OK;
}

rg_status rg_fit(rg_model *m, const rg_dataset *train, const rg_fit_config *cfg,
                 const rg_fit_callbacks *cb) {
    rg_status s = check_fits(m, train);
    if (s) return s;
    rg_graph *g = m->graph;
    g->sync_bn = cfg->sync_bn; /* batch norm over the global batch (data-parallel) */
    if (cfg->epochs < 1) return rg_fail(RG_ERR_ARG, "epochs must be at least 1, got %d", cfg->epochs);
    if (cfg->batch < 1 || cfg->batch > g->max_batch)
        return rg_fail(RG_ERR_ARG, "batch %d is outside 1..%d (the compiled size)", cfg->batch,
                       g->max_batch);
    if (!(cfg->val_split >= 0 && cfg->val_split < 1))
        return rg_fail(RG_ERR_ARG, "validation split %g is outside [0, 1)", (double)cfg->val_split);
    const float limits[5] = {cfg->clip_value, cfg->clip_tensor_norm, cfg->clip_norm, cfg->agc,
                             cfg->max_norm};
    static const char *const limit_names[5] = {"clip value", "clip norm per tensor",
                                               "global clip norm", "AGC lambda", "max-norm"};
    for (int i = 0; i < 5; i++)
        if (!(limits[i] >= 0) || !isfinite(limits[i]))
            return rg_fail(RG_ERR_ARG, "%s %g must be positive (or 0 for off)", limit_names[i],
                           (double)limits[i]);
    if (cfg->prune_end > 0 && (cfg->prune_start < 1 || cfg->prune_start > cfg->prune_end ||
                               !(cfg->prune.amount > 0 && cfg->prune.amount < 1)))
        return rg_fail(RG_ERR_ARG, "pruning schedule: the amount must be in (0, 1) and the "
                                   "epochs 1 <= start <= end");
    if (cfg->checkpoint_dir && cfg->checkpoint_every < 1)
        return rg_fail(RG_ERR_ARG, "checkpoint interval must be at least 1 epoch");
    rg_optim *opt = rg_optim_create(&cfg->optim, g->param_floats);
    int *order = malloc((size_t)train->n * sizeof *order);
    if (!opt || !order || (s = limit_to_trainable(opt, g))) {
        rg_optim_free(opt);
        free(order);
        return s ? s : opt ? rg_fail(RG_ERR_MEMORY, "out of memory") : RG_ERR_ARG;
    }
    /* One seeded permutation, split per class; the validation set stays fixed for the run. */
    rg_rng rng;
    rg_rng_seed(&rng, cfg->seed);
    const int n_val = rg_dataset_split(train, cfg->val_split, &rng, order);
    const int n_train = train->n - n_val;
    if (n_val < 0 || n_train < 1) {
        rg_optim_free(opt);
        free(order);
        return n_val < 0 ? rg_fail(RG_ERR_MEMORY, "out of memory")
                         : rg_fail(RG_ERR_ARG, "no training samples left after the validation split");
    }
    /* Files and augmentation go through the background loader. */
    rg_loader *loader = NULL;
    const bool augment = rg_augment_any(&cfg->augment);
    if (train->paths || augment) {
        int workers = cfg->workers > 0 ? cfg->workers : rg_loader_default_workers();
        if (!(loader = rg_loader_create(train, cfg->batch, workers))) {
            rg_optim_free(opt);
            free(order);
            return RG_ERR_MEMORY;
        }
    }

    /* GRA and the monitor, when asked for. */
    rg_monitor *mon = NULL;
    rg_repair *gra = NULL;
    long repairs = 0, skipped = 0;
    rg_repair_log log = cb ? cb->on_repair : NULL;
    if (cfg->repair || cfg->monitor_every > 0) {
        if (!(mon = rg_monitor_create(g))) s = RG_ERR_MEMORY;
    }
    /* Resuming: the weights, moments and counters, then the data order replayed to where
     * the run stopped (each epoch's shuffle permutes the last one's order). */
    rg_train_state at = {.seed = cfg->seed};
    if (!s && cfg->resume) s = resume_run(cfg, m, opt, &at);
    for (int e = 0; !s && e < at.epoch; e++) rg_rng_shuffle(&rng, order, n_train);
    if (!s && cfg->repair) {
        const int probe_n = n_train < 512 ? n_train : 512;
        if (!(gra = rg_repair_create(m, mon, log, cb ? cb->user : NULL))) s = RG_ERR_MEMORY;
        else if (cfg->resume) s = rg_repair_restore(gra, rg_tensor_file_meta(cfg->resume, "gra"),
                                                    cfg->resume, train, order, probe_n);
        else s = rg_repair_probe(gra, train, order, probe_n);
        repairs = rg_repair_actions(gra);
    }

    const int k = (int)g->nodes[m->logits].size;
    /* Data-parallel: a global batch is ranks x the compiled batch; each rank takes its
     * slice of it (the last global batch may leave some ranks few or none). */
    const int ranks = rg_dist_size(), me = rg_dist_rank();
    const long global_batch = (long)cfg->batch * ranks;
    /* synchronised batch norm needs every rank in every step: a last, partial global
     * batch is dropped then (it could leave a rank without samples) */
    const long batches = ranks > 1 && cfg->sync_bn ? n_train / global_batch
                                                   : (n_train + global_batch - 1) / global_batch;
    /* On a watched step the optimizer also sums each layer's weights and gradient, where
     * nothing comes between backward and it (GRA, clipping, averaging over ranks). */
    const bool grads_as_backward = !gra && ranks == 1 && cfg->clip_value <= 0 &&
                                   cfg->clip_tensor_norm <= 0 && cfg->clip_norm <= 0 &&
                                   cfg->agc <= 0;
    if (batches < 1)
        s = rg_fail(RG_ERR_ARG, "%d training samples make no global batch of %ld (%d ranks x %d)",
                    n_train, global_batch, ranks, cfg->batch);
    int *local = ranks > 1 ? malloc((size_t)n_train * sizeof *local) : order;
    if (!local) s = rg_fail(RG_ERR_MEMORY, "out of memory");
    const long total_steps = batches * cfg->epochs;
    long step = at.step;
    bool stopped = false;
    const double run_start = now_seconds();
    if (gra && !cfg->resume) repairs = 0; /* the probe's actions count in epoch 1 */
    if (!s && at.epoch >= cfg->epochs)
        s = rg_fail(RG_ERR_ARG, "the checkpoint is at epoch %d already: ask for more --epochs "
                                "(the total, counting those done)", at.epoch);
    const int last = cfg->stop_after > 0 && at.epoch + cfg->stop_after < cfg->epochs
                         ? at.epoch + cfg->stop_after : cfg->epochs;
    for (int epoch = at.epoch; epoch < last && s == RG_OK; epoch++) {
        rg_rng_shuffle(&rng, order, n_train);
        int n_local = n_train;
        if (ranks > 1) { /* this rank's slices of the global batches, in order */
            n_local = 0;
            for (long gb = 0; gb < batches; gb++) {
                const long lo = gb * global_batch + (long)me * cfg->batch;
                for (long i = lo; i < lo + cfg->batch && i < n_train && i < (gb + 1) * global_batch; i++)
                    local[n_local++] = order[i];
            }
        }
        /* an interrupted epoch goes on from its batch */
        const long first = epoch == at.epoch ? at.batch : 0;
        if (loader && (s = rg_loader_start(loader, local, n_local, first, &cfg->augment,
                                           cfg->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)))))
            break;
        const double t0 = now_seconds();
        double loss_sum = 0;
        long correct = 0, seen = 0;
        float lr = cfg->optim.lr;
        for (long bi = first; bi < batches; bi++, step++) {
            const long g_start = bi * global_batch, g_size = n_train - g_start < global_batch
                                                             ? n_train - g_start : global_batch;
            const long my_lo = g_start + (long)me * cfg->batch;
            const int b = my_lo >= n_train || my_lo >= g_start + g_size ? 0
                          : (int)(n_train - my_lo < cfg->batch ? n_train - my_lo : cfg->batch);
            const int start = (int)(bi * cfg->batch); /* in this rank's list */
            float *x = rg_graph_input_buffer(g, m->input);
            if (b == 0) {
                /* nothing for this rank in the last global batch: it still joins the sum */
            } else if (loader) {
                int got = rg_loader_next(loader, x, g->labels);
                if (got < 0) {
                    s = (rg_status)-got;
                    break;
                }
            } else if ((s = rg_dataset_batch(train, local + start, b, x, g->labels))) {
                break;
            }
            const bool watch = cfg->monitor_every > 0 && step % cfg->monitor_every == 0;
            const bool check = rg_repair_wants_check(gra, step);
            if (mon) rg_monitor_enable(mon, watch || check);
            /* The optimizer measures a watched step's update in its own pass, unless
             * something moves the weights after it (pruning masks can appear between
             * epochs): then the monitor keeps a copy. */
            const bool moved_after = cfg->max_norm > 0 || g->mask_buf || m->lasso_m > 0 ||
                                     rg_repair_caps_updates(gra);
            if (mon && (s = rg_monitor_track_update(mon, watch, moved_after ? NULL : opt,
                                                    grads_as_backward)))
                break;
            if (b > 0 && (s = rg_graph_forward(g, b, 1))) break; /* only --check-numerics fails here */
            const float loss = b > 0 ? g->nodes[m->loss].out[0] : 0.0f;
            if (!isfinite(loss) && !gra) {
                s = rg_fail(RG_ERR_NUMERIC, "the loss became %g at epoch %d, batch %ld: lower "
                                            "--lr, or train with GRA (--repair auto), which "
                                            "skips such steps", (double)loss, epoch + 1, bi + 1);
                break;
            }
            /* With GRA a non-finite loss goes on to backward, where the repair skips the
             * step and names the layer. */
            if (isfinite(loss)) loss_sum += (double)loss * b;
            if (b > 0) correct += count_correct(g->nodes[m->logits].out, g->labels, b, k);
            seen += b;
            if (m->n_aux) /* deep supervision: the heads' weight decays to 0 over training */
                rg_model_set_aux_weight(m, cfg->aux_weight * (1.0f - (float)step / (float)total_steps));
            if (b > 0 && (s = rg_graph_backward(g, rg_model_objective(m)))) break;
            if (ranks > 1) { /* the global batch's mean gradient: weighted by sample count */
                if (b == 0) memset(g->grad_buf, 0, g->param_floats * sizeof(float));
                const float w = (float)b / (float)g_size;
                for (size_t i = 0; i < g->param_floats; i++) g->grad_buf[i] *= w;
                if ((s = rg_dist_allreduce_sum(g->grad_buf, g->param_floats))) break;
            }
            if (watch || check) rg_monitor_enable(mon, 0);
            lr = rg_schedule_lr(&cfg->schedule, cfg->optim.lr, step, epoch, total_steps);
            int verdict = gra ? rg_repair_gradients(gra, step) : 0;
            if (verdict < 0) {
                s = (rg_status)-verdict;
                break;
            }
            if (verdict == 1) {
                skipped++;
            } else {
                if (cfg->clip_value > 0) rg_clip_grad_value(g, cfg->clip_value);
                if (cfg->clip_tensor_norm > 0) rg_clip_grad_tensor_norm(g, cfg->clip_tensor_norm);
                if (cfg->clip_norm > 0) rg_clip_grad_norm(g, cfg->clip_norm);
                if (cfg->agc > 0) rg_clip_grad_agc(g, cfg->agc, m->logits);
                rg_repair_before_update(gra);
                rg_optim_step(opt, g->param_buf, g->grad_buf, lr);
                rg_repair_after_update(gra, step);
                if (cfg->max_norm > 0) rg_apply_max_norm(g, cfg->max_norm);
                rg_graph_apply_masks(g); /* pruned weights stay 0 */
                if (m->lasso_m > 0) rg_lassonet_prox(m, cfg->lasso_lambda * lr);

                if (watch) rg_monitor_note_update(mon);
            }
            if (watch || check) rg_monitor_judge(mon); /* after the step: see track_update */
            if (watch && cb && cb->on_health) cb->on_health(cb->user, step, mon);
            /* uses the probe batches: after the step, before the next batch is loaded */
            if (check && (s = rg_repair_check(gra, step))) break;
            /* GRA's layer statistics come from each rank's own batches, so its trust region
             * and re-conditioning could decide differently: rank 0's weights go to every
             * rank at the end of each step. */
            if (ranks > 1 && gra && ((s = rg_dist_broadcast(g->param_buf, g->param_floats)) ||
                                     (s = rg_dist_broadcast(g->state_buf, g->state_floats))))
                break;

            if (cb && cb->on_batch) {
                double elapsed = now_seconds() - run_start;
                double ips = seen / (now_seconds() - t0);
                double eta = elapsed / (double)(step + 1) * (double)(total_steps - step - 1);
                cb->on_batch(cb->user, epoch + 1, (int)bi + 1, (int)batches, loss_sum / seen,
                             (double)correct / seen, ips, eta, rg_repair_actions(gra));
            }
            int stop_now = cfg->stop && *cfg->stop;
            if (ranks > 1 && cfg->stop) { /* a stop is decided together */
                double flag = stop_now;
                if ((s = rg_dist_sum_doubles(&flag, 1))) break;
                stop_now = flag > 0;
            }
            if (stop_now && (bi + 1 < batches || epoch + 1 < last)) {
                at.epoch = epoch, at.batch = bi + 1, at.step = step + 1;
                if (bi + 1 == batches) at.epoch = epoch + 1, at.batch = 0;
                stopped = true;
                break;
            }
        }
        if (stopped) {
            char path[4096];
            if (cfg->checkpoint_dir && me == 0 &&
                (s = write_checkpoint(cfg, m, opt, gra, &at, "interrupted", path, sizeof path)))
                break;
            if (cfg->checkpoint_dir && me == 0 && cb && cb->on_checkpoint) cb->on_checkpoint(cb->user, path);
            s = rg_fail(RG_STOPPED, "stopped at epoch %d, batch %ld%s", at.epoch + 1, at.batch,
                        cfg->checkpoint_dir ? "; --resume continues from there" : "");
            break;
        }
        if (s) break;
        if (ranks > 1) { /* the epoch's figures over all ranks */
            double sums[3] = {loss_sum, (double)correct, (double)seen};
            if ((s = rg_dist_sum_doubles(sums, 3))) break;
            loss_sum = sums[0], correct = (long)sums[1], seen = (long)sums[2];
        }
        rg_epoch_stats st = {.epoch = epoch + 1, .loss = loss_sum / seen,
                             .acc = (double)correct / seen, .val_loss = NAN, .val_acc = NAN,
                             .lr = lr, .repairs = rg_repair_actions(gra) - repairs,
                             .skipped = skipped};
        repairs = rg_repair_actions(gra);
        skipped = 0;
        st.seconds = now_seconds() - t0;
        st.images_per_sec = seen / st.seconds;
        if (n_val > 0) {
            s = rg_evaluate(m, train, order + n_train, n_val, &st.val_loss, &st.val_acc);
            if (s) break;
        }
        if (cfg->prune_end > 0 && epoch + 1 >= cfg->prune_start) {
            /* Zhu & Gupta: s = s_final (1 - (1 - t)^3), t from 1/n to 1 over the n epochs;
             * after them the target again, which prunes nothing new (masked weights are 0
             * and rank first) but reports the sparsity */
            const int e = epoch + 1 < cfg->prune_end ? epoch + 1 : cfg->prune_end;
            const double t = (double)(e + 1 - cfg->prune_start) /
                             (double)(cfg->prune_end - cfg->prune_start + 1);
            rg_prune_opts po = cfg->prune;
            po.amount = (float)(cfg->prune.amount * (1 - pow(1 - t, 3)));
            rg_prune_report pr;
            if ((s = rg_prune(m, &po, &pr))) break;
            st.sparsity = pr.sparsity;
        }
        if (cb && cb->on_epoch) cb->on_epoch(cb->user, &st);
        if (cfg->checkpoint_dir && me == 0 &&
            ((epoch + 1) % cfg->checkpoint_every == 0 || epoch + 1 == last)) {
            at.epoch = epoch + 1, at.step = step;
            char path[4096];
            at.batch = 0;
            if ((s = write_checkpoint(cfg, m, opt, gra, &at, NULL, path, sizeof path))) break;
            if (cb && cb->on_checkpoint) cb->on_checkpoint(cb->user, path);
        }
    }
    if (local != order) free(local);
    rg_loader_free(loader);
    rg_repair_free(gra);
    rg_monitor_free(mon);
    rg_optim_free(opt);
    free(order);
    return s;
}
