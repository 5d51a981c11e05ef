/*
 * data.h — internals shared by the data pipeline: image files (image.c), the per-sample
 * transform (transform.c), folders (folder.c) and the loader (loader.c).
 */
#ifndef RG_DATA_H
#define RG_DATA_H

#include "regrad.h"

/* Files larger than this are not read as images. */
#define RG_MAX_FILE_BYTES ((size_t)256 << 20)

typedef enum rg_image_format { RG_IMAGE_UNKNOWN = 0, RG_IMAGE_JPEG, RG_IMAGE_PNG } rg_image_format;

/* A decoded 8-bit image, pixels interleaved (h, w, c). */
typedef struct rg_image {
    int w, h, c;
    uint8_t *px;
} rg_image;

/* Reads a whole file (at most max_bytes) into a malloc'd buffer. */
rg_status rg_file_read(const char *path, size_t max_bytes, uint8_t **out, size_t *len);
rg_image_format rg_image_sniff(const uint8_t *b, size_t n);
/* The size a JPEG or PNG header claims, refused above max_pixels; decodes nothing. */
rg_status rg_image_probe(const uint8_t *b, size_t n, long max_pixels, int *w, int *h);
/* Decodes to `channels` (1 or 3).  A JPEG is decoded at the smallest of 1/8, 2/8, 4/8 and
 * full size that still covers min_w x min_h (0: full size). */
rg_status rg_image_decode(const uint8_t *b, size_t n, int channels, int min_w, int min_h,
                          long max_pixels, rg_image *out);
void rg_image_free(rg_image *im);
/* Writes 8-bit gray (c = 1) or RGB (c = 3) interleaved pixels as a PNG. */
rg_status rg_png_write(const char *path, const uint8_t *px, int w, int h, int c);

/* An 8-bit source image: pixel (x, y) channel k at px[y * row + x * col + k * plane]. */
typedef struct rg_pixels {
    const uint8_t *px;
    int w, h, c;
    size_t row, col, plane;
} rg_pixels;

/* Resamples the box [x0, x1) x [y0, y1) of src to dst (c, dh, dw) floats in [0, 1] with a
 * triangle (bilinear) filter widened by the reduction factor, so downscaling is
 * anti-aliased; the same weights as PIL's Image.resize(BILINEAR, box=...).  src.c may be
 * 1 or 3 and c 1 or 3: gray is replicated, RGB becomes ITU-R 601 luma. */
void rg_resample(const rg_pixels *src, const float box[4], float *dst, int c, int dh, int dw);

/* Applies the per-sample chain to src, which is the whole sample image: geometry
 * (resized-crop or a plain resize), crop, flip, rotate, brightness, contrast, noise, then
 * the preprocessing when `pre`.  aug may be NULL. */
void rg_transform(const rg_dataset *d, const rg_pixels *src, const rg_augment *aug,
                  uint64_t seed, bool pre, float *x);
/* Like rg_dataset_sample, with or without the preprocessing. */
rg_status rg_dataset_sample_pre(const rg_dataset *d, int i, const rg_augment *aug,
                                uint64_t seed, bool pre, float *x);

/* Maps x (c, h, w) in [0, 1] back to 8-bit interleaved pixels (for previews and export). */
void rg_to_bytes(const float *x, int c, int h, int w, uint8_t *out);

/* Sends one formatted line to o->warn, if any. */
void rg_data_warn(const rg_data_options *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies k class names into d (freed with it). */
rg_status rg_dataset_set_names(rg_dataset *d, const char *const *names, int k);
/* The IDX specs: fashion-mnist[:DIR] and idx:... (see rg_dataset_open); labels must be
 * below classes (0: fashion-mnist's 10, any byte for idx:).  limit > 0 reads only the first
 * `limit` training images, the training set's n still counting every label: the caller
 * truncates it to `limit` once the labels are checked. */
rg_status rg_idx_spec_open(const char *spec, int classes, int limit, rg_dataset **train_out,
                           rg_dataset **test_out);

#endif
