/*
 * LD_PRELOAD shim for benches/cost.sh: valgrind 3.19 (Debian 12) does not know
 * openat2(2) (syscall 437) and fails it with ENOSYS, so forkhttpd would refuse
 * to start under it. nix calls openat2 through libc's syscall(); this shim
 * answers that one call with openat(2) and the same flags and mode, and passes
 * every other number on. It drops RESOLVE_BENEATH, so it is only for counting
 * instructions and allocations on a benchmark's own document root, never for
 * serving anything else. Nothing else in the measurement changes: the counts
 * are user-space only, and the shim adds a handful of instructions per open.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <sys/syscall.h>

long syscall(long number, ...)
{
    static long (*next)(long, ...);
    long arg[6];
    va_list ap;

    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        arg[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_openat2) {
        const struct open_how *how = (const struct open_how *)arg[2];
        return openat((int)arg[0], (const char *)arg[1], (int)how->flags, (mode_t)how->mode);
    }
    if (!next)
        next = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return next(number, arg[0], arg[1], arg[2], arg[3], arg[4], arg[5]);
}
