/*
 * transform.c — what happens to one sample between its bytes and the model: anti-aliased
 * resizing, channel conversion, the random augmentations and the preprocessing modes.
 *
 * Order: geometry first (a random resized crop, or a plain resize of the whole image, both
 * by rg_resample straight from the source bytes, so a crop is never resized twice), then
 * crop (pad and shift), flip, rotate, brightness, contrast and noise on [0, 1] floats
 * (clamped after each colour change), then the preprocessing.  Every random choice comes
 * from one xoshiro stream seeded per sample, so a sample's augmentation does not depend on
 * which thread made it.
 */
#include "../internal.h"
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- resampling */

/* For each output position: the first source index, how many follow, and their weights
 * (ksize per output), as PIL's precompute_coeffs for the bilinear (triangle) filter. */
typedef struct coeffs {
    int *first, *count;
    float *w;
    int ksize;
} coeffs;

static bool coeffs_make(coeffs *k, float in0, float in1, int in_size, int out_size) {
    const double scale = (double)(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;
    k->ksize = (int)ceil(support) * 2 + 1;
    k->first = malloc((size_t)out_size * sizeof(int));
    k->count = malloc((size_t)out_size * sizeof(int));
    k->w = malloc((size_t)out_size * k->ksize * sizeof(float));
    if (!k->first || !k->count || !k->w) return false;
    for (int o = 0; o < out_size; o++) {
        const double center = in0 + (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        if (hi <= lo) { /* a box entirely outside: take the nearest edge pixel */
            lo = center < 0 ? 0 : in_size - 1;
            hi = lo + 1;
        }
        double sum = 0, tmp[k->ksize];
        int n = hi - lo;
        if (n > k->ksize) n = k->ksize;
        for (int i = 0; i < n; i++) {
            double t = fabs((i + lo - center + 0.5) / filterscale);
            tmp[i] = t < 1.0 ? 1.0 - t : 0.0;
            sum += tmp[i];
        }
        for (int i = 0; i < n; i++)
            k->w[(size_t)o * k->ksize + i] = (float)(sum != 0 ? tmp[i] / sum : (i == 0));
        k->first[o] = lo;
        k->count[o] = n;
    }
    return true;
}

static void coeffs_free(coeffs *k) {
    free(k->first);
    free(k->count);
    free(k->w);
}

/* Row y of the source as floats with c interleaved channels (converted: gray replicated,
 * RGB to ITU-R 601 luma as PIL's convert("L")). */
static void source_row(const rg_pixels *s, int y, int c, float *out) {
    const uint8_t *row = s->px + (size_t)y * s->row;
    const size_t col = s->col, plane = s->plane;
    if (s->c == c) {
        if (c == 3 && col == 3 && plane == 1) { /* interleaved RGB: one flat loop */
            for (int i = 0; i < 3 * s->w; i++) out[i] = row[i];
            return;
        }
        for (int x = 0; x < s->w; x++)
            for (int k = 0; k < c; k++) out[x * c + k] = row[x * col + k * plane];
    } else if (c == 3) {
        for (int x = 0; x < s->w; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x * col];
    } else {
        for (int x = 0; x < s->w; x++) {
            const uint8_t *p = row + x * col;
            out[x] = 0.299f * p[0] + 0.587f * p[plane] + 0.114f * p[2 * plane];
        }
    }
}

/* One row (c interleaved channels, indexed from column 0) filtered horizontally into c
 * planes of dw values, `plane` apart.  With SSE2, RGB outputs go two at a time (two
 * independent chains of additions) and a tap is one 4-lane multiply-add: the fourth lane
 * reads the next pixel's red and is dropped, so `in` must have one readable float after
 * the last column the filter uses.  The sums are the scalar loop's, in the same order. */
#ifdef __SSE2__
static inline __m128 rgb_tap(__m128 acc, float w, const float *p) {
    return _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(w), _mm_loadu_ps(p)));
}
#endif

static void filter_row(const float *in, int c, const coeffs *kx, int dw, float *out, size_t plane) {
    int x = 0;
#ifdef __SSE2__
    for (; c == 3 && x + 1 < dw; x += 2) {
        const float *w0 = kx->w + (size_t)x * kx->ksize, *w1 = w0 + kx->ksize;
        const float *p0 = in + (size_t)kx->first[x] * 3, *p1 = in + (size_t)kx->first[x + 1] * 3;
        const int n0 = kx->count[x], n1 = kx->count[x + 1], n = n0 < n1 ? n0 : n1;
        __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
        int i = 0;
        for (; i < n; i++) {
            a0 = rgb_tap(a0, w0[i], p0 + 3 * i);
            a1 = rgb_tap(a1, w1[i], p1 + 3 * i);
        }
        for (int k = i; k < n0; k++) a0 = rgb_tap(a0, w0[k], p0 + 3 * k);
        for (int k = i; k < n1; k++) a1 = rgb_tap(a1, w1[k], p1 + 3 * k);
        float l0[4], l1[4];
        _mm_storeu_ps(l0, a0);
        _mm_storeu_ps(l1, a1);
        out[x] = l0[0], out[plane + x] = l0[1], out[2 * plane + x] = l0[2];
        out[x + 1] = l1[0], out[plane + x + 1] = l1[1], out[2 * plane + x + 1] = l1[2];
    }
#endif
    for (; x < dw; x++) {
        const float *w = kx->w + (size_t)x * kx->ksize;
        const float *p = in + (size_t)kx->first[x] * c;
        const int n = kx->count[x];
        if (c == 3) {
            float a0 = 0, a1 = 0, a2 = 0;
            for (int i = 0; i < n; i++) {
                a0 += w[i] * p[3 * i];
                a1 += w[i] * p[3 * i + 1];
                a2 += w[i] * p[3 * i + 2];
            }
            out[x] = a0, out[plane + x] = a1, out[2 * plane + x] = a2;
        } else {
            float a0 = 0;
            for (int i = 0; i < n; i++) a0 += w[i] * p[i];
            out[x] = a0;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The AVX2 form of the loop below, 32 columns at a time (chosen at run time). */
__attribute__((target("avx2"))) static size_t filter_column_bytes_avx2(const uint8_t *p, size_t stride,
                                                                      const float *w, int n, size_t j,
                                                                      size_t hi, float *out) {
    for (; j + 32 <= hi; j += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < n; i++) {
            const uint8_t *q = p + i * stride + j;
            const __m256 wi = _mm256_set1_ps(w[i]);
#define RG_BYTES8(k) _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * (k)))))
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(wi, RG_BYTES8(0)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(wi, RG_BYTES8(1)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(wi, RG_BYTES8(2)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(wi, RG_BYTES8(3)));
#undef RG_BYTES8
        }
        _mm256_storeu_ps(out + j, a0);
        _mm256_storeu_ps(out + j + 8, a1);
        _mm256_storeu_ps(out + j + 16, a2);
        _mm256_storeu_ps(out + j + 24, a3);
    }
    return j;
}
#endif

/* Columns [lo, hi) of one output row from n source rows of bytes, `stride` apart, with
 * weights w: all taps of a block of columns summed in registers and stored once. */
static void filter_column_bytes(const uint8_t *p, size_t stride, const float *w, int n,
                                size_t lo, size_t hi, bool avx2, float *out) {
    size_t j = lo;
#if defined(__x86_64__) && defined(__GNUC__)
    if (avx2) j = filter_column_bytes_avx2(p, stride, w, n, j, hi, out);
#else
    (void)avx2;
#endif
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128();
    for (; j + 16 <= hi; j += 16) {
        __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < n; i++) {
            const __m128i b = _mm_loadu_si128((const __m128i *)(p + i * stride + j));
            const __m128i lo16 = _mm_unpacklo_epi8(b, zero), hi16 = _mm_unpackhi_epi8(b, zero);
            const __m128 wi = _mm_set1_ps(w[i]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(wi, _mm_cvtepi32_ps(_mm_unpacklo_epi16(lo16, zero))));
            a1 = _mm_add_ps(a1, _mm_mul_ps(wi, _mm_cvtepi32_ps(_mm_unpackhi_epi16(lo16, zero))));
            a2 = _mm_add_ps(a2, _mm_mul_ps(wi, _mm_cvtepi32_ps(_mm_unpacklo_epi16(hi16, zero))));
            a3 = _mm_add_ps(a3, _mm_mul_ps(wi, _mm_cvtepi32_ps(_mm_unpackhi_epi16(hi16, zero))));
        }
        _mm_storeu_ps(out + j, a0);
        _mm_storeu_ps(out + j + 4, a1);
        _mm_storeu_ps(out + j + 8, a2);
        _mm_storeu_ps(out + j + 12, a3);
    }
#endif
    for (; j < hi; j++) {
        float a = 0;
        for (int i = 0; i < n; i++) a += w[i] * (float)p[i * stride + j];
        out[j] = a;
    }
}

/* Vertical pass first, straight from the bytes (one vectorisable loop over a row's
 * columns and channels per tap), then the horizontal pass on each of the dh rows: the
 * scalar horizontal work is proportional to the output's rows, not the source's. */
void rg_resample(const rg_pixels *s, const float box[4], float *dst, int c, int dh, int dw) {
    const size_t area = (size_t)dh * dw;
    const float inv = 1.0f / 255.0f;
    float *row = malloc((size_t)s->w * c * sizeof(float));
    float *acc = calloc((size_t)s->w * c + 1, sizeof(float)); /* + 1: see filter_row */
    coeffs kx = {0}, ky = {0};
    /* the source's rows are already c interleaved channels: read the bytes themselves */
    const bool direct = s->c == c && s->col == (size_t)c && s->plane == 1;
    if (!row || !acc) goto fail;
    if (box[0] == 0 && box[1] == 0 && box[2] == s->w && box[3] == s->h && s->w == dw &&
        s->h == dh) { /* same size: a conversion only */
        for (int y = 0; y < dh; y++) {
            if (direct) {
                const uint8_t *p = s->px + (size_t)y * s->row;
                for (int k = 0; k < c; k++)
                    for (int x = 0; x < dw; x++) dst[k * area + (size_t)y * dw + x] = p[x * c + k] * inv;
                continue;
            }
            source_row(s, y, c, row);
            for (int x = 0; x < dw; x++)
                for (int k = 0; k < c; k++) dst[k * area + (size_t)y * dw + x] = row[x * c + k] * inv;
        }
        goto done;
    }
    if (!coeffs_make(&kx, box[0], box[2], s->w, dw) || !coeffs_make(&ky, box[1], box[3], s->h, dh))
        goto fail;
    /* only the columns the horizontal pass reads */
    const size_t j_lo = (size_t)kx.first[0] * c;
    const size_t j_hi = (size_t)(kx.first[dw - 1] + kx.count[dw - 1]) * c;
#if defined(__x86_64__) && defined(__GNUC__)
    const bool avx2 = __builtin_cpu_supports("avx2");
#else
    const bool avx2 = false;
#endif
    for (int y = 0; y < dh; y++) {
        float w[ky.ksize];
        for (int i = 0; i < ky.count[y]; i++) w[i] = ky.w[(size_t)y * ky.ksize + i] * inv;
        if (direct) {
            filter_column_bytes(s->px + (size_t)ky.first[y] * s->row, s->row, w, ky.count[y], j_lo,
                                j_hi, avx2, acc);
        } else {
            for (size_t j = j_lo; j < j_hi; j++) acc[j] = 0;
            for (int i = 0; i < ky.count[y]; i++) {
                source_row(s, ky.first[y] + i, c, row);
                for (size_t j = j_lo; j < j_hi; j++) acc[j] += w[i] * row[j];
            }
        }
        filter_row(acc, c, &kx, dw, dst + (size_t)y * dw, area);
    }
    goto done;
fail: /* out of memory: a black sample rather than a crash */
    memset(dst, 0, area * c * sizeof(float));
done:
    coeffs_free(&kx);
    coeffs_free(&ky);
    free(row);
    free(acc);
}

/* ---------------------------------------------------------------- augmentation */

static float uniform(rg_rng *r, float lo, float hi) { return lo + (hi - lo) * rg_rng_uniform(r); }

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* torchvision's RandomResizedCrop box: 10 tries at a random area and aspect, then the
 * whole image clipped to the aspect range. */
static void random_resized_box(rg_rng *r, int w, int h, float box[4]) {
    const double area = (double)w * h;
    for (int t = 0; t < 10; t++) {
        double target = area * uniform(r, 0.08f, 1.0f);
        double ratio = exp(uniform(r, logf(3.0f / 4), logf(4.0f / 3)));
        int cw = (int)lround(sqrt(target * ratio)), ch = (int)lround(sqrt(target / ratio));
        if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
            int x = (int)rg_rng_below(r, (uint32_t)(w - cw + 1));
            int y = (int)rg_rng_below(r, (uint32_t)(h - ch + 1));
            box[0] = (float)x, box[1] = (float)y, box[2] = (float)(x + cw), box[3] = (float)(y + ch);
            return;
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < 3.0 / 4) ch = (int)lround(w / (3.0 / 4));
    else if (in_ratio > 4.0 / 3) cw = (int)lround(h * (4.0 / 3));
    box[0] = (float)((w - cw) / 2), box[1] = (float)((h - ch) / 2);
    box[2] = box[0] + cw, box[3] = box[1] + ch;
}

/* Shifts each plane by (dx, dy) with zeros coming in: pad-then-crop in one move. */
static void shift(float *x, int c, int h, int w, int dx, int dy, float *tmp) {
    const size_t area = (size_t)h * w;
    for (int k = 0; k < c; k++) {
        float *p = x + k * area;
        memcpy(tmp, p, area * sizeof(float));
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++) {
                int sy = y + dy, sx = xx + dx;
                p[(size_t)y * w + xx] =
                    sy >= 0 && sy < h && sx >= 0 && sx < w ? tmp[(size_t)sy * w + sx] : 0.0f;
            }
    }
}

static void flip(float *x, int c, int h, int w) {
    for (int r = 0; r < c * h; r++) {
        float *p = x + (size_t)r * w;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            float t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
    }
}

/* Rotates each plane about its centre by deg degrees (counter-clockwise), bilinear, zeros
 * outside. */
static void rotate(float *x, int c, int h, int w, float deg, float *tmp) {
    const size_t area = (size_t)h * w;
    const float a = deg * (float)M_PI / 180.0f, cs = cosf(a), sn = sinf(a);
    const float cx = 0.5f * (w - 1), cy = 0.5f * (h - 1);
    for (int k = 0; k < c; k++) {
        float *p = x + k * area;
        memcpy(tmp, p, area * sizeof(float));
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++) {
                /* the source of output (xx, y): the inverse rotation */
                float u = cs * (xx - cx) - sn * (y - cy) + cx;
                float v = sn * (xx - cx) + cs * (y - cy) + cy;
                int x0 = (int)floorf(u), y0 = (int)floorf(v);
                float fx = u - x0, fy = v - y0, acc = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++) {
                        int sx = x0 + i, sy = y0 + j;
                        if (sx < 0 || sx >= w || sy < 0 || sy >= h) continue;
                        acc += (i ? fx : 1 - fx) * (j ? fy : 1 - fy) * tmp[(size_t)sy * w + sx];
                    }
                p[(size_t)y * w + xx] = acc;
            }
    }
}

static void scale_clamped(float *x, size_t n, float factor, float around) {
    for (size_t i = 0; i < n; i++) x[i] = clamp01(around + factor * (x[i] - around));
}

static float mean_gray(const float *x, int c, size_t area) {
    double sum = 0;
    if (c == 3) {
        for (size_t i = 0; i < area; i++)
            sum += 0.299 * x[i] + 0.587 * x[area + i] + 0.114 * x[2 * area + i];
    } else {
        for (size_t i = 0; i < area; i++) sum += x[i];
    }
    return (float)(sum / (double)area);
}

/* ---------------------------------------------------------------- preprocessing */

static void preprocess(float *x, int c, size_t area, rg_preprocess p) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    static const float caffe_bgr_mean[3] = {103.939f, 116.779f, 123.68f};
    const size_t n = (size_t)c * area;
    switch (p) {
    case RG_PRE_SCALE01:
    case RG_PRE_COUNT: break;
    case RG_PRE_TF:
        for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] - 1.0f;
        break;
    case RG_PRE_TORCH:
        for (int k = 0; k < c; k++) {
            float m = c == 3 ? mean[k] : (mean[0] + mean[1] + mean[2]) / 3;
            float s = c == 3 ? std[k] : (std[0] + std[1] + std[2]) / 3;
            for (size_t i = 0; i < area; i++) x[k * area + i] = (x[k * area + i] - m) / s;
        }
        break;
    case RG_PRE_CAFFE:
        if (c == 3) { /* RGB planes -> BGR planes */
            for (size_t i = 0; i < area; i++) {
                float t = x[i];
                x[i] = x[2 * area + i];
                x[2 * area + i] = t;
            }
        }
        for (int k = 0; k < c; k++) {
            float m = c == 3 ? caffe_bgr_mean[k]
                             : (caffe_bgr_mean[0] + caffe_bgr_mean[1] + caffe_bgr_mean[2]) / 3;
            for (size_t i = 0; i < area; i++) x[k * area + i] = 255.0f * x[k * area + i] - m;
        }
        break;
    }
}

static const char *const preprocess_names[] = {
    [RG_PRE_SCALE01] = "scale01", [RG_PRE_TF] = "tf", [RG_PRE_TORCH] = "torch",
    [RG_PRE_CAFFE] = "caffe",
};
_Static_assert(RG_COUNT_OF(preprocess_names) == RG_PRE_COUNT, "a name for every preprocessing");

rg_status rg_preprocess_parse(const char *text, rg_preprocess *out) {
    const int i = rg_name_index(preprocess_names, RG_PRE_COUNT, text);
    if (i < 0) return rg_fail_unknown("preprocessing", text, preprocess_names, RG_PRE_COUNT);
    *out = (rg_preprocess)i;
    return RG_OK;
}

const char *const *rg_preprocess_names(int *n) {
    *n = RG_PRE_COUNT;
    return preprocess_names;
}

const char *rg_preprocess_name(rg_preprocess p) {
    return (unsigned)p < RG_PRE_COUNT ? preprocess_names[p] : "unknown";
}

/* ---------------------------------------------------------------- the chain */

void rg_transform(const rg_dataset *d, const rg_pixels *src, const rg_augment *aug,
                  uint64_t seed, bool pre, float *x) {
    const int c = d->c, h = d->h, w = d->w;
    const size_t area = (size_t)h * w;
    rg_rng r;
    rg_rng_seed(&r, seed);
    float box[4] = {0, 0, (float)src->w, (float)src->h};
    if (aug && aug->resized_crop) random_resized_box(&r, src->w, src->h, box);
    rg_resample(src, box, x, c, h, w);
    if (!aug || !rg_augment_any(aug)) {
        if (pre) preprocess(x, c, area, d->opt.preprocess);
        return;
    }
    float *tmp = NULL;
    if ((aug->crop_pad > 0 || aug->rotate_deg > 0) && !(tmp = malloc(area * sizeof(float))))
        return; /* out of memory: the sample goes un-augmented */
    if (aug->crop_pad > 0) {
        int span = 2 * aug->crop_pad + 1;
        int dx = (int)rg_rng_below(&r, (uint32_t)span) - aug->crop_pad;
        int dy = (int)rg_rng_below(&r, (uint32_t)span) - aug->crop_pad;
        shift(x, c, h, w, dx, dy, tmp);
    }
    if (aug->flip && rg_rng_uniform(&r) < 0.5f) flip(x, c, h, w);
    if (aug->rotate_deg > 0) rotate(x, c, h, w, uniform(&r, -aug->rotate_deg, aug->rotate_deg), tmp);
    free(tmp);
    if (aug->brightness > 0) {
        float lo = 1 - aug->brightness < 0 ? 0 : 1 - aug->brightness;
        scale_clamped(x, c * area, uniform(&r, lo, 1 + aug->brightness), 0.0f);
    }
    if (aug->contrast > 0) {
        float lo = 1 - aug->contrast < 0 ? 0 : 1 - aug->contrast;
        float factor = uniform(&r, lo, 1 + aug->contrast);
        scale_clamped(x, c * area, factor, mean_gray(x, c, area));
    }
    if (aug->noise_std > 0)
        for (size_t i = 0; i < c * area; i++) x[i] = clamp01(x[i] + aug->noise_std * rg_rng_normal(&r));
    if (pre) preprocess(x, c, area, d->opt.preprocess);
}

void rg_to_bytes(const float *x, int c, int h, int w, uint8_t *out) {
    const size_t area = (size_t)h * w;
    for (size_t i = 0; i < area; i++)
        for (int k = 0; k < c; k++) out[i * c + k] = (uint8_t)lrintf(clamp01(x[k * area + i]) * 255.0f);
}

/* ---------------------------------------------------------------- parsing */

bool rg_augment_any(const rg_augment *a) {
    return a && (a->flip || a->crop_pad > 0 || a->resized_crop || a->rotate_deg > 0 ||
                 a->noise_std > 0 || a->brightness > 0 || a->contrast > 0);
}

/* The number after '=' in item, within [lo, hi]. */
static rg_status number(const char *item, const char *eq, double lo, double hi, double *out) {
    char *end;
    if (!eq) return rg_fail(RG_ERR_ARG, "augmentation '%s' needs a value, e.g. %s=1", item, item);
    *out = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || !(*out >= lo && *out <= hi))
        return rg_fail(RG_ERR_ARG, "augmentation '%s': the value must be a number in [%g, %g]",
                       item, lo, hi);
    return RG_OK;
}

/* What rg_augment_parse takes (its help and its error list). */
static const char *const augment_names[] = {"flip", "crop=P", "resized-crop", "rotate=DEG",
                                            "noise=STD", "brightness=F", "contrast=F"};

const char *const *rg_augment_names(int *n) {
    *n = RG_COUNT_OF(augment_names);
    return augment_names;
}

rg_status rg_augment_parse(const char *text, rg_augment *out) {
    memset(out, 0, sizeof *out);
    if (!text || !*text || strcmp(text, "none") == 0) return RG_OK;
    char buf[256];
    if (strlen(text) >= sizeof buf) return rg_fail(RG_ERR_ARG, "augmentation list too long");
    strcpy(buf, text);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        size_t key = eq ? (size_t)(eq - item) : strlen(item);
        double v = 0;
        rg_status s = RG_OK;
#define IS(name) (key == strlen(name) && strncmp(item, name, key) == 0)
        if (IS("flip") && !eq) out->flip = true;
        else if (IS("resized-crop") && !eq) out->resized_crop = true;
        else if (IS("crop")) {
            if (!(s = number(item, eq, 1, 1024, &v)) && v != floor(v))
                s = rg_fail(RG_ERR_ARG, "augmentation '%s': crop takes whole pixels", item);
            if (!s) out->crop_pad = (int)v; /* only an in-range value is converted */
        } else if (IS("rotate")) {
            if (!(s = number(item, eq, 0, 180, &v))) out->rotate_deg = (float)v;
        } else if (IS("noise")) {
            if (!(s = number(item, eq, 0, 1, &v))) out->noise_std = (float)v;
        } else if (IS("brightness")) {
            if (!(s = number(item, eq, 0, 1, &v))) out->brightness = (float)v;
        } else if (IS("contrast")) {
            if (!(s = number(item, eq, 0, 1, &v))) out->contrast = (float)v;
        } else {
            s = rg_fail_unknown("augmentation", item, augment_names, RG_COUNT_OF(augment_names));
        }
#undef IS
        if (s) return s;
    }
    return RG_OK;
}
