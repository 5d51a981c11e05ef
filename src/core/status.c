/*
 * status.c — the thread's last error message and small checked-arithmetic helpers.
 *
 * The library never prints and never exits; a failing call stores one line here naming the
 * cause and the fix, and returns a status the caller turns into its own message.
 */
#include "../internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

rg_status rg_fail(rg_status status, const char *fmt, ...) {
    /* formatted aside first: a message may quote the last one (rg_last_error() among the
     * arguments) to add where it happened */
    char line[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    memcpy(last_error, line, sizeof line);
    return status;
}

rg_status rg_fail_in(const char *file, const char *what, const char *name, const char *kind,
                     const char *fmt, va_list ap) {
    char msg[sizeof last_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return rg_fail(RG_ERR_FORMAT, "%s: %s '%s' (%s): %s", file, what, name, kind, msg);
}

const char *rg_last_error(void) { return last_error; }

const char *rg_status_name(rg_status s) {
    switch (s) {
    case RG_OK: return "ok";
    case RG_ERR_ARG: return "argument";
    case RG_ERR_IO: return "io";
    case RG_ERR_FORMAT: return "format";
    case RG_ERR_SHAPE: return "shape";
    case RG_ERR_MEMORY: return "memory";
    case RG_ERR_NUMERIC: return "numeric";
    case RG_ERR_STATE: return "state";
    case RG_STOPPED: return "stopped";
    }
    return "unknown";
}

bool rg_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

const char *rg_bytes_text(double bytes, char buf[32]) {
    if (bytes >= (double)(1u << 30)) snprintf(buf, 32, "%.2f GiB", bytes / (1u << 30));
    else if (bytes >= (double)(1u << 20)) snprintf(buf, 32, "%.1f MiB", bytes / (1u << 20));
    else snprintf(buf, 32, "%.0f KiB", bytes / 1024);
    return buf;
}
