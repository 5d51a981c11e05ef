/*
 * blas.cu — matrix products on the device through cuBLAS, opened at first use (dlopen), so
 * regrad and programs linking libregrad start on machines without CUDA's libraries and say
 * what is missing only when a product is asked of the device.  The product is row-major,
 * as the CPU's rg_sgemm: cuBLAS is column-major, and a row-major C = op(A) op(B) is the
 * column-major C^T = op(B)^T op(A)^T, the same call with the operands swapped.  fp32 is
 * strict (CUBLAS_PEDANTIC_MATH: no TF32, no reduced-precision reductions) unless a graph
 * asks for TF32 or bf16 (rg_cuda_set_products); bf16's products (cublasGemmEx) take bf16
 * operands and sum in fp32 on the tensor cores.
 */
#include "cuda.h"
#include "launch.h"

#include <cublas_v2.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

extern "C" rg_status rg_fail(rg_status status, const char *fmt, ...);

/* The entry points regrad uses, each typed as cublas_v2.h declares it. */
static struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_batched;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t); /* C's, not C++'s overload */
    cublasStatus_t (*gemm_ex_batched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                      const void *, const void *, cudaDataType, int, long long, const void *,
                                      cudaDataType, int, long long, const void *, void *, cudaDataType, int,
                                      long long, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasHandle_t handle;
    void *workspace; /* regrad's own, WORKSPACE_BYTES, or NULL: cuBLAS's pool */
    rg_status status;
    char why[200];
} blas;

static pthread_once_t opened = PTHREAD_ONCE_INIT;

/* cuBLAS's workspace, given to it rather than taken from its pool: a product captured into
 * a CUDA graph would otherwise allocate its workspace inside the capture (memory nodes in
 * the graph, which CUDA supports in fewer places).  32 MiB: what cuBLAS recommends on
 * Hopper, the size of its own pool there. */
#define WORKSPACE_BYTES ((size_t)32 << 20)

/* the handle on our workspace; cublasSetStream hands it back to cuBLAS's pool each time */
static void use_workspace(void) {
    if (blas.workspace && blas.set_workspace(blas.handle, blas.workspace, WORKSPACE_BYTES) != CUBLAS_STATUS_SUCCESS)
        rg_cuda_note_failure("cuBLAS's workspace", "see cuBLAS's status");
}

static void open_cublas(void) {
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                        "/usr/local/cuda/lib64/libcublas.so.13",
                                        "/usr/local/cuda/lib64/libcublas.so.12"};
    void *lib = NULL;
    for (size_t i = 0; !lib && i < sizeof names / sizeof *names; i++) {
        if (names[i][0] == '/') { /* outside the loader's path: cuBLASLt beside it first */
            char lt[96];
            snprintf(lt, sizeof lt, "%.*sLt%s", (int)(strstr(names[i], ".so") - names[i]), names[i],
                     strstr(names[i], ".so"));
            dlopen(lt, RTLD_NOW | RTLD_GLOBAL);
        }
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    blas.status = RG_ERR_STATE;
    if (!lib) {
        snprintf(blas.why, sizeof blas.why, "cuda: cuBLAS not found (libcublas.so.13 or .12): install "
                 "CUDA's cuBLAS or put its folder in LD_LIBRARY_PATH");
        return;
    }
    blas.create = (decltype(blas.create))dlsym(lib, "cublasCreate_v2");
    blas.set_math_mode = (decltype(blas.set_math_mode))dlsym(lib, "cublasSetMathMode");
    blas.set_stream = (decltype(blas.set_stream))dlsym(lib, "cublasSetStream_v2");
    blas.set_workspace = (decltype(blas.set_workspace))dlsym(lib, "cublasSetWorkspace_v2");
    blas.sgemm = (decltype(blas.sgemm))dlsym(lib, "cublasSgemm_v2");
    blas.sgemm_batched = (decltype(blas.sgemm_batched))dlsym(lib, "cublasSgemmStridedBatched");
    blas.gemm_ex = (decltype(blas.gemm_ex))dlsym(lib, "cublasGemmEx");
    blas.gemm_ex_batched = (decltype(blas.gemm_ex_batched))dlsym(lib, "cublasGemmStridedBatchedEx");
    if (!blas.create || !blas.set_math_mode || !blas.set_stream || !blas.set_workspace || !blas.sgemm ||
        !blas.sgemm_batched || !blas.gemm_ex || !blas.gemm_ex_batched) {
        snprintf(blas.why, sizeof blas.why, "cuda: the cuBLAS found lacks cublasSgemm_v2, its batched form or "
                 "cublasGemmEx: install cuBLAS 12 or 13");
        return;
    }
    cublasStatus_t e = blas.create(&blas.handle);
    if (e == CUBLAS_STATUS_SUCCESS) e = blas.set_math_mode(blas.handle, CUBLAS_PEDANTIC_MATH);
    if (e != CUBLAS_STATUS_SUCCESS) {
        snprintf(blas.why, sizeof blas.why, "cuda: cuBLAS does not start (status %d): check the "
                 "driver and the device's memory", (int)e);
        return;
    }
    if (cudaMalloc(&blas.workspace, WORKSPACE_BYTES) != cudaSuccess) { /* then cuBLAS's pool, as before */
        cudaGetLastError();
        blas.workspace = NULL;
    }
    use_workspace();
    blas.status = RG_OK;
}

extern "C" rg_status rg_cuda_blas_ready(void) {
    pthread_once(&opened, open_cublas);
    return blas.status == RG_OK ? RG_OK : rg_fail(blas.status, "%s", blas.why);
}

/* A product's cuBLAS status (count products of m x n x k) as regrad's: RG_OK, or the
 * failure, noted for the step's status too and named. */
static rg_status outcome(cublasStatus_t e, const char *what, int count, int m, int n, int k) {
    if (e == CUBLAS_STATUS_SUCCESS) return RG_OK;
    rg_cuda_note_failure(what, "see cuBLAS's status");
    return rg_fail(RG_ERR_STATE, "cuda: %s (%d of %dx%dx%d) failed in cuBLAS (status %d)", what, count, m, n, k,
                   (int)e);
}

extern "C" rg_status rg_cuda_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta,
                                   float *c, int ldc) {
    rg_status s = rg_cuda_blas_ready();
    if (s) return s;
    if (m == 0 || n == 0) return RG_OK;
    rg_cuda_note_all(__func__, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (rg_cuda_dry()) return RG_OK;
    const cublasStatus_t e = blas.sgemm(blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                        trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb,
                                        a, lda, &beta, c, ldc);
    return outcome(e, "a product", 1, m, n, k);
}

extern "C" rg_status rg_cuda_sgemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                                           const float *a, int lda, size_t stride_a, const float *b, int ldb,
                                           size_t stride_b, float beta, float *c, int ldc, size_t stride_c,
                                           int count) {
    rg_status s = rg_cuda_blas_ready();
    if (s) return s;
    if (m == 0 || n == 0 || count == 0) return RG_OK;
    rg_cuda_note_all(__func__, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                     stride_c, count);
    if (rg_cuda_dry()) return RG_OK;
    const cublasStatus_t e = blas.sgemm_batched(blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb,
                                                (long long)stride_b, a, lda, (long long)stride_a, &beta, c, ldc,
                                                (long long)stride_c, count);
    return outcome(e, "batched products", count, m, n, k);
}

extern "C" rg_status rg_cuda_gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const void *a,
                                       int lda, const void *b, int ldb, float beta, void *c, bool c_bf16, int ldc) {
    rg_status s = rg_cuda_blas_ready();
    if (s) return s;
    if (m == 0 || n == 0) return RG_OK;
    rg_cuda_note_all(__func__, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, c_bf16, ldc);
    if (rg_cuda_dry()) return RG_OK;
    const cublasStatus_t e = blas.gemm_ex(blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_16BF, ldb,
                                          a, CUDA_R_16BF, lda, &beta, c, c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return outcome(e, "a bf16 product", 1, m, n, k);
}

extern "C" rg_status rg_cuda_gemm_bf16_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                                               const void *a, int lda, size_t stride_a, const void *b, int ldb,
                                               size_t stride_b, float beta, void *c, bool c_bf16, int ldc,
                                               size_t stride_c, int count) {
    rg_status s = rg_cuda_blas_ready();
    if (s) return s;
    if (m == 0 || n == 0 || count == 0) return RG_OK;
    rg_cuda_note_all(__func__, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, c_bf16,
                     ldc, stride_c, count);
    if (rg_cuda_dry()) return RG_OK;
    const cublasStatus_t e = blas.gemm_ex_batched(
        blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
        CUDA_R_16BF, ldb, (long long)stride_b, a, CUDA_R_16BF, lda, (long long)stride_a, &beta, c,
        c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, (long long)stride_c, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return outcome(e, "batched bf16 products", count, m, n, k);
}

/* the products from now on on stream s (capture.cu's work stream) */
extern "C" void rg_cuda_blas_stream(cudaStream_t s) {
    if (rg_cuda_blas_ready() != RG_OK) return;
    if (blas.set_stream(blas.handle, s) != CUBLAS_STATUS_SUCCESS)
        rg_cuda_note_failure("cuBLAS's stream", "see cuBLAS's status");
    use_workspace();
}

/* cuBLAS's math mode is set when it changes (each forward asks) */
extern "C" void rg_cuda_set_products(bool tf32, bool bf16) {
    static int mode = -1;
    rg_cudnn_set_tf32(tf32);
    const cublasMath_t want = tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : bf16 ? CUBLAS_DEFAULT_MATH : CUBLAS_PEDANTIC_MATH;
    if ((int)want != mode && rg_cuda_blas_ready() == RG_OK &&
        blas.set_math_mode(blas.handle, want) == CUBLAS_STATUS_SUCCESS)
        mode = (int)want;
}
