#ifndef CCR_LINUX_SHIM_H
#define CCR_LINUX_SHIM_H
// Linux calls that Glibc's Swift overlay does not show without _GNU_SOURCE, or that are variadic.
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/// renameat2(RENAME_NOREPLACE): fails with EEXIST instead of replacing `newpath`.
static inline int ccr_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
}

/// Names the calling thread (prctl is variadic): shown by `top -H` and in /proc/PID/task/TID/comm.
static inline int ccr_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, name, 0, 0, 0);
}

/// socket(2) of `domain`, stream or datagram, close-on-exec. The socket-type constants are a C enum
/// that each C module including <sys/socket.h> (curl, c-ares) owns a copy of; a whole-module build may
/// pick a module the calling Swift file does not import, so these calls are made here.
static inline int ccr_stream_socket(int domain) { return socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0); }
static inline int ccr_datagram_socket(int domain) { return socket(domain, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif
/// poll(2)'s POLLRDHUP (the peer shut its side down), shown only with _GNU_SOURCE.
static inline short ccr_pollrdhup(void) { return POLLRDHUP; }
#endif
