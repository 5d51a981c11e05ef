/*
 * cudnn.h — the part of cuDNN 9's convolution API that src/kernels/cuda/cudnn.cu uses, for
 * the CUDA emulation (found in place of the toolkit's, whose header needs CUDA's runtime
 * headers): its types, and the entry points as cudnn.cu looks them up.  cudnn.cu opens
 * cuDNN with dlopen and dlsym; here those are the emulation's (cudnn_emulation.cpp), which
 * hand it the emulated cuDNN when REGRAD_EMULATION_CUDNN=1 and nothing otherwise (cuDNN
 * missing: conv.cu's own convolutions), so the same tests run both paths.
 */
#ifndef RG_EMULATED_CUDNN_H
#define RG_EMULATED_CUDNN_H

#include <dlfcn.h>
#include <stddef.h>

typedef struct rg_emulated_cudnn *cudnnHandle_t;
typedef struct rg_emulated_tensor *cudnnTensorDescriptor_t;
typedef struct rg_emulated_tensor *cudnnFilterDescriptor_t;
typedef struct rg_emulated_conv *cudnnConvolutionDescriptor_t;

typedef enum {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_NOT_SUPPORTED = 3000
} cudnnStatus_t;
typedef enum { CUDNN_DATA_FLOAT = 0, CUDNN_DATA_BFLOAT16 = 9 } cudnnDataType_t;
typedef enum { CUDNN_TENSOR_NCHW = 0 } cudnnTensorFormat_t;
typedef enum { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 } cudnnConvolutionMode_t;
typedef enum { CUDNN_DEFAULT_MATH = 0, CUDNN_TENSOR_OP_MATH = 1, CUDNN_FMA_MATH = 3 } cudnnMathType_t;
typedef enum { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 } cudnnDeterminism_t;
typedef enum {
    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0,
    CUDNN_CONVOLUTION_FWD_ALGO_GEMM = 2
} cudnnConvolutionFwdAlgo_t;
typedef enum {
    CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0,
    CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 = 1
} cudnnConvolutionBwdDataAlgo_t;
typedef enum {
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0,
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 = 1
} cudnnConvolutionBwdFilterAlgo_t;

/* an algorithm cuDNN offers, as its three rankings give it */
template <typename Algo> struct rg_emulated_perf {
    Algo algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t mathType;
    int reserved[3];
};
typedef rg_emulated_perf<cudnnConvolutionFwdAlgo_t> cudnnConvolutionFwdAlgoPerf_t;
typedef rg_emulated_perf<cudnnConvolutionBwdDataAlgo_t> cudnnConvolutionBwdDataAlgoPerf_t;
typedef rg_emulated_perf<cudnnConvolutionBwdFilterAlgo_t> cudnnConvolutionBwdFilterAlgoPerf_t;

typedef cudnnTensorDescriptor_t rg_tdesc;
typedef cudnnFilterDescriptor_t rg_fdesc;
typedef cudnnConvolutionDescriptor_t rg_cdesc;
cudnnStatus_t cudnnCreate(cudnnHandle_t *handle);
const char *cudnnGetErrorString(cudnnStatus_t status);
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream);
cudnnStatus_t cudnnCreateTensorDescriptor(rg_tdesc *d);
cudnnStatus_t cudnnSetTensor4dDescriptor(rg_tdesc d, cudnnTensorFormat_t format, cudnnDataType_t type, int n, int c,
                                         int h, int w);
cudnnStatus_t cudnnCreateFilterDescriptor(rg_fdesc *d);
cudnnStatus_t cudnnSetFilter4dDescriptor(rg_fdesc d, cudnnDataType_t type, cudnnTensorFormat_t format, int k, int c,
                                         int h, int w);
cudnnStatus_t cudnnCreateConvolutionDescriptor(rg_cdesc *d);
cudnnStatus_t cudnnSetConvolution2dDescriptor(rg_cdesc d, int pad_h, int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode, cudnnDataType_t compute);
cudnnStatus_t cudnnSetConvolutionGroupCount(rg_cdesc d, int groups);
cudnnStatus_t cudnnSetConvolutionMathType(rg_cdesc d, cudnnMathType_t math);
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(rg_cdesc conv, rg_tdesc x, rg_fdesc w, int *n, int *c, int *h,
                                                    int *wo);
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, rg_tdesc x, rg_fdesc w, rg_cdesc conv, rg_tdesc y,
                                                     int requested, int *returned, cudnnConvolutionFwdAlgoPerf_t *perf);
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, rg_fdesc w, rg_tdesc dy, rg_cdesc conv,
                                                          rg_tdesc dx, int requested, int *returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perf);
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, rg_tdesc x, rg_tdesc dy, rg_cdesc conv,
                                                            rg_fdesc dw, int requested, int *returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t *perf);
/* timing the algorithms: the emulation ranks them as its heuristics do (no definitions of
 * their own: dlsym hands out the heuristics' entry points under these names) */
extern decltype(cudnnGetConvolutionForwardAlgorithm_v7) cudnnFindConvolutionForwardAlgorithm;
extern decltype(cudnnGetConvolutionBackwardDataAlgorithm_v7) cudnnFindConvolutionBackwardDataAlgorithm;
extern decltype(cudnnGetConvolutionBackwardFilterAlgorithm_v7) cudnnFindConvolutionBackwardFilterAlgorithm;
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, rg_tdesc x, rg_fdesc w, rg_cdesc conv,
                                                      rg_tdesc y, cudnnConvolutionFwdAlgo_t algo, size_t *bytes);
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, rg_fdesc w, rg_tdesc dy, rg_cdesc conv,
                                                           rg_tdesc dx, cudnnConvolutionBwdDataAlgo_t algo,
                                                           size_t *bytes);
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t h, rg_tdesc x, rg_tdesc dy, rg_cdesc conv,
                                                             rg_fdesc dw, cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t *bytes);
cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, rg_tdesc xd, const void *x, rg_fdesc wd,
                                      const void *w, rg_cdesc conv, cudnnConvolutionFwdAlgo_t algo, void *scratch,
                                      size_t scratch_bytes, const void *beta, rg_tdesc yd, void *y);
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, rg_fdesc wd, const void *w, rg_tdesc dyd,
                                           const void *dy, rg_cdesc conv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *scratch, size_t scratch_bytes, const void *beta, rg_tdesc dxd,
                                           void *dx);
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, rg_tdesc xd, const void *x,
                                             rg_tdesc dyd, const void *dy, rg_cdesc conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *scratch, size_t scratch_bytes,
                                             const void *beta, rg_fdesc dwd, void *dw);

/* cudnn.cu's dlopen and dlsym */
void *rg_emulated_dlopen(const char *name, int flags);
void *rg_emulated_dlsym(void *library, const char *name);
#define dlopen rg_emulated_dlopen
#define dlsym rg_emulated_dlsym

#endif
