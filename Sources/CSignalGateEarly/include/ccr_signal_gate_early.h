#ifndef CCR_SIGNAL_GATE_EARLY_H
#define CCR_SIGNAL_GATE_EARLY_H
// Linking this target installs the signal gate before main runs (.preinit_array); nothing to call.
/// True when the constructor ran (for a self-check of the executable).
int ccr_signal_gate_installed_early(void);
#endif
