#define _GNU_SOURCE  // pipe2
#include "ccr_signal_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int gate_read = -1;
static int gate_write = -1;

static void gate_handler(int signo) {
    int saved = errno;
    unsigned char number = (unsigned char)signo;
    // Non-blocking: with the pipe full (thousands of unread signals) one more changes nothing.
    ssize_t ignored = write(gate_write, &number, 1);
    (void)ignored;
    errno = saved;
}

int ccr_signal_gate_install(void) {
    if (gate_read >= 0) return gate_read;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    gate_write = fds[1];
    gate_read = fds[0];
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = gate_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    // A parent may have blocked them across exec (a supervisor that spawns with a full mask): a signal
    // sent meanwhile is pending, and is delivered to the handler now instead of never.
    sigset_t ours;
    sigemptyset(&ours);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGINT);
    sigaddset(&ours, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &ours, NULL);
    return gate_read;
}

int ccr_signal_gate_fd(void) { return gate_read; }
