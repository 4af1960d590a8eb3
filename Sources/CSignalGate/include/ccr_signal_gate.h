#ifndef CCR_SIGNAL_GATE_H
#define CCR_SIGNAL_GATE_H
// SIGTERM, SIGINT and SIGHUP caught by a plain C handler that only writes the signal number to a
// pipe (async-signal-safe), so no signal can take the default action (terminate) while Swift code
// is still starting up. The Swift side reads the pipe and decides what each signal means.

/// Installs the handlers once (later calls do nothing). Returns the read end of the pipe, or -1
/// with errno set when the pipe could not be made.
int ccr_signal_gate_install(void);

/// The read end of the pipe, or -1 before `ccr_signal_gate_install`.
int ccr_signal_gate_fd(void);
#endif
