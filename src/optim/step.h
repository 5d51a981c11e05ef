/*
 * step.h — what one optimizer step's update needs besides the buffers: the kind's
 * constants and this step's, computed once per step by rg_optim_consts, so that every place
 * that applies the update rules (optim.c's vector copies for the CPU, the CUDA backend's
 * kernel) starts from the same numbers.  Plain C, included by C and CUDA sources.
 */
#ifndef RG_OPTIM_STEP_H
#define RG_OPTIM_STEP_H

#include <regrad.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct step_consts {
    float lr, wd, mu, eps;                 /* sgd, adagrad, rmsprop */
    float alpha;                           /* rmsprop */
    float beta1, beta2;                    /* adam, adamw */
    float step_size, bc2_sqrt, l2, shrink; /* adam, adamw: this step's */
    bool first;                            /* sgd: the momentum buffer starts as d */
    bool nesterov;
} step_consts;

#ifdef __cplusplus
extern "C" {
#endif
/* The constants of o's next step at learning rate lr, and o's kind. */
step_consts rg_optim_consts(const rg_optim *o, float lr);
rg_optim_kind rg_optim_kind_of(const rg_optim *o);
/* The CPU's update of n weights w with gradients g and moments m0, m1 (NULL where the kind
 * keeps fewer), on the calling thread. */
void rg_optim_update_range(rg_optim_kind kind, const step_consts *k, size_t n, float *w, const float *g,
                           float *m0, float *m1);
#ifdef __cplusplus
}
#endif

#endif
