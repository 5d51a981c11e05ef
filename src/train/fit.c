/*
 * fit.c — the training loop (shuffle, batch, forward, backward, update) and the bookkeeping
 * users see: loss, accuracy, images/s, ETA, checkpoints.  rg_fit runs in phases over one
 * fit_run: check the settings, open the data and the optimizer, open the monitor and GRA
 * (resuming or probing), plan the steps, then per epoch: start it, step, end it.
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
#include "../kernels/backend.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

rg_fit_config rg_fit_defaults(void) {
    return (rg_fit_config){.epochs = 1, .seed = 42, .optim = rg_optim_defaults(RG_OPTIM_ADAM),
                           .repair = 1, .checkpoint_every = 1};
}

/* Loader threads: as told; else half the threads when the CPU trains (the other half
 * trains), all of them when a device does (the host's cores have nothing else to do, and
 * one core's images a second, about a thousand at 224x224, are below a GPU's step rate). */
static int fit_workers(const rg_fit_config *cfg, const rg_graph *g) {
    if (cfg->workers > 0) return cfg->workers;
    return rg_graph_on_device(g) ? rg_get_threads() : rg_loader_default_workers();
}

rg_status rg_fit_budget(rg_model *m, const rg_dataset *d, const rg_fit_config *cfg, double budget) {
    const rg_graph *g = m->graph;
    double params = 0;
    for (int i = 0; i < g->n_params; i++)
        if (!g->params[i].state) params += (double)g->params[i].size;
    const double moments = 4.0 * params * rg_optim_moment_count(&cfg->optim);
    const int workers = fit_workers(cfg, g);
    const int batch = cfg->batch > 0 ? cfg->batch : RG_DEFAULT_BATCH;
    const double loader = d->paths || rg_augment_any(&cfg->augment)
                              ? 2.0 * workers * batch * d->c * d->h * d->w * 4 : 0;
    if (moments + loader >= budget) {
        char a[32], b[32], c[32];
        return rg_fail(RG_ERR_MEMORY, "the optimizer's state (%s) and the loader's batches (%s) "
                                      "alone exceed the %s budget: use a smaller model or batch",
                       rg_bytes_text(moments, a), rg_bytes_text(loader, b), rg_bytes_text(budget, c));
    }
    rg_graph_set_memory_limit(m->graph, (size_t)(budget - moments - loader));
    return RG_OK;
}

/* Everything one rg_fit call keeps between its phases. */
typedef struct fit_run {
    rg_model *m;
    rg_graph *g;
    const rg_dataset *train;
    const rg_fit_config *cfg;
    const rg_fit_callbacks *cb;
    int batch;               /* samples a rank takes per step */
    rg_optim *opt;
    rg_rng rng;              /* the data order */
    int *order;              /* training samples (shuffled each epoch), then validation */
    int *local;              /* this rank's slices of the global batches (order with one rank) */
    int n_train, n_val, n_local;
    rg_loader *loader;       /* files and augmentation; NULL: batches made in line */
    rg_monitor *mon;
    rg_repair *gra;
    long repairs, skipped;   /* GRA's actions before this epoch; skipped steps in it */
    rg_train_state at;       /* where the run starts (resuming) or stopped */
    int ranks, me;
    long global_batch, batches, total_steps, step;
    int last;                /* the epoch this call ends at */
    bool grads_as_backward;  /* nothing comes between backward and the optimizer */
    double run_start;
    /* this epoch */
    double t0, loss_sum;
    long correct, seen;
    float *logits;           /* a batch's, read back each step */
    float lr;
    bool stopped;
} fit_run;

static double elapsed(double t0) { return rg_seconds() - t0; }

/* Every setting checked before anything is allocated. */
static rg_status fit_check(const rg_fit_config *cfg, const rg_graph *g, int batch) {
    if (cfg->epochs < 1) return rg_fail(RG_ERR_ARG, "epochs must be at least 1, got %d", cfg->epochs);
    if (batch < 1 || batch > g->max_batch)
        return rg_fail(RG_ERR_ARG, "batch %d is outside 1..%d (the compiled size)", batch,
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
    return RG_OK;
}

/* On a device: what does not run there yet, refused by name: GRA and curvature where an op
 * has no tangent there (its Newton guard measures curvature), and the all-reduce, which
 * works on host memory. */
static rg_status fit_check_device(const rg_fit_config *cfg, const rg_model *m) {
    if ((cfg->repair || cfg->curvature_every > 0) && rg_graph_check_tangents(m->graph)) {
        char why[200];
        snprintf(why, sizeof why, "%s", rg_last_error());
        return rg_fail(RG_ERR_STATE, "%s on the device: %s; train with %s, or on the CPU",
                       cfg->repair ? "GRA" : "curvature along the steps", why,
                       cfg->repair ? "repair = 0 (--repair off)" : "curvature_every = 0");
    }
    return rg_dist_size() > 1 ? rg_fail(RG_ERR_STATE, "data-parallel training (MPI) does not run on the device "
                                                      "yet: train on the CPU")
                              : RG_OK;
}

/* The optimizer, the seeded split (the validation set stays fixed for the run) and the
 * loader for files and augmentation. */
static rg_status fit_open_data(fit_run *r) {
    const rg_fit_config *cfg = r->cfg;
    rg_status s;
    r->opt = rg_optim_create(&cfg->optim, r->g->param_floats);
    r->order = malloc((size_t)r->train->n * sizeof *r->order);
    r->logits = malloc((size_t)r->batch * r->g->nodes[r->m->logits].size * sizeof *r->logits);
    if (!r->opt || !r->order || !r->logits) return rg_fail(RG_ERR_MEMORY, "out of memory");
    if ((s = limit_to_trainable(r->opt, r->g))) return s;
    rg_rng_seed(&r->rng, cfg->seed);
    r->n_val = rg_dataset_split(r->train, cfg->val_split, &r->rng, r->order);
    r->n_train = r->train->n - r->n_val;
    if (r->n_val < 0) return rg_fail(RG_ERR_MEMORY, "out of memory");
    if (r->n_train < 1)
        return rg_fail(RG_ERR_ARG, "the validation split (%g) takes all %d training samples: lower --val-split",
                       (double)cfg->val_split, r->train->n);
    if (r->train->paths || rg_augment_any(&cfg->augment)) {
        if (!(r->loader = rg_loader_create(r->train, r->batch, fit_workers(cfg, r->g)))) return RG_ERR_MEMORY;
    }
    return RG_OK;
}

/* The monitor and GRA when asked for; resuming: the weights, moments and counters, then the
 * data order replayed to where the run stopped (each epoch's shuffle permutes the last
 * one's order); then GRA's probe, or its state restored. */
static rg_status fit_open_health(fit_run *r) {
    const rg_fit_config *cfg = r->cfg;
    const rg_fit_callbacks *cb = r->cb;
    rg_status s = RG_OK;
    if ((cfg->repair || cfg->monitor_every > 0) && !(r->mon = rg_monitor_create(r->g)))
        return RG_ERR_MEMORY;
    r->at = (rg_train_state){.seed = cfg->seed};
    if (cfg->resume && (s = resume_run(cfg, r->m, r->opt, &r->at))) return s;
    if ((s = rg_optim_place(r->opt, r->g))) return s; /* the moments where the weights are */
    for (int e = 0; e < r->at.epoch; e++) rg_rng_shuffle(&r->rng, r->order, r->n_train);
    if (cfg->repair) {
        const int probe_n = r->n_train < 512 ? r->n_train : 512;
        if (!(r->gra = rg_repair_create(r->m, r->mon, cb ? cb->on_repair : NULL, cb ? cb->user : NULL)))
            return RG_ERR_MEMORY;
        s = cfg->resume ? rg_repair_restore(r->gra, rg_tensor_file_meta(cfg->resume, "gra"),
                                            cfg->resume, r->train, r->order, probe_n)
                        : rg_repair_probe(r->gra, r->train, r->order, probe_n);
        /* the probe's actions count in epoch 1 */
        r->repairs = cfg->resume ? rg_repair_actions(r->gra) : 0;
    }
    return s;
}

/* Data-parallel: a global batch is ranks x the batch; each rank takes its slice of it (the
 * last global batch may leave some ranks few or none).  Synchronised batch norm needs every
 * rank in every step: a last, partial global batch is dropped then. */
static rg_status fit_plan_steps(fit_run *r) {
    const rg_fit_config *cfg = r->cfg;
    r->ranks = rg_dist_size(), r->me = rg_dist_rank();
    r->global_batch = (long)r->batch * r->ranks;
    r->batches = r->ranks > 1 && cfg->sync_bn ? r->n_train / r->global_batch
                                              : (r->n_train + r->global_batch - 1) / r->global_batch;
    /* on a watched step the optimizer also sums each layer's weights and gradient */
    r->grads_as_backward = !r->gra && r->ranks == 1 && cfg->clip_value <= 0 &&
                           cfg->clip_tensor_norm <= 0 && cfg->clip_norm <= 0 && cfg->agc <= 0;
    if (r->batches < 1)
        return rg_fail(RG_ERR_ARG, "%d training samples make no global batch of %ld (%d ranks x %d)",
                       r->n_train, r->global_batch, r->ranks, r->batch);
    r->local = r->ranks > 1 ? malloc((size_t)r->n_train * sizeof *r->local) : r->order;
    if (!r->local) return rg_fail(RG_ERR_MEMORY, "out of memory");
    r->total_steps = r->batches * cfg->epochs;
    r->step = r->at.step;
    if (r->at.epoch >= cfg->epochs)
        return rg_fail(RG_ERR_ARG, "the checkpoint is at epoch %d already: ask for more --epochs "
                                   "(the total, counting those done)", r->at.epoch);
    r->last = cfg->stop_after > 0 && r->at.epoch + cfg->stop_after < cfg->epochs
                  ? r->at.epoch + cfg->stop_after : cfg->epochs;
    r->run_start = rg_seconds();
    return RG_OK;
}

/* The epoch's order, this rank's slices of it, and the loader started on them (an
 * interrupted epoch goes on from its batch). */
static rg_status fit_start_epoch(fit_run *r, int epoch, long first) {
    const rg_fit_config *cfg = r->cfg;
    rg_rng_shuffle(&r->rng, r->order, r->n_train);
    r->n_local = r->n_train;
    if (r->ranks > 1) {
        r->n_local = 0;
        for (long gb = 0; gb < r->batches; gb++) {
            const long lo = gb * r->global_batch + (long)r->me * r->batch;
            for (long i = lo; i < lo + r->batch && i < r->n_train && i < (gb + 1) * r->global_batch; i++)
                r->local[r->n_local++] = r->order[i];
        }
    }
    r->t0 = rg_seconds();
    r->loss_sum = 0, r->correct = 0, r->seen = 0;
    r->lr = cfg->optim.lr;
    if (!r->loader) return RG_OK;
    return rg_loader_start(r->loader, r->local, r->n_local, first, &cfg->augment,
                           cfg->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)));
}

/* This rank's share of global batch bi into the graph: its size (0: nothing for this rank
 * in the last global batch, which it still joins), or a negated status. */
static int fit_load_batch(fit_run *r, long bi, long *g_size) {
    const long g_start = bi * r->global_batch;
    *g_size = r->n_train - g_start < r->global_batch ? r->n_train - g_start : r->global_batch;
    const long my_lo = g_start + (long)r->me * r->batch;
    const int b = my_lo >= r->n_train || my_lo >= g_start + *g_size ? 0
                  : (int)(r->n_train - my_lo < r->batch ? r->n_train - my_lo : r->batch);
    float *x = rg_graph_input_buffer(r->g, r->m->input);
    if (b == 0) return 0;
    if (r->loader) return rg_loader_next(r->loader, x, r->g->labels);
    const rg_status s = rg_dataset_batch(r->train, r->local + bi * r->batch, b, x, r->g->labels);
    return s ? -(int)s : b;
}

/* The update: GRA's guards, the remedies, the optimizer, GRA's trust region, the
 * constraints and the model's own hooks.  Returns whether the step was skipped. */
static rg_status fit_update(fit_run *r, bool watch, bool *skipped) {
    const rg_fit_config *cfg = r->cfg;
    rg_graph *g = r->g;
    const bool along = watch && cfg->curvature_every > 0 && r->step / cfg->monitor_every % cfg->curvature_every == 0;
    rg_status s = along ? rg_monitor_before_step(r->mon) : RG_OK;
    if (s) return s;
    const int verdict = r->gra ? rg_repair_gradients(r->gra, r->step) : 0;
    if (verdict < 0) return (rg_status)-verdict;
    *skipped = verdict == 1;
    if (*skipped) return RG_OK;
    if (cfg->clip_value > 0) rg_clip_grad_value(g, cfg->clip_value);
    if (cfg->clip_tensor_norm > 0) rg_clip_grad_tensor_norm(g, cfg->clip_tensor_norm);
    if (cfg->clip_norm > 0) rg_clip_grad_norm(g, cfg->clip_norm);
    if (cfg->agc > 0) rg_clip_grad_agc(g, cfg->agc, r->m->logits);
    rg_repair_before_update(r->gra, r->opt);
    rg_optim_step(r->opt, g->param_buf, g->grad_buf, r->lr);
    rg_repair_after_update(r->gra, r->step);
    if (cfg->max_norm > 0) rg_apply_max_norm(g, cfg->max_norm);
    rg_graph_apply_masks(g); /* pruned weights stay 0 */
    if ((s = rg_model_after_update(r->m, r->lr)) || !watch) return s;
    rg_monitor_note_update(r->mon);
    /* the main loss's curvature along the step; where it cannot be taken (a rank without
     * samples, a backend without tangents) the figures stay NaN and training goes on */
    if (along) rg_monitor_measure_step(r->mon, r->m->loss, g->batch);
    return RG_OK;
}

/* One step on global batch bi of epoch `epoch`: load, forward, backward, all-reduce, the
 * update, the monitor's view and GRA's check, progress. */
static rg_status fit_step(fit_run *r, int epoch, long bi) {
    const rg_fit_config *cfg = r->cfg;
    rg_graph *g = r->g;
    rg_model *m = r->m;
    rg_status s;
    long g_size;
    const int b = fit_load_batch(r, bi, &g_size);
    if (b < 0) return (rg_status)-b;
    const bool watch = cfg->monitor_every > 0 && r->step % cfg->monitor_every == 0;
    const bool check = rg_repair_wants_check(r->gra, r->step);
    if (r->mon) rg_monitor_enable(r->mon, watch || check);
    /* GRA's re-probe refreshes the input moments its trust region and centring use */
    if (check) rg_monitor_want_moments(r->mon, rg_repair_caps_updates(r->gra));
    /* The optimizer measures a watched step's update in its own pass, unless something moves
     * the weights after it (pruning masks can appear between epochs): then the monitor
     * keeps a copy. */
    const bool moved_after = cfg->max_norm > 0 || g->mask_buf || rg_model_moves_weights(m) ||
                             rg_repair_caps_updates(r->gra);
    if (r->mon && (s = rg_monitor_track_update(r->mon, watch, moved_after ? NULL : r->opt,
                                               r->grads_as_backward)))
        return s;
    if (b > 0 && (s = rg_graph_forward(g, b, 1))) return s; /* only check_numerics fails here */
    /* The loss and logits are read while backward runs, so that a device does not wait
     * for the host's read; the reads land before anything returns (a failed backward's
     * too: they write into this step's memory). */
    float loss = 0.0f;
    const rg_node_impl *z = &g->nodes[m->logits];
    const int k = (int)z->size;
    if (b > 0) {
        rg_node_read_later(g, &g->nodes[m->loss], g->nodes[m->loss].out, 1, &loss);
        rg_node_read_later(g, z, z->out, (size_t)b * k, r->logits);
    }
    rg_model_before_step(m, r->step, r->total_steps);
    s = b > 0 ? rg_graph_backward(g, rg_model_objective(m)) : RG_OK;
    const rg_status read = rg_graph_reads_done(g);
    if (s || (s = read)) return s;
    /* With GRA a non-finite loss goes on to the update, where the repair skips the step and
     * names the layer; without, training stops before the weights take it. */
    if (!isfinite(loss) && !r->gra)
        return rg_fail(RG_ERR_NUMERIC, "the loss became %g at epoch %d, batch %ld: lower --lr, "
                                       "or train with GRA (--repair auto), which skips such steps",
                       (double)loss, epoch + 1, bi + 1);
    if (isfinite(loss)) r->loss_sum += (double)loss * b;
    if (b > 0) r->correct += rg_count_correct(r->logits, g->labels, b, k);
    r->seen += b;
    if (r->ranks > 1) { /* the global batch's mean gradient: weighted by sample count */
        if (b == 0) g->backend->fill(g->grad_buf, g->param_floats, 0);
        g->backend->scale(g->grad_buf, g->param_floats, (float)b / (float)g_size);
        if ((s = rg_dist_allreduce_sum(g->grad_buf, g->param_floats))) return s;
    }
    if (watch || check) rg_monitor_enable(r->mon, 0);
    if (check) rg_monitor_want_moments(r->mon, 0);
    r->lr = rg_schedule_lr(&cfg->schedule, cfg->optim.lr, r->step, epoch, r->total_steps);
    bool skipped;
    if ((s = fit_update(r, watch, &skipped))) return s;
    r->skipped += skipped;
    if (watch || check) rg_monitor_judge(r->mon); /* after the step: see track_update */
    if (watch && r->cb && r->cb->on_health) r->cb->on_health(r->cb->user, r->step, r->mon);
    /* uses the probe batches: after the step, before the next batch is loaded */
    if (check && (s = rg_repair_check(r->gra, r->step))) return s;
    /* GRA's layer statistics come from each rank's own batches, so its trust region and
     * re-conditioning could decide differently: rank 0's weights go to every rank at the
     * end of each step. */
    if (r->ranks > 1 && r->gra && ((s = rg_dist_broadcast(g->param_buf, g->param_floats)) ||
                                   (s = rg_dist_broadcast(g->state_buf, g->state_floats))))
        return s;
    if (r->cb && r->cb->on_batch) {
        const double ips = r->seen / elapsed(r->t0);
        const double eta = elapsed(r->run_start) / (double)(r->step + 1) *
                           (double)(r->total_steps - r->step - 1);
        r->cb->on_batch(r->cb->user, epoch + 1, (int)bi + 1, (int)r->batches, r->loss_sum / r->seen,
                        (double)r->correct / r->seen, ips, eta, rg_repair_actions(r->gra));
    }
    return RG_OK;
}

/* Whether to stop after step bi (a stop is decided by all ranks together); records where. */
static rg_status fit_stop_here(fit_run *r, int epoch, long bi) {
    const rg_fit_config *cfg = r->cfg;
    int stop_now = cfg->stop && *cfg->stop;
    if (r->ranks > 1 && cfg->stop) {
        double flag = stop_now;
        rg_status s = rg_dist_sum_doubles(&flag, 1);
        if (s) return s;
        stop_now = flag > 0;
    }
    if (stop_now && (bi + 1 < r->batches || epoch + 1 < r->last)) {
        r->at.epoch = epoch, r->at.batch = bi + 1, r->at.step = r->step + 1;
        if (bi + 1 == r->batches) r->at.epoch = epoch + 1, r->at.batch = 0;
        r->stopped = true;
    }
    return RG_OK;
}

/* A stop asked for: DIR/interrupted.safetensors when checkpointing, then RG_STOPPED. */
static rg_status fit_interrupted(fit_run *r) {
    const rg_fit_config *cfg = r->cfg;
    if (cfg->checkpoint_dir && r->me == 0) {
        char path[4096];
        rg_status s = write_checkpoint(cfg, r->m, r->opt, r->gra, &r->at, "interrupted", path, sizeof path);
        if (s) return s;
        if (r->cb && r->cb->on_checkpoint) r->cb->on_checkpoint(r->cb->user, path);
    }
    return rg_fail(RG_STOPPED, "stopped at epoch %d, batch %ld%s", r->at.epoch + 1, r->at.batch,
                   cfg->checkpoint_dir ? "; --resume continues from there" : "");
}

/* Zhu & Gupta: s = s_final (1 - (1 - t)^3), t from 1/n to 1 over the n epochs; after them
 * the target again, which prunes nothing new (masked weights are 0 and rank first) but
 * reports the sparsity. */
static rg_status fit_prune(fit_run *r, int epoch, double *sparsity) {
    const rg_fit_config *cfg = r->cfg;
    const int e = epoch + 1 < cfg->prune_end ? epoch + 1 : cfg->prune_end;
    const double t = (double)(e + 1 - cfg->prune_start) / (double)(cfg->prune_end - cfg->prune_start + 1);
    rg_prune_opts po = cfg->prune;
    po.amount = (float)(cfg->prune.amount * (1 - pow(1 - t, 3)));
    rg_prune_report pr;
    rg_status s = rg_prune(r->m, &po, &pr);
    *sparsity = pr.sparsity;
    return s;
}

/* The epoch's figures (over all ranks), validation, the pruning schedule, the epoch
 * callback and the checkpoint. */
static rg_status fit_end_epoch(fit_run *r, int epoch) {
    const rg_fit_config *cfg = r->cfg;
    rg_status s;
    if (r->ranks > 1) {
        double sums[3] = {r->loss_sum, (double)r->correct, (double)r->seen};
        if ((s = rg_dist_sum_doubles(sums, 3))) return s;
        r->loss_sum = sums[0], r->correct = (long)sums[1], r->seen = (long)sums[2];
    }
    rg_epoch_stats st = {.epoch = epoch + 1, .loss = r->loss_sum / r->seen,
                         .acc = (double)r->correct / r->seen, .val_loss = NAN, .val_acc = NAN,
                         .lr = r->lr, .repairs = rg_repair_actions(r->gra) - r->repairs,
                         .skipped = r->skipped};
    r->repairs = rg_repair_actions(r->gra);
    r->skipped = 0;
    st.seconds = elapsed(r->t0);
    st.images_per_sec = r->seen / st.seconds;
    if (r->n_val > 0 &&
        (s = rg_evaluate(r->m, r->train, r->order + r->n_train, r->n_val, &st.val_loss, &st.val_acc)))
        return s;
    if (cfg->prune_end > 0 && epoch + 1 >= cfg->prune_start && (s = fit_prune(r, epoch, &st.sparsity)))
        return s;
    if (r->cb && r->cb->on_epoch) r->cb->on_epoch(r->cb->user, &st);
    if (cfg->checkpoint_dir && r->me == 0 &&
        ((epoch + 1) % cfg->checkpoint_every == 0 || epoch + 1 == r->last)) {
        r->at.epoch = epoch + 1, r->at.step = r->step, r->at.batch = 0;
        char path[4096];
        if ((s = write_checkpoint(cfg, r->m, r->opt, r->gra, &r->at, NULL, path, sizeof path))) return s;
        if (r->cb && r->cb->on_checkpoint) r->cb->on_checkpoint(r->cb->user, path);
    }
    return RG_OK;
}

static void fit_close(fit_run *r) {
    if (r->local != r->order) free(r->local);
    rg_loader_free(r->loader);
    rg_repair_free(r->gra);
    rg_monitor_free(r->mon);
    rg_optim_free(r->opt);
    free(r->order);
    free(r->logits);
}

rg_status rg_fit(rg_model *m, const rg_dataset *train, const rg_fit_config *cfg,
                 const rg_fit_callbacks *cb) {
    rg_status s;
    if (m && m->graph && !m->graph->compiled &&
        (s = rg_graph_compile(m->graph, cfg->batch > 0 ? cfg->batch : RG_DEFAULT_BATCH)))
        return s;
    if ((s = rg_model_check_data(m, train))) return s;
    fit_run r = {.m = m, .g = m->graph, .train = train, .cfg = cfg, .cb = cb,
                 .batch = cfg->batch > 0 ? cfg->batch : m->graph->max_batch};
    if ((s = fit_check(cfg, r.g, r.batch)) || (rg_graph_on_device(r.g) && (s = fit_check_device(cfg, m))))
        return s;
    if (train->features && rg_augment_any(&cfg->augment))
        return rg_fail(RG_ERR_ARG, "augmentation works on images; this dataset holds features "
                                   "taken as they are: train without it");
    r.g->sync_bn = cfg->sync_bn; /* batch norm over the global batch (data-parallel) */
    if (!(s = fit_open_data(&r)) && !(s = fit_open_health(&r))) s = fit_plan_steps(&r);
    for (int epoch = r.at.epoch; epoch < r.last && !s; epoch++) {
        const long first = epoch == r.at.epoch ? r.at.batch : 0;
        if ((s = fit_start_epoch(&r, epoch, first))) break;
        for (long bi = first; bi < r.batches && !s && !r.stopped; bi++, r.step++)
            if (!(s = fit_step(&r, epoch, bi))) s = fit_stop_here(&r, epoch, bi);
        if (!s) s = r.stopped ? fit_interrupted(&r) : fit_end_epoch(&r, epoch);
    }
    fit_close(&r);
    return s;
}
