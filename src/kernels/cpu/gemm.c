/*
 * gemm.c — matrix multiplication through the CBLAS interface (OpenBLAS by default; any
 * CBLAS links).  Every dense and, later, convolution FLOP goes through here.
 */
#include "../kernels.h"

#include <cblas.h>

void rg_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}
