#ifndef CCR_SYSTEMD_SHIM_H
#define CCR_SYSTEMD_SHIM_H
// sd_notify and sd_journal_sendv are not variadic; they are used as they are.
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
