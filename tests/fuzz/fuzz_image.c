/*
 * fuzz_image.c — libFuzzer target for the image decoding wrapper: sniffing, the header
 * probe and full decodes (gray and RGB, full size and DCT-scaled) of arbitrary bytes.
 * Built with clang -fsanitize=fuzzer,address,undefined by tests/fuzz/run.sh.
 */
#include "data/data.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int w, h;
    (void)rg_image_probe(data, size, 1L << 22, &w, &h);
    for (int k = 0; k < 3; k++) {
        rg_image im = {0};
        if (rg_image_decode(data, size, k == 1 ? 1 : 3, k == 2 ? 16 : 0, k == 2 ? 16 : 0,
                            1L << 22, &im) == RG_OK)
            rg_image_free(&im);
    }
    return 0;
}
