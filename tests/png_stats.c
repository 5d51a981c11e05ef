/*
 * png_stats.c — for test_report.sh: decodes a PNG (with regrad's own decoder) and prints
 * its size, the fraction of pixels that are not near-white, and how many distinct colours
 * (quantised to 4 bits a channel) it holds; a blank or broken render shows as ~0 and ~1.
 */
#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    uint8_t *b;
    size_t n;
    rg_image im;
    if (argc != 2 || rg_file_read(argv[1], 1u << 30, &b, &n) ||
        rg_image_decode(b, n, 3, 0, 0, 1L << 30, &im)) {
        fprintf(stderr, "png_stats: %s\n", argc == 2 ? rg_last_error() : "usage: png_stats FILE.png");
        return 1;
    }
    static unsigned char seen[4096];
    long inked = 0, colours = 0;
    for (long i = 0; i < (long)im.w * im.h; i++) {
        const uint8_t *p = im.px + 3 * i;
        inked += p[0] < 235 || p[1] < 235 || p[2] < 235;
        int q = (p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4;
        colours += !seen[q];
        seen[q] = 1;
    }
    printf("%d %d %.4f %ld\n", im.w, im.h, (double)inked / ((double)im.w * im.h), colours);
    rg_image_free(&im);
    free(b);
    return 0;
}
