/*
 * kernels.h — the compute kernels ops call, behind one small interface so a CUDA or other
 * backend can replace them without touching the ops' callers.
 */
#ifndef RG_KERNELS_H
#define RG_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major; op transposes when trans_* is true.
 * A is (M,K) after op, B is (K,N) after op. */
void rg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Below this many elements an element-wise loop stays on one thread: waking the team costs
 * more than it saves. */
#define RG_PARALLEL_MIN 32768

#endif
