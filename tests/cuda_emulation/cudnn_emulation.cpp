/*
 * cudnn_emulation.cpp — cuDNN's convolutions for the CUDA emulation (cudnn.h beside it), so
 * the emulated tests run src/kernels/cuda/cudnn.cu: its plans, the algorithms it picks, the
 * scratch it gives them, alpha and beta (a convolution added onto what its output holds),
 * bf16's tensors and filter gradient, and its calls inside a captured pass.  With
 * REGRAD_EMULATION_CUDNN=1, dlopen of libcudnn finds it (else cuDNN is missing, as on a
 * machine without it).  Each convolution is a direct sum in double over the tensors as
 * stored (bf16 widened), rounded once into the output's type, queued on the handle's
 * stream as cuDNN's kernels are.  Like cuDNN, an output with beta 0 is never read.  Each
 * ranking offers a nondeterministic algorithm first (cudnn.cu must pass over it, unless
 * REGRAD_CUDNN_DETERMINISTIC=0: then REGRAD_EMULATION_COUNT=1 says at exit how many
 * convolutions ran on it; it computes what the other does), and each algorithm asks for
 * scratch, which a call given less refuses.
 */
#include "cuda_runtime.h"
#include "cuda_bf16.h"
#include "cudnn.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

struct rg_emulated_cudnn {
    cudaStream_t stream;
};
struct rg_emulated_tensor {
    cudnnDataType_t type;
    int n, c, h, w; /* a filter's k, c, h, w */
};
struct rg_emulated_conv {
    int pad_h, pad_w, u, v, dil_h, dil_w, groups = 1;
    cudnnMathType_t math;
};

namespace {
constexpr size_t SCRATCH = 4096; /* what every algorithm asks for */

/* the convolutions run on a ranking's nondeterministic algorithm (algorithm 0) */
struct nondeterministic_count {
    std::atomic<long> n{0};
    ~nondeterministic_count() {
        const char *how = getenv("REGRAD_EMULATION_COUNT");
        if (how && strcmp(how, "0") && n.load())
            fprintf(stderr, "cudnn emulation: %ld convolutions on nondeterministic algorithms\n", n.load());
    }
} nondeterministic;

float load(const rg_emulated_tensor *d, const void *p, size_t i) {
    return d->type == CUDNN_DATA_BFLOAT16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}
/* out[i] = alpha s + beta out[i], once rounded into the output's type; out not read at beta 0 */
void store(const rg_emulated_tensor *d, void *p, size_t i, double s, float alpha, float beta) {
    double v = alpha * s;
    if (beta != 0.0f)
        v += (double)beta * load(d, p, i);
    if (d->type == CUDNN_DATA_BFLOAT16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16((float)v);
    else
        ((float *)p)[i] = (float)v;
}

/* the shapes agree with the convolution's, and the scratch is what the algorithm asked */
bool consistent(const rg_emulated_tensor *x, const rg_emulated_tensor *w, const rg_emulated_conv *q,
                const rg_emulated_tensor *y, size_t scratch_bytes, const void *scratch) {
    if (!x || !w || !q || !y || scratch_bytes < SCRATCH || !scratch)
        return false;
    const int eh = q->dil_h * (w->h - 1) + 1, ew = q->dil_w * (w->w - 1) + 1;
    return x->type == w->type && x->type == y->type && x->c == w->c * q->groups && w->n % q->groups == 0 &&
           y->n == x->n && y->c == w->n && y->h == (x->h + 2 * q->pad_h - eh) / q->u + 1 &&
           y->w == (x->w + 2 * q->pad_w - ew) / q->v + 1;
}

/* Calls each (sample, filter, input channel of its group, tap, output row) with the run of
 * output positions that tap reads inside the input: f(xi, wi, yi, n, xstep), the run's first
 * flat indices into x, w and y, its length, and its step in x (its step in y is 1).  A sum
 * takes its terms in the order of the positions, one at a time. */
template <typename F>
void each_term(const rg_emulated_tensor *x, const rg_emulated_tensor *w, const rg_emulated_conv *q,
               const rg_emulated_tensor *y, F f) {
    const int cg = w->c, og = w->n / q->groups;
    for (int n = 0; n < x->n; n++)
        for (int k = 0; k < w->n; k++)
            for (int c = 0; c < cg; c++) {
                const size_t xplane = ((size_t)n * x->c + k / og * cg + c) * x->h * x->w;
                const size_t yplane = ((size_t)n * y->c + k) * y->h * y->w;
                for (int i = 0; i < w->h; i++)
                    for (int j = 0; j < w->w; j++) {
                        const size_t wi = (((size_t)k * cg + c) * w->h + i) * w->w + j;
                        /* the output columns whose tap j falls inside the input: ix grows with ox */
                        int lo = 0, hi = y->w;
                        while (lo < hi && lo * q->v - q->pad_w + j * q->dil_w < 0)
                            lo++;
                        while (hi > lo && (hi - 1) * q->v - q->pad_w + j * q->dil_w >= x->w)
                            hi--;
                        if (lo == hi)
                            continue;
                        const int ix = lo * q->v - q->pad_w + j * q->dil_w;
                        for (int oy = 0; oy < y->h; oy++) {
                            const int iy = oy * q->u - q->pad_h + i * q->dil_h;
                            if (iy >= 0 && iy < x->h)
                                f(xplane + (size_t)iy * x->w + ix, wi, yplane + (size_t)oy * y->w + lo, (size_t)(hi - lo),
                                  (size_t)q->v);
                        }
                    }
            }
}

size_t count(const rg_emulated_tensor *d) { return (size_t)d->n * d->c * d->h * d->w; }

/* the work queued on the handle's stream: run now, or recorded by its capture */
cudnnStatus_t queue(cudnnHandle_t h, std::function<void()> work) {
    return rg_emulation::submit(h->stream, std::move(work)) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
}

/* the two algorithms each ranking offers: a nondeterministic one first */
template <typename Perf, typename Algo>
cudnnStatus_t rank(const rg_emulated_conv *q, int requested, int *returned, Perf *perf) {
    if (requested < 1)
        return CUDNN_STATUS_BAD_PARAM;
    *returned = requested < 2 ? requested : 2;
    const cudnnMathType_t math = q->math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    const Perf offered[2] = {{(Algo)0, CUDNN_STATUS_SUCCESS, 0.5f, SCRATCH, CUDNN_NON_DETERMINISTIC, math, {0}},
                             {(Algo)1, CUDNN_STATUS_SUCCESS, 1.0f, SCRATCH, CUDNN_DETERMINISTIC, math, {0}}};
    for (int i = 0; i < *returned; i++)
        perf[i] = offered[i];
    return CUDNN_STATUS_SUCCESS;
}
} // namespace

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) { return *handle = new rg_emulated_cudnn{}, CUDNN_STATUS_SUCCESS; }
const char *cudnnGetErrorString(cudnnStatus_t status) {
    return status == CUDNN_STATUS_SUCCESS     ? "CUDNN_STATUS_SUCCESS"
           : status == CUDNN_STATUS_BAD_PARAM ? "CUDNN_STATUS_BAD_PARAM"
                                              : "CUDNN_STATUS_NOT_SUPPORTED";
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    return handle->stream = stream, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(rg_tdesc *d) { return *d = new rg_emulated_tensor{}, CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetTensor4dDescriptor(rg_tdesc d, cudnnTensorFormat_t format, cudnnDataType_t type, int n, int c,
                                         int h, int w) {
    if (format != CUDNN_TENSOR_NCHW || n < 1 || c < 1 || h < 1 || w < 1)
        return CUDNN_STATUS_BAD_PARAM;
    *d = {type, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(rg_fdesc *d) { return cudnnCreateTensorDescriptor(d); }
cudnnStatus_t cudnnSetFilter4dDescriptor(rg_fdesc d, cudnnDataType_t type, cudnnTensorFormat_t format, int k, int c,
                                         int h, int w) {
    return cudnnSetTensor4dDescriptor(d, format, type, k, c, h, w);
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(rg_cdesc *d) {
    return *d = new rg_emulated_conv{}, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(rg_cdesc d, int pad_h, int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode, cudnnDataType_t compute) {
    if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1 ||
        mode != CUDNN_CROSS_CORRELATION || compute != CUDNN_DATA_FLOAT)
        return CUDNN_STATUS_BAD_PARAM;
    d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dilation_h, d->dil_w = dilation_w;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(rg_cdesc d, int groups) {
    return groups < 1 ? CUDNN_STATUS_BAD_PARAM : (d->groups = groups, CUDNN_STATUS_SUCCESS);
}
cudnnStatus_t cudnnSetConvolutionMathType(rg_cdesc d, cudnnMathType_t math) {
    return d->math = math, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(rg_cdesc q, rg_tdesc x, rg_fdesc w, int *n, int *c, int *h,
                                                    int *wo) {
    const int eh = q->dil_h * (w->h - 1) + 1, ew = q->dil_w * (w->w - 1) + 1;
    if (x->c != w->c * q->groups || x->h + 2 * q->pad_h < eh || x->w + 2 * q->pad_w < ew)
        return CUDNN_STATUS_BAD_PARAM;
    *n = x->n, *c = w->n, *h = (x->h + 2 * q->pad_h - eh) / q->u + 1, *wo = (x->w + 2 * q->pad_w - ew) / q->v + 1;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, rg_tdesc, rg_fdesc, rg_cdesc q, rg_tdesc,
                                                     int requested, int *returned,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    return rank<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(q, requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t, rg_fdesc, rg_tdesc, rg_cdesc q, rg_tdesc,
                                                          int requested, int *returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    return rank<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(q, requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t, rg_tdesc, rg_tdesc, rg_cdesc q, rg_fdesc,
                                                            int requested, int *returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    return rank<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(q, requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, rg_tdesc, rg_fdesc, rg_cdesc, rg_tdesc,
                                                      cudnnConvolutionFwdAlgo_t, size_t *bytes) {
    return *bytes = SCRATCH, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, rg_fdesc, rg_tdesc, rg_cdesc, rg_tdesc,
                                                           cudnnConvolutionBwdDataAlgo_t, size_t *bytes) {
    return *bytes = SCRATCH, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, rg_tdesc, rg_tdesc, rg_cdesc, rg_fdesc,
                                                             cudnnConvolutionBwdFilterAlgo_t, size_t *bytes) {
    return *bytes = SCRATCH, CUDNN_STATUS_SUCCESS;
}

/* a tensor's values widened to double (once each, not once a term) */
std::vector<double> widened(const rg_emulated_tensor *d, const void *p) {
    std::vector<double> v(count(d));
    for (size_t i = 0; i < v.size(); i++)
        v[i] = load(d, p, i);
    return v;
}

/* out = alpha (the sums each term adds to) + beta out, queued on the handle's stream: a and
 * b are the two operands (widened when the work runs), term(s, a, b, xi, wi, yi, n, xstep)
 * what a run of products of their values adds, and where (each_term); algorithm 0 counted
 * as the nondeterministic one */
template <typename Term>
cudnnStatus_t convolve(cudnnHandle_t h, const void *alpha, const void *beta, rg_tdesc xd, rg_fdesc wd, rg_cdesc q,
                       rg_tdesc yd, const void *scratch, size_t scratch_bytes, const rg_emulated_tensor *od, void *out,
                       const rg_emulated_tensor *ad, const void *a, const rg_emulated_tensor *bd, const void *b,
                       int algo, Term term) {
    if (!consistent(xd, wd, q, yd, scratch_bytes, scratch))
        return CUDNN_STATUS_BAD_PARAM;
    nondeterministic.n += algo == 0;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    return queue(h, [=] {
        std::vector<double> s(count(od));
        const std::vector<double> av = widened(ad, a), bv = widened(bd, b);
        each_term(xd, wd, q, yd, [&](size_t xi, size_t wi, size_t yi, size_t n, size_t xstep) {
            term(s.data(), av.data(), bv.data(), xi, wi, yi, n, xstep);
        });
        for (size_t i = 0; i < s.size(); i++)
            store(od, out, i, s[i], al, be);
    });
}

/* A run's products for each convolution (each_term), its sums in order.  These loops are
 * left out of UndefinedBehaviorSanitizer, whose checks of every address they form made
 * them most of the emulated cuDNN's time; it would not check their indices against the
 * vectors' sizes in any case, and those are each_term's, over shapes consistent() checked. */
#define RG_UNCHECKED static __attribute__((no_sanitize("undefined")))
RG_UNCHECKED void forward_run(double *s, const double *xv, const double *wv, size_t xi, size_t wi, size_t yi,
                              size_t n, size_t xstep) {
    for (size_t t = 0; t < n; t++)
        s[yi + t] += xv[xi + t * xstep] * wv[wi];
}
RG_UNCHECKED void backward_data_run(double *s, const double *dyv, const double *wv, size_t xi, size_t wi, size_t yi,
                                    size_t n, size_t xstep) {
    for (size_t t = 0; t < n; t++)
        s[xi + t * xstep] += dyv[yi + t] * wv[wi];
}
RG_UNCHECKED void backward_filter_run(double *s, const double *dyv, const double *xv, size_t xi, size_t wi, size_t yi,
                                      size_t n, size_t xstep) {
    double sum = s[wi];
    for (size_t t = 0; t < n; t++)
        sum += dyv[yi + t] * xv[xi + t * xstep];
    s[wi] = sum;
}
#undef RG_UNCHECKED

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, rg_tdesc xd, const void *x, rg_fdesc wd,
                                      const void *w, rg_cdesc q, cudnnConvolutionFwdAlgo_t algo, void *scratch,
                                      size_t scratch_bytes, const void *beta, rg_tdesc yd, void *y) {
    return convolve(h, alpha, beta, xd, wd, q, yd, scratch, scratch_bytes, yd, y, xd, x, wd, w, algo, forward_run);
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, rg_fdesc wd, const void *w, rg_tdesc dyd,
                                           const void *dy, rg_cdesc q, cudnnConvolutionBwdDataAlgo_t algo, void *scratch,
                                           size_t scratch_bytes, const void *beta, rg_tdesc dxd, void *dx) {
    return convolve(h, alpha, beta, dxd, wd, q, dyd, scratch, scratch_bytes, dxd, dx, dyd, dy, wd, w, algo,
                    backward_data_run);
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, rg_tdesc xd, const void *x,
                                             rg_tdesc dyd, const void *dy, rg_cdesc q,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *scratch, size_t scratch_bytes,
                                             const void *beta, rg_fdesc dwd, void *dw) {
    return convolve(h, alpha, beta, xd, dwd, q, dyd, scratch, scratch_bytes, dwd, dw, dyd, dy, xd, x, algo,
                    backward_filter_run);
}

/* cudnn.cu's dlopen finds this cuDNN when REGRAD_EMULATION_CUDNN=1; its dlsym the entry
 * points above */
void *rg_emulated_dlopen(const char *name, int) {
    static const char *const on = getenv("REGRAD_EMULATION_CUDNN");
    static char library;
    return on && !strcmp(on, "1") && strstr(name, "libcudnn") ? &library : nullptr;
}
void *rg_emulated_dlsym(void *, const char *name) {
#define RG_ENTRY(f)                                                                                                    \
    { #f, (void *)&f }
    static const struct {
        const char *name;
        void *entry;
    } entries[] = {RG_ENTRY(cudnnCreate),
                   RG_ENTRY(cudnnGetErrorString),
                   RG_ENTRY(cudnnSetStream),
                   RG_ENTRY(cudnnCreateTensorDescriptor),
                   RG_ENTRY(cudnnSetTensor4dDescriptor),
                   RG_ENTRY(cudnnCreateFilterDescriptor),
                   RG_ENTRY(cudnnSetFilter4dDescriptor),
                   RG_ENTRY(cudnnCreateConvolutionDescriptor),
                   RG_ENTRY(cudnnSetConvolution2dDescriptor),
                   RG_ENTRY(cudnnSetConvolutionGroupCount),
                   RG_ENTRY(cudnnSetConvolutionMathType),
                   RG_ENTRY(cudnnGetConvolution2dForwardOutputDim),
                   RG_ENTRY(cudnnGetConvolutionForwardAlgorithm_v7),
                   RG_ENTRY(cudnnGetConvolutionBackwardDataAlgorithm_v7),
                   RG_ENTRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7),
                   RG_ENTRY(cudnnGetConvolutionForwardWorkspaceSize),
                   RG_ENTRY(cudnnGetConvolutionBackwardDataWorkspaceSize),
                   RG_ENTRY(cudnnGetConvolutionBackwardFilterWorkspaceSize),
                   RG_ENTRY(cudnnConvolutionForward),
                   RG_ENTRY(cudnnConvolutionBackwardData),
                   RG_ENTRY(cudnnConvolutionBackwardFilter),
                   {"cudnnFindConvolutionForwardAlgorithm", (void *)&cudnnGetConvolutionForwardAlgorithm_v7},
                   {"cudnnFindConvolutionBackwardDataAlgorithm", (void *)&cudnnGetConvolutionBackwardDataAlgorithm_v7},
                   {"cudnnFindConvolutionBackwardFilterAlgorithm",
                    (void *)&cudnnGetConvolutionBackwardFilterAlgorithm_v7}};
#undef RG_ENTRY
    for (const auto &e : entries)
        if (!strcmp(e.name, name))
            return e.entry;
    return nullptr;
}
