/*
 * dist.c — data-parallel training over MPI: joining the job, and the few collectives
 * training needs (an all-reduce of the flat gradient buffer, sums of counters, a broadcast
 * of the flat parameter buffer, an agreement check).
 *
 * MPI is optional at build time (RG_HAVE_MPI) and at run time: the job is joined only when
 * the process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE or
 * PMI_SIZE); otherwise, and in builds without MPI, this is a job of one and every
 * collective is the identity.  A failing rank calls rg_dist_abort, which takes the whole
 * job down (MPI_Abort) instead of leaving the others waiting in a collective.
 */
#include "../internal.h"

#include <stdlib.h>
#include <time.h>

#ifdef RG_HAVE_MPI
#include <mpi.h>
#endif

static int rank = 0, size = 1;
static bool joined = false;
static double comm_seconds = 0;
static unsigned long long comm_bytes = 0;

bool rg_dist_available(void) {
#ifdef RG_HAVE_MPI
    return true;
#else
    return false;
#endif
}

rg_status rg_dist_init(int *argc, char ***argv) {
    const bool launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE");
    if (!launched || joined) return RG_OK;
#ifdef RG_HAVE_MPI
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return rg_fail(RG_ERR_STATE, "MPI_Init failed");
    /* errors in collectives come back as codes, so a rank can report and abort the job */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    joined = true;
    return RG_OK;
#else
    (void)argc, (void)argv;
    return rg_fail(RG_ERR_STATE, "started by an MPI launcher, but this regrad was built without "
                                 "MPI: apt-get install libopenmpi-dev and rebuild");
#endif
}

void rg_dist_finalize(void) {
#ifdef RG_HAVE_MPI
    if (joined) MPI_Finalize();
#endif
    joined = false;
}

void rg_dist_abort(int code) {
#ifdef RG_HAVE_MPI
    if (joined && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)code;
}

int rg_dist_rank(void) { return rank; }
int rg_dist_size(void) { return size; }
double rg_dist_comm_seconds(void) { return comm_seconds; }
unsigned long long rg_dist_comm_bytes(void) { return comm_bytes; }

#ifdef RG_HAVE_MPI
static rg_status check(int err, const char *what) {
    if (err == MPI_SUCCESS) return RG_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    return rg_fail(RG_ERR_STATE, "MPI %s failed on rank %d: %s", what, rank, msg);
}
#endif

/* A sum over ranks (or a broadcast from rank 0) of n floats, in chunks MPI's int counts
 * can hold, timed and counted. */
static rg_status float_collective(float *buf, size_t n, bool broadcast) {
    if (size == 1 || n == 0) return RG_OK;
#ifdef RG_HAVE_MPI
    const double t0 = rg_seconds();
    rg_status s = RG_OK;
    for (size_t done = 0; done < n && !s; done += 1u << 30) {
        const int chunk = (int)(n - done < (1u << 30) ? n - done : (1u << 30));
        s = broadcast ? check(MPI_Bcast(buf + done, chunk, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcast")
                      : check(MPI_Allreduce(MPI_IN_PLACE, buf + done, chunk, MPI_FLOAT, MPI_SUM,
                                            MPI_COMM_WORLD), "all-reduce");
    }
    comm_seconds += rg_seconds() - t0;
    comm_bytes += n * sizeof(float);
    return s;
#else
    (void)buf, (void)broadcast;
    return RG_OK;
#endif
}

rg_status rg_dist_allreduce_sum(float *buf, size_t n) { return float_collective(buf, n, false); }
rg_status rg_dist_broadcast(float *buf, size_t n) { return float_collective(buf, n, true); }

rg_status rg_dist_sum_doubles(double *buf, int n) {
    if (size == 1) return RG_OK;
#ifdef RG_HAVE_MPI
    return check(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "sum");
#else
    (void)buf, (void)n;
    return RG_OK;
#endif
}

rg_status rg_dist_agree(uint64_t value, bool *same) {
    *same = true;
    if (size == 1) return RG_OK;
#ifdef RG_HAVE_MPI
    uint64_t lo = value, hi = value;
    rg_status s = check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD), "min");
    if (!s) s = check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "max");
    *same = lo == hi;
    return s;
#else
    return RG_OK;
#endif
}
