/*
 * threads.c — one thread count for regrad's OpenMP pool, the machine's free memory, and
 * its monotonic clock.
 *
 * The BLAS is kept single-threaded (src/kernels/cpu/gemm.c): regrad splits each matrix
 * product across its own OpenMP threads, so exactly one pool of N threads ever runs.
 */
#include "../internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <time.h>
#include <unistd.h>


static int current_threads = 1; /* read and written atomically: any thread may set it */

void rg_set_threads(int n) {
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    __atomic_store_n(&current_threads, n, __ATOMIC_RELAXED);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int rg_get_threads(void) { return __atomic_load_n(&current_threads, __ATOMIC_RELAXED); }

int rg_thread_slots(void) {
#ifdef _OPENMP
    const int n = omp_get_max_threads(), set = rg_get_threads();
    return n > set ? n : set;
#else
    return 1;
#endif
}

size_t rg_memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

double rg_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
