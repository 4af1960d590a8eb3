#include "ccr_signal_gate_early.h"
#include "ccr_signal_gate.h"

static int installed_early = 0;

// Runs from the executable's .preinit_array: after the dynamic loader has mapped and relocated the
// shared libraries, but before any of their initialisers (the Swift runtime, Foundation, ICU, libcurl)
// and before main. A plain constructor would run only after all of those, 10 to 40 ms later on a busy
// machine. What is left uncovered is the kernel's exec and the loader's own work. Only the executable
// links this target; the test bundles do not, so a test process keeps the default signal actions.
static void ccr_signal_gate_early(int argc, char **argv, char **envp) {
    (void)argc; (void)argv; (void)envp;
    installed_early = ccr_signal_gate_install() >= 0;
}

__attribute__((section(".preinit_array"), used))
static void (*const ccr_signal_gate_preinit)(int, char **, char **) = ccr_signal_gate_early;

int ccr_signal_gate_installed_early(void) { return installed_early; }
