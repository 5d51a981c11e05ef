/*
 * cudnn.cu — 2-D convolutions through cuDNN 9's convolution API, opened at first use
 * (dlopen) as cuBLAS is, so regrad starts where cuDNN is missing and its own im2col path
 * (conv.cu) takes every convolution there.  Per geometry and batch, a plan keeps the
 * descriptors and the algorithms cuDNN's heuristics rank first among the deterministic ones
 * (the same bits every run) for the forward pass, the input's gradient and the filters'
 * gradient; fp32 is strict (FMA math: no TF32) unless the graph asks for TF32.  Under bf16
 * the tensors are bf16 (the filters a bf16 copy of the weights, their gradient made in
 * bf16 and added to the float one), summed in fp32 on the tensor cores.  The algorithms'
 * scratch is one device buffer of this file, grown to the largest plan's.
 * REGRAD_CUDNN=0 in the environment leaves every convolution to the im2col path; 1x1
 * stride-1 convolutions go there too (a plain product) unless REGRAD_CUDNN_1X1=1.
 * REGRAD_CUDNN_TUNE=1 has cuDNN time its algorithms
 * on each new plan and keeps the fastest deterministic one: every run is deterministic in
 * itself, but two runs may keep different algorithms where timings are close (and so give
 * different bits from one seed).  REGRAD_CUDNN_DETERMINISTIC=0 lets either way pick
 * nondeterministic algorithms too (atomics: PyTorch's default, torch.backends.cudnn
 * .deterministic off), trading the same bits every run, and exact resume, for speed.
 */
#include "cuda.h"
#include "launch.h"

#include <cuda_runtime.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" rg_status rg_fail(rg_status status, const char *fmt, ...);

/* The entry points regrad uses, each typed as cudnn.h declares it. */
#define CUDNN_ENTRIES(X) \
    X(cudnnCreate) X(cudnnGetErrorString) X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor) \
    X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor) X(cudnnCreateConvolutionDescriptor) \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionGroupCount) X(cudnnSetConvolutionMathType) \
    X(cudnnGetConvolution2dForwardOutputDim) X(cudnnGetConvolutionForwardAlgorithm_v7) \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7) X(cudnnGetConvolutionBackwardFilterAlgorithm_v7) \
    X(cudnnGetConvolutionForwardWorkspaceSize) X(cudnnGetConvolutionBackwardDataWorkspaceSize) \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize) X(cudnnConvolutionForward) X(cudnnConvolutionBackwardData) \
    X(cudnnConvolutionBackwardFilter) X(cudnnFindConvolutionForwardAlgorithm) \
    X(cudnnFindConvolutionBackwardDataAlgorithm) X(cudnnFindConvolutionBackwardFilterAlgorithm) X(cudnnSetStream)
#define CUDNN_FIELD(name) decltype(&::name) name;
static struct {
    CUDNN_ENTRIES(CUDNN_FIELD)
    bool loaded;  /* the library and every entry point found */
    bool created; /* the handle made (on the first convolution) */
    bool tune;    /* REGRAD_CUDNN_TUNE=1: algorithms timed, not ranked by heuristics */
    bool any;     /* REGRAD_CUDNN_DETERMINISTIC=0: nondeterministic algorithms too */
    bool direct;  /* REGRAD_CUDNN_1X1=1: 1x1 stride-1 convolutions too */
    cudnnHandle_t handle;
    void *scratch;
    size_t scratch_bytes;
    void *dw;        /* bf16: the filters' gradient, before it is added to the float one */
    size_t dw_bytes;
} dnn;

static pthread_once_t opened = PTHREAD_ONCE_INIT;

static void open_cudnn(void) {
    const char *off = getenv("REGRAD_CUDNN");
    if (off && !strcmp(off, "0")) return;
    static const char *const names[] = {"libcudnn.so.9", "/usr/local/cuda/lib64/libcudnn.so.9",
                                        "/usr/local/cuda/lib/libcudnn.so.9"};
    void *lib = NULL;
    for (size_t i = 0; !lib && i < sizeof names / sizeof *names; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    bool all = true;
#define CUDNN_FIND(name) all = all && (dnn.name = (decltype(dnn.name))dlsym(lib, #name)) != NULL;
    CUDNN_ENTRIES(CUDNN_FIND)
    dnn.loaded = all;
    const char *tune = getenv("REGRAD_CUDNN_TUNE"), *det = getenv("REGRAD_CUDNN_DETERMINISTIC");
    const char *direct = getenv("REGRAD_CUDNN_1X1");
    dnn.tune = tune && !strcmp(tune, "1");
    dnn.any = det && !strcmp(det, "0");
    dnn.direct = direct && !strcmp(direct, "1");
}

/* cuDNN's symmetric padding gives this geometry's output: a padding the CPU gives more of at
 * the bottom or right than at the top or left is then never read. */
static bool symmetric(const rg_conv_geom *q) {
    const int eh = q->dilation * (q->kh - 1) + 1, ew = q->dilation * (q->kw - 1) + 1;
    return q->h + 2 * q->pad_t >= eh && q->w + 2 * q->pad_l >= ew &&
           (q->h + 2 * q->pad_t - eh) / q->stride + 1 == q->oh && (q->w + 2 * q->pad_l - ew) / q->stride + 1 == q->ow;
}

/* A 1x1 stride-1 convolution is a plain product, which cuBLAS did in a fraction of the time
 * of cuDNN's deterministic algorithms in fp32 (docs/cuda.md): conv.cu keeps those, unless
 * REGRAD_CUDNN_1X1=1. */
extern "C" bool rg_cudnn_usable(const rg_conv_geom *q) {
    pthread_once(&opened, open_cudnn);
    return dnn.loaded && symmetric(q) && (dnn.direct || !rg_cuda_conv_direct(q));
}

/* One convolution's descriptors and algorithms for one batch size and precision. */
typedef struct {
    rg_conv_geom q;
    int filters, groups, batch;
    bool tf32, bf16;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgoPerf_t fwd;
    cudnnConvolutionBwdDataAlgoPerf_t bwd_data;
    cudnnConvolutionBwdFilterAlgoPerf_t bwd_filter;
} plan;

enum { MAX_PLANS = 1024 };
static plan plans[MAX_PLANS];
static int n_plans;
static bool tf32;

extern "C" void rg_cudnn_set_tf32(bool on) { tf32 = on; }

/* the convolutions from now on on stream s (capture.cu's work stream; a handle made later
 * takes it then) */
extern "C" void rg_cudnn_stream(cudaStream_t s) {
    if (dnn.created && dnn.cudnnSetStream(dnn.handle, s) != CUDNN_STATUS_SUCCESS)
        rg_cuda_note_failure("cuDNN's stream", "see cuDNN's status");
}

/* A failure, named for the step's status as well (the backend's callers look there). */
static rg_status problem(rg_status code, const char *fmt, ...) {
    char why[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    rg_cuda_note_failure("a cuDNN convolution", why);
    return rg_fail(code, "cuda: %s", why);
}

static rg_status failed(cudnnStatus_t e, const char *what) {
    return problem(RG_ERR_STATE, "cuDNN's %s failed (%s): set REGRAD_CUDNN=0 to use regrad's own convolutions",
                   what, dnn.cudnnGetErrorString(e));
}

/* the first of n ranked algorithms that succeeded, is deterministic (unless any will do)
 * and whose scratch is below a cap; -1 if none */
template <typename P> static int pick(const P *perf, int n) {
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && (dnn.any || perf[i].determinism == CUDNN_DETERMINISTIC) &&
            perf[i].memory <= ((size_t)1 << 30))
            return i;
    return -1;
}

static rg_status scratch_for(size_t bytes) {
    if (rg_cuda_grow(&dnn.scratch, &dnn.scratch_bytes, bytes)) return RG_OK;
    return problem(RG_ERR_MEMORY, "no device memory for cuDNN's %zu MiB of convolution scratch: lower --batch",
                   bytes >> 20);
}

/* the math an algorithm runs under: strict fp32 never anything but FMA */
static rg_status math_for(const plan *p, cudnnMathType_t ranked) {
    const cudnnStatus_t e = dnn.cudnnSetConvolutionMathType(p->conv, p->tf32 || p->bf16 ? ranked : CUDNN_FMA_MATH);
    return e == CUDNN_STATUS_SUCCESS ? RG_OK : failed(e, "math type");
}

static bool same(const plan *p, const rg_conv_geom *q, int filters, int groups, int batch) {
    return p->batch == batch && p->filters == filters && p->groups == groups && p->tf32 == tf32 &&
           p->bf16 == rg_cuda_activations_bf16 && !memcmp(&p->q, q, sizeof *q);
}

static rg_status plan_for(const rg_conv_geom *q, int filters, int groups, int batch, plan **out) {
    for (int i = n_plans - 1; i >= 0; i--)
        if (same(&plans[i], q, filters, groups, batch)) {
            *out = &plans[i];
            return RG_OK;
        }
    if (n_plans == MAX_PLANS) n_plans = 0; /* a workload of this many shapes: start again */
    cudnnStatus_t e;
    if (!dnn.created) {
        if ((e = dnn.cudnnCreate(&dnn.handle)) != CUDNN_STATUS_SUCCESS ||
            (e = dnn.cudnnSetStream(dnn.handle, rg_cuda_work_stream())) != CUDNN_STATUS_SUCCESS)
            return failed(e, "start");
        dnn.created = true;
    }
    plan *p = &plans[n_plans];
    if (!p->conv && ((e = dnn.cudnnCreateTensorDescriptor(&p->x)) || (e = dnn.cudnnCreateTensorDescriptor(&p->y)) ||
                     (e = dnn.cudnnCreateFilterDescriptor(&p->w)) ||
                     (e = dnn.cudnnCreateConvolutionDescriptor(&p->conv))))
        return failed(e, "descriptors");
    p->q = *q, p->filters = filters, p->groups = groups, p->batch = batch, p->tf32 = tf32;
    p->bf16 = rg_cuda_activations_bf16;
    const cudnnMathType_t math = tf32 || p->bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    const cudnnDataType_t type = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    int n, c, h, w;
    if ((e = dnn.cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, type, batch, q->c, q->h, q->w)) ||
        (e = dnn.cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, type, batch, filters, q->oh, q->ow)) ||
        (e = dnn.cudnnSetFilter4dDescriptor(p->w, type, CUDNN_TENSOR_NCHW, filters, q->c / groups, q->kh, q->kw)) ||
        (e = dnn.cudnnSetConvolution2dDescriptor(p->conv, q->pad_t, q->pad_l, q->stride, q->stride, q->dilation,
                                                 q->dilation, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) ||
        (e = dnn.cudnnSetConvolutionGroupCount(p->conv, groups)) ||
        (e = dnn.cudnnSetConvolutionMathType(p->conv, math)) ||
        (e = dnn.cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &c, &h, &w)))
        return failed(e, "convolution setup");
    if (n != batch || c != filters || h != q->oh || w != q->ow)
        return problem(RG_ERR_STATE, "cuDNN sees a %dx%dx%d output where regrad has %dx%dx%d: set REGRAD_CUDNN=0 "
                       "to use regrad's own convolutions", c, h, w, filters, q->oh, q->ow);
    enum { RANKED = 16 };
    cudnnConvolutionFwdAlgoPerf_t fwd[RANKED];
    cudnnConvolutionBwdDataAlgoPerf_t data[RANKED];
    cudnnConvolutionBwdFilterAlgoPerf_t filt[RANKED];
    int nf = 0, nd = 0, nw = 0;
    if (dnn.tune) { /* timed on buffers cuDNN allocates, fastest first */
        if ((e = dnn.cudnnFindConvolutionForwardAlgorithm(dnn.handle, p->x, p->w, p->conv, p->y, RANKED, &nf, fwd)) ||
            (e = dnn.cudnnFindConvolutionBackwardDataAlgorithm(dnn.handle, p->w, p->y, p->conv, p->x, RANKED, &nd,
                                                               data)) ||
            (e = dnn.cudnnFindConvolutionBackwardFilterAlgorithm(dnn.handle, p->x, p->y, p->conv, p->w, RANKED, &nw,
                                                                 filt)))
            return failed(e, "algorithm timing");
    } else if ((e = dnn.cudnnGetConvolutionForwardAlgorithm_v7(dnn.handle, p->x, p->w, p->conv, p->y, RANKED, &nf,
                                                               fwd)) ||
               (e = dnn.cudnnGetConvolutionBackwardDataAlgorithm_v7(dnn.handle, p->w, p->y, p->conv, p->x, RANKED,
                                                                    &nd, data)) ||
               (e = dnn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(dnn.handle, p->x, p->y, p->conv, p->w, RANKED,
                                                                      &nw, filt)))
        return failed(e, "algorithm choice");
    const int i = pick(fwd, nf), j = pick(data, nd), k = pick(filt, nw);
    if (i < 0 || j < 0 || k < 0)
        return problem(RG_ERR_STATE, "cuDNN offers no %salgorithm for a %dx%d convolution of %d channels: set "
                       "REGRAD_CUDNN=0 to use regrad's own convolutions", dnn.any ? "" : "deterministic ", q->kh, q->kw,
                       q->c);
    p->fwd = fwd[i], p->bwd_data = data[j], p->bwd_filter = filt[k];
    /* the scratch each needs under the math it will run with */
    size_t sf = 0, sd = 0, sw = 0;
    rg_status s;
    if ((s = math_for(p, p->fwd.mathType))) return s;
    e = dnn.cudnnGetConvolutionForwardWorkspaceSize(dnn.handle, p->x, p->w, p->conv, p->y, p->fwd.algo, &sf);
    if (!e && !(s = math_for(p, p->bwd_data.mathType)))
        e = dnn.cudnnGetConvolutionBackwardDataWorkspaceSize(dnn.handle, p->w, p->y, p->conv, p->x, p->bwd_data.algo,
                                                             &sd);
    if (!e && !s && !(s = math_for(p, p->bwd_filter.mathType)))
        e = dnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(dnn.handle, p->x, p->y, p->conv, p->w,
                                                               p->bwd_filter.algo, &sw);
    if (s) return s;
    if (e) return failed(e, "scratch size");
    if ((s = scratch_for(sf > sd ? (sf > sw ? sf : sw) : (sd > sw ? sd : sw)))) return s;
    n_plans++;
    *out = p;
    return RG_OK;
}

/* the filters as the plan's tensors are: the weights, or their bf16 copy (NULL: no room) */
static const void *filters_of(const plan *p, const float *w) {
    return p->bf16 ? rg_cuda_bf16_copy(w, (size_t)p->filters * (p->q.c / p->groups) * p->q.kh * p->q.kw) : w;
}

/* y (+)= the convolution of x by w (beta 1: y holds the bias already) */
extern "C" rg_status rg_cudnn_conv2d_forward(const float *x, const float *w, float *y, float beta, int batch,
                                             const rg_conv_geom *q, int filters, int groups) {
    plan *p;
    rg_status s = plan_for(q, filters, groups, batch, &p);
    if (s || (s = math_for(p, p->fwd.mathType))) return s;
    const void *wt = filters_of(p, w);
    if (!wt) return RG_ERR_MEMORY;
    const float one = 1.0f;
    rg_cuda_note_all(__func__, p, x, wt, y, beta, p->fwd.algo, p->fwd.mathType, dnn.scratch, dnn.scratch_bytes);
    if (rg_cuda_dry()) return RG_OK;
    const cudnnStatus_t e = dnn.cudnnConvolutionForward(dnn.handle, &one, p->x, x, p->w, wt, p->conv, p->fwd.algo,
                                                        dnn.scratch, dnn.scratch_bytes, &beta, p->y, y);
    return e == CUDNN_STATUS_SUCCESS ? RG_OK : failed(e, "forward convolution");
}

/* dw += the filters' gradient; dx = (beta 0) or += the input's gradient, when dx */
extern "C" rg_status rg_cudnn_conv2d_backward(const float *x, const float *dy, const float *w, float *dw, float *dx,
                                              float beta, int batch, const rg_conv_geom *q, int filters, int groups) {
    plan *p;
    rg_status s = plan_for(q, filters, groups, batch, &p);
    if (s || (s = math_for(p, p->bwd_filter.mathType))) return s;
    const float one = 1.0f, zero = 0.0f;
    const size_t wsize = (size_t)filters * (q->c / groups) * q->kh * q->kw;
    if (p->bf16 && !rg_cuda_grow(&dnn.dw, &dnn.dw_bytes, wsize * 2))
        return problem(RG_ERR_MEMORY, "no device memory for a bf16 filter gradient of %zu values", wsize);
    rg_cuda_note_all(__func__, p, x, dy, p->bf16 ? dnn.dw : dw, p->bwd_filter.algo, p->bwd_filter.mathType,
                     dnn.scratch, dnn.scratch_bytes);
    cudnnStatus_t e = rg_cuda_dry() ? CUDNN_STATUS_SUCCESS
                                    : dnn.cudnnConvolutionBackwardFilter(
                                          dnn.handle, &one, p->x, x, p->y, dy, p->conv, p->bwd_filter.algo,
                                          dnn.scratch, dnn.scratch_bytes, p->bf16 ? &zero : &one, p->w,
                                          p->bf16 ? dnn.dw : dw);
    if (e != CUDNN_STATUS_SUCCESS) return failed(e, "filter gradient");
    if (p->bf16) rg_cuda_add_bf16(dw, dnn.dw, wsize);
    if (!dx) return RG_OK;
    const void *wt = filters_of(p, w);
    if (!wt) return RG_ERR_MEMORY;
    if ((s = math_for(p, p->bwd_data.mathType))) return s;
    rg_cuda_note_all(__func__, wt, dy, dx, beta, p->bwd_data.algo, p->bwd_data.mathType);
    if (rg_cuda_dry()) return RG_OK;
    e = dnn.cudnnConvolutionBackwardData(dnn.handle, &one, p->w, wt, p->y, dy, p->conv, p->bwd_data.algo, dnn.scratch,
                                         dnn.scratch_bytes, &beta, p->x, dx);
    return e == CUDNN_STATUS_SUCCESS ? RG_OK : failed(e, "input gradient");
}
