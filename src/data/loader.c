/*
 * loader.c — batches prepared ahead of training by background threads.
 *
 * A pass over idx[0..n) is cut into batches; batch b is made by whichever worker claims it,
 * into slot b % depth, and only once batch b - depth has been taken, so at most `depth`
 * batches exist whatever the dataset size.  Batches are taken in order.  Sample j of the
 * pass draws its augmentation from a stream keyed by (seed, j), so the result is the same
 * bitwise for any number of workers.  With 0 workers, batches are made in the caller.
 */
#include "../internal.h"
#include "data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY };

typedef struct slot {
    float *x;
    int *y;
    long batch;
    int state, count;
    rg_status status;
    char error[512];
} slot;

struct rg_loader {
    const rg_dataset *d;
    int batch, workers, depth;
    size_t sample;
    pthread_t *threads;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    bool stop;
    /* the pass */
    int *idx, n;
    rg_augment aug;
    bool augment;
    uint64_t seed;
    long batches, next_make, next_take;
    slot *slots;
};

static uint64_t sample_seed(uint64_t seed, long position) {
    return seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(position + 1));
}

/* Makes batch b of the current pass into s (no lock held; reads only pass fields that
 * stay fixed while a slot is filling). */
static void fill(rg_loader *l, slot *s, long b) {
    const long start = b * l->batch;
    const int count = (int)(l->n - start < l->batch ? l->n - start : l->batch);
    s->status = RG_OK;
    for (int j = 0; j < count; j++) {
        const long p = start + j;
        const int i = l->idx[p];
        rg_status st = rg_dataset_sample(l->d, i, l->augment ? &l->aug : NULL,
                                         sample_seed(l->seed, p), s->x + (size_t)j * l->sample);
        s->y[j] = l->d->labels[i];
        if (st && !s->status) {
            s->status = st;
            snprintf(s->error, sizeof s->error, "%s", rg_last_error());
        }
    }
    s->count = count;
}

static void *worker(void *arg) {
    rg_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->next_make < l->batches && l->next_make < l->next_take + l->depth) {
            const long b = l->next_make++;
            slot *s = &l->slots[b % l->depth];
            s->state = SLOT_FILLING;
            s->batch = b;
            pthread_mutex_unlock(&l->mu);
            fill(l, s, b);
            pthread_mutex_lock(&l->mu);
            s->state = SLOT_READY;
            pthread_cond_broadcast(&l->ready);
        } else {
            pthread_cond_wait(&l->work, &l->mu);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void rg_loader_free(rg_loader *l) {
    if (!l) return;
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->mu);
        for (int t = 0; t < l->started; t++) pthread_join(l->threads[t], NULL);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    for (int i = 0; l->slots && i < l->depth; i++) {
        free(l->slots[i].x);
        free(l->slots[i].y);
    }
    free(l->slots);
    free(l->threads);
    free(l->idx);
    free(l);
}

int rg_loader_default_workers(void) { return (rg_get_threads() + 1) / 2; }

rg_loader *rg_loader_create(const rg_dataset *d, int batch, int workers) {
    if (batch < 1 || workers < 0) {
        rg_fail(RG_ERR_ARG, "loader: batch must be >= 1 and workers >= 0");
        return NULL;
    }
    rg_loader *l = calloc(1, sizeof *l);
    if (!l) goto oom;
    l->d = d;
    l->batch = batch;
    l->workers = workers;
    l->depth = workers ? 2 * workers : 1;
    l->sample = (size_t)d->c * d->h * d->w;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    if (!(l->slots = calloc((size_t)l->depth, sizeof *l->slots))) goto oom;
    for (int i = 0; i < l->depth; i++) {
        l->slots[i].x = malloc((size_t)batch * l->sample * sizeof(float));
        l->slots[i].y = malloc((size_t)batch * sizeof(int));
        if (!l->slots[i].x || !l->slots[i].y) goto oom;
    }
    if (workers && !(l->threads = calloc((size_t)workers, sizeof *l->threads))) goto oom;
    for (int t = 0; t < workers; t++) {
        if (pthread_create(&l->threads[t], NULL, worker, l) != 0) {
            rg_loader_free(l);
            rg_fail(RG_ERR_MEMORY, "cannot start loader thread %d of %d", t + 1, workers);
            return NULL;
        }
        l->started++;
    }
    return l;
oom:
    rg_loader_free(l);
    rg_fail(RG_ERR_MEMORY, "out of memory for the loader's %d batches of %d", workers ? 2 * workers : 1,
            batch);
    return NULL;
}

rg_status rg_loader_start(rg_loader *l, const int *idx, int n, long first_batch,
                          const rg_augment *aug, uint64_t seed) {
    int *copy = malloc((size_t)(n > 0 ? n : 1) * sizeof *copy);
    if (!copy) return rg_fail(RG_ERR_MEMORY, "out of memory");
    memcpy(copy, idx, (size_t)n * sizeof *copy);
    pthread_mutex_lock(&l->mu);
    /* Stop claiming, let batches being made finish, then swap the pass. */
    l->batches = 0;
    for (;;) {
        bool filling = false;
        for (int i = 0; i < l->depth; i++) filling |= l->slots[i].state == SLOT_FILLING;
        if (!filling) break;
        pthread_cond_wait(&l->ready, &l->mu);
    }
    for (int i = 0; i < l->depth; i++) l->slots[i].state = SLOT_FREE;
    free(l->idx);
    l->idx = copy;
    l->n = n;
    l->augment = rg_augment_any(aug);
    if (l->augment) l->aug = *aug;
    l->seed = seed;
    l->batches = (n + l->batch - 1) / l->batch;
    l->next_make = l->next_take = first_batch < 0 ? 0 : first_batch < l->batches ? first_batch : l->batches;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    return RG_OK;
}

int rg_loader_next(rg_loader *l, float *x, int *y) {
    pthread_mutex_lock(&l->mu);
    if (l->next_take >= l->batches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    const long b = l->next_take;
    slot *s = &l->slots[b % l->depth];
    if (!l->workers) { /* made here */
        s->batch = b;
        pthread_mutex_unlock(&l->mu);
        fill(l, s, b);
        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
    }
    while (!(s->state == SLOT_READY && s->batch == b)) pthread_cond_wait(&l->ready, &l->mu);
    pthread_mutex_unlock(&l->mu);
    const int count = s->count;
    memcpy(x, s->x, (size_t)count * l->sample * sizeof(float));
    memcpy(y, s->y, (size_t)count * sizeof(int));
    rg_status st = s->status;
    if (st) rg_fail(st, "%s", s->error);
    pthread_mutex_lock(&l->mu);
    s->state = SLOT_FREE;
    l->next_take++;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    return st ? -(int)st : count;
}
