/*
 * device.c — compute devices by name ("cpu", "cuda", "cuda:N") and whether one can run
 * here: the CUDA probe when the library was built with the CUDA backend, else the reason.
 */
#include "../internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#ifdef RG_HAVE_CUDA
#include "../kernels/backend.h"
#include "../kernels/cuda/cuda.h"
#endif

rg_status rg_device_index(const char *device, int *index) {
    *index = 0;
    if (strcmp(device, "cuda") == 0) return RG_OK;
    const char *n = strncmp(device, "cuda:", 5) == 0 ? device + 5 : NULL;
    size_t digits = 0;
    while (n && isdigit((unsigned char)n[digits])) digits++;
    if (!n || digits == 0 || digits > 4 || n[digits])
        return rg_fail(RG_ERR_ARG, "device '%s': use cpu, cuda or cuda:N (N from 0)", device);
    for (size_t i = 0; i < digits; i++) *index = 10 * *index + (n[i] - '0');
    return RG_OK;
}

rg_status rg_device_check(const char *device, char *desc, size_t len) {
    char scratch[8];
    if (!desc || !len) desc = scratch, len = sizeof scratch;
    desc[0] = 0;
    if (!device || strcmp(device, "cpu") == 0) {
        snprintf(desc, len, "cpu");
        return RG_OK;
    }
    int index;
    const rg_status s = rg_device_index(device, &index);
    if (s) return s;
#ifdef RG_HAVE_CUDA
    return rg_cuda_probe(index, desc, len);
#else
    return rg_fail(RG_ERR_STATE, "device '%s': this regrad was built without the CUDA backend "
                                 "(build where nvcc is, with cmake -DREGRAD_CUDA=ON)", device);
#endif
}

rg_status rg_device_memory_in_use(const char *device, size_t *bytes) {
    if (!bytes) return rg_fail(RG_ERR_ARG, "device memory: bytes is NULL");
    *bytes = 0;
    rg_status s = rg_device_check(device, NULL, 0);
    if (s) return s;
    if (!device || strcmp(device, "cpu") == 0)
        return rg_fail(RG_ERR_ARG, "device memory: the CPU's is the process's (getrusage)");
#ifdef RG_HAVE_CUDA
    size_t free_bytes, total;
    if ((s = rg_cuda_select(device)) || (s = rg_cuda_memory(&free_bytes, &total))) return s;
    *bytes = total - free_bytes;
#endif
    return RG_OK;
}
