#include "ccr_signal_gate_early.h"
#include "ccr_signal_gate.h"

static int installed_early = 0;

// Runs while the executable is loaded, before the Swift runtime and main: a SIGTERM sent the moment
// the process exists is already caught, never fatal. Only the executable links this target; the test
// bundles do not, so a test process keeps the default signal actions.
__attribute__((constructor)) static void ccr_signal_gate_early(void) {
    installed_early = ccr_signal_gate_install() >= 0;
}

int ccr_signal_gate_installed_early(void) { return installed_early; }
