/*
 * statistics.h — batch normalisation's statistics of a batch (.cu files only): a value's
 * terms of their sums (x and x^2) and what finishes a channel from them (its mean and
 * inverse deviation, the running statistics, the affine pair), for launch.h's per-channel
 * sums in runs.  Batch norm takes them of its input (norm.cu), or a convolution of its own
 * output for the batch norm that reads it next, in the pass that writes it (conv.cu).
 */
#ifndef RG_CUDA_STATISTICS_H
#define RG_CUDA_STATISTICS_H

#include "launch.h"

/* A value's terms of the statistics' sums: x and x^2 (rg_cuda_launch_run_sums4's term) */
struct value_and_square {
    __device__ double2 operator()(float x, float) const {
        const double v = x;
        return {v, v * v};
    }
    __device__ value_and_square of_channel(int) const { return *this; }
};

/* rg_cuda_run_sums' done: channel c's statistics from its sums of x and x^2, the running
 * ones, the affine pair */
struct statistics_done {
    size_t m;
    int C;
    float eps, momentum;
    const float *gamma, *beta;
    float *rmean, *rvar, *aux;
    __device__ void operator()(int c, const double *part, int runs) const {
        const double mean = rg_cuda_runs_total(part, c, runs, 0) / m;
        const float mu = (float)mean;
        const double var = fmax(rg_cuda_runs_total(part, c, runs, 1) / m - mean * mean, 0.0);
        const float inv = (float)(1.0 / sqrt(var + eps));
        aux[c] = mu, aux[C + c] = inv;
        rmean[c] = (1.0f - momentum) * rmean[c] + momentum * mu;
        rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)(var * m / (m - 1));
        aux[2 * C + 2 * c] = gamma[c] * inv;
        aux[2 * C + 2 * c + 1] = beta[c] - mu * aux[2 * C + 2 * c];
    }
};
static inline void rg_note_members(const statistics_done &v) {
    rg_cuda_note_all(v.m, v.C, v.eps, v.momentum, v.gamma, v.beta, v.rmean, v.rvar, v.aux);
}

/* The statistics' done for m values a channel of C, from a batch norm's parameters */
static inline statistics_done rg_statistics_done(size_t m, int C, const rg_cuda_norm_statistics *p) {
    return {m, C, p->eps, p->momentum, p->gamma, p->beta, p->rmean, p->rvar, p->aux};
}

#endif
