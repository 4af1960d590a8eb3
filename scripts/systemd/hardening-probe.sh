#!/bin/sh
# Runs as ExecStart= of a copy of configure-containerd-registries.service (same sandbox settings):
# tries to create a file in each directory and prints WRITABLE or DENIED for each, one per line.
for dir in /usr /usr/local/bin /root /home /etc /etc/containerd /var/lib /var/log /boot \
           /etc/containerd/certs.d /tmp; do
    probe="$dir/.ccr-hardening-probe.$$"
    if (: >"$probe") 2>/dev/null; then
        echo "WRITABLE $dir"
        rm -f "$probe"
    else
        echo "DENIED $dir"
    fi
done
# The sandbox's view of /root (ProtectHome=yes: empty and inaccessible) and of the capabilities.
if ls -A /root >/dev/null 2>&1 && [ -n "$(ls -A /root 2>/dev/null)" ]; then echo "ROOT-VISIBLE"; else echo "ROOT-HIDDEN"; fi
echo "CAPS $(grep -E '^CapEff' /proc/self/status | awk '{print $2}')"
echo "NONEWPRIVS $(grep -E '^NoNewPrivs' /proc/self/status | awk '{print $2}')"
