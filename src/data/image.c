/*
 * image.c — reading and writing image files safely.
 *
 * The format comes from the bytes (JPEG, PNG), never from the file name.  A header probe
 * gives the size without decoding, so a folder can be checked quickly and a decompression
 * bomb (a header claiming billions of pixels) is refused before anything is allocated.
 * JPEG decodes with libjpeg-turbo, asking its IDCT for the smallest of the scales 1/8, 2/8
 * and 4/8 that still covers the wanted size (DCT-domain downscaling; the other M/8 scales
 * have no fast IDCT and measured slower than decoding whole); PNG decodes with libpng, every colour
 * type and bit depth mapped to 8-bit gray or RGB (palette expanded, 16-bit scaled to 8 by
 * rounding v / 257, alpha dropped as PIL's convert("RGB") drops it).  Corrupt or truncated data is an
 * RG_ERR_FORMAT naming the problem, never a crash: both libraries report errors through
 * longjmp back into the call that started the decode.
 */
#include "../internal.h"
#include "data.h"

#include <errno.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- files and sniffing */

rg_status rg_file_read(const char *path, size_t max_bytes, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rg_fail(RG_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    rg_status s = RG_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                s = rg_fail(RG_ERR_MEMORY, "'%s' is larger than %zu MiB: not an image this "
                                           "loader accepts", path, max_bytes >> 20);
                break;
            }
            size_t grow = cap ? cap * 2 : 1 << 16;
            if (grow > max_bytes) grow = max_bytes;
            uint8_t *nb = realloc(buf, grow);
            if (!nb) {
                s = rg_fail(RG_ERR_MEMORY, "out of memory reading '%s'", path);
                break;
            }
            buf = nb;
            cap = grow;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) s = rg_fail(RG_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (s) {
        free(buf);
        return s;
    }
    *out = buf;
    *len = n;
    return RG_OK;
}

rg_image_format rg_image_sniff(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return RG_IMAGE_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return RG_IMAGE_JPEG;
    return RG_IMAGE_UNKNOWN;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks JPEG markers to the first start-of-frame, without decoding anything. */
static rg_status jpeg_header_size(const uint8_t *b, size_t n, int *w, int *h) {
    size_t i = 2;
    while (i + 4 <= n) {
        if (b[i] != 0xff) return rg_fail(RG_ERR_FORMAT, "corrupt JPEG marker");
        uint8_t m = b[i + 1];
        if (m == 0xff) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* no length */
            i += 2;
            continue;
        }
        size_t seg = (size_t)b[i + 2] << 8 | b[i + 3];
        if (seg < 2) return rg_fail(RG_ERR_FORMAT, "corrupt JPEG segment length");
        bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (sof) {
            if (i + 9 > n || seg < 7) break;
            *h = b[i + 5] << 8 | b[i + 6];
            *w = b[i + 7] << 8 | b[i + 8];
            if (*w == 0 || *h == 0) return rg_fail(RG_ERR_FORMAT, "JPEG with a zero size");
            return RG_OK;
        }
        if (m == 0xd9 || m == 0xda) break; /* end of image or scan before any frame */
        i += 2 + seg;
    }
    return rg_fail(RG_ERR_FORMAT, "JPEG without a frame header (truncated?)");
}

rg_status rg_image_probe(const uint8_t *b, size_t n, long max_pixels, int *w, int *h) {
    rg_status s;
    switch (rg_image_sniff(b, n)) {
    case RG_IMAGE_PNG:
        if (n < 24 || memcmp(b + 12, "IHDR", 4) != 0)
            return rg_fail(RG_ERR_FORMAT, "PNG without an IHDR header (truncated?)");
        if (be32(b + 16) > 0x7fffffff || be32(b + 20) > 0x7fffffff)
            return rg_fail(RG_ERR_FORMAT, "PNG size out of range");
        *w = (int)be32(b + 16);
        *h = (int)be32(b + 20);
        if (*w == 0 || *h == 0) return rg_fail(RG_ERR_FORMAT, "PNG with a zero size");
        break;
    case RG_IMAGE_JPEG:
        if ((s = jpeg_header_size(b, n, w, h))) return s;
        break;
    default:
        return rg_fail(RG_ERR_FORMAT, n == 0 ? "empty file" : "not a JPEG or PNG image");
    }
    if ((double)*w * (double)*h > (double)max_pixels)
        return rg_fail(RG_ERR_MEMORY, "image claims %dx%d pixels, above the limit of %ld "
                                      "(a decompression bomb?)", *w, *h, max_pixels);
    return RG_OK;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct jpeg_guard {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_guard;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    cinfo->err->format_message(cinfo, g->message);
    longjmp(g->jump, 1);
}

/* Warnings are ignored except a premature end of data: a truncated file is an error, not
 * an image with a gray bottom. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

/* Bounds the work on hostile progressive files (thousands of scans). */
static void jpeg_on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > 500) {
        jpeg_guard *g = (jpeg_guard *)cinfo->err;
        snprintf(g->message, sizeof g->message, "JPEG with more than 500 scans");
        longjmp(g->jump, 1);
    }
}

static rg_status decode_jpeg(const uint8_t *b, size_t n, int channels, int min_w, int min_h,
                             rg_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    uint8_t *volatile px = NULL;
    cinfo.err = jpeg_std_error(&guard.mgr);
    guard.mgr.error_exit = jpeg_on_error;
    guard.mgr.emit_message = jpeg_on_message;
    if (setjmp(guard.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(px);
        return rg_fail(RG_ERR_FORMAT, "corrupt JPEG: %s", guard.message);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, b, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return rg_fail(RG_ERR_FORMAT, "CMYK JPEG is not supported: convert it to RGB");
    }
    /* The smallest fast scale whose output still covers the wanted size. */
    cinfo.scale_denom = 8;
    cinfo.scale_num = 8;
    if (min_w > 0 && min_h > 0) {
        for (unsigned m = 1; m < 8; m *= 2) { /* 1/8, 2/8, 4/8 have fast IDCTs; 3/8, 5/8.. do not */
            if ((cinfo.image_width * m + 7) / 8 >= (unsigned)min_w &&
                (cinfo.image_height * m + 7) / 8 >= (unsigned)min_h) {
                cinfo.scale_num = m;
                break;
            }
        }
    }
    jpeg_start_decompress(&cinfo);
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    const int c = cinfo.output_components;
    px = malloc((size_t)w * h * c);
    if (!px) {
        snprintf(guard.message, sizeof guard.message, "out of memory");
        longjmp(guard.jump, 1);
    }
    /* many rows per call: one row at a time makes libjpeg upsample pairs of rows into a
     * spare buffer and copy them out */
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[16];
        const JDIMENSION first = cinfo.output_scanline;
        const int k = h - (int)first < 16 ? h - (int)first : 16;
        for (int i = 0; i < k; i++) rows[i] = px + (size_t)(first + i) * w * c;
        jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)k);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *out = (rg_image){.w = w, .h = h, .c = c, .px = px};
    return RG_OK;
}

/* ---------------------------------------------------------------- PNG */

typedef struct png_source {
    const uint8_t *data;
    size_t len, pos;
    char message[128];
} png_source;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t len) {
    png_source *src = png_get_io_ptr(png);
    if (len > src->len - src->pos) png_error(png, "unexpected end of data (truncated file)");
    memcpy(dst, src->data + src->pos, len);
    src->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {}

static rg_status decode_png(const uint8_t *b, size_t n, int channels, rg_image *out) {
    png_source src = {.data = b, .len = n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return rg_fail(RG_ERR_MEMORY, "out of memory for the PNG decoder");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(px);
        free(rows);
        return rg_fail(RG_ERR_FORMAT, "corrupt PNG: %s", src.message);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff); /* sizes were checked by the probe */
    png_read_info(png, info);
    const int type = png_get_color_type(png, info);
    png_set_expand(png);      /* palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha */
    png_set_scale_16(png);    /* 16-bit -> round(v / 257) */
    png_set_strip_alpha(png); /* dropped, not composited */
    bool gray = !(type & PNG_COLOR_MASK_COLOR);
    if (channels == 3 && gray) png_set_gray_to_rgb(png);
    if (channels == 1 && !gray) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700); /* ITU-R 601, as PIL */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    const int c = png_get_channels(png, info);
    if (c != channels) png_error(png, "unexpected channel count after conversion");
    px = malloc((size_t)w * h * c);
    rows = malloc((size_t)h * sizeof *rows);
    if (!px || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = px + (size_t)y * w * c;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = (rg_image){.w = w, .h = h, .c = c, .px = px};
    return RG_OK;
}

rg_status rg_image_decode(const uint8_t *b, size_t n, int channels, int min_w, int min_h,
                          long max_pixels, rg_image *out) {
    int w, h;
    rg_status s = rg_image_probe(b, n, max_pixels, &w, &h);
    if (s) return s;
    if (channels != 1 && channels != 3)
        return rg_fail(RG_ERR_ARG, "images decode to 1 or 3 channels, not %d", channels);
    if (rg_image_sniff(b, n) == RG_IMAGE_PNG) return decode_png(b, n, channels, out);
    return decode_jpeg(b, n, channels, min_w, min_h, out);
}

void rg_image_free(rg_image *im) {
    free(im->px);
    im->px = NULL;
}

/* ---------------------------------------------------------------- writing PNG */

rg_status rg_png_write(const char *path, const uint8_t *px, int w, int h, int c) {
    png_image im = {.version = PNG_IMAGE_VERSION, .width = (png_uint_32)w,
                    .height = (png_uint_32)h,
                    .format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB};
    if (!png_image_write_to_file(&im, path, 0, px, 0, NULL))
        return rg_fail(RG_ERR_IO, "cannot write '%s': %s", path, im.message);
    return RG_OK;
}
