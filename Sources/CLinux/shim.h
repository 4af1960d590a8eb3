#ifndef CCR_LINUX_SHIM_H
#define CCR_LINUX_SHIM_H
// Linux calls that Glibc's Swift overlay does not show without _GNU_SOURCE.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/// renameat2(RENAME_NOREPLACE): fails with EEXIST instead of replacing `newpath`.
static inline int ccr_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
}
#endif
