# shellcheck shell=bash disable=SC2034 # the addresses are read by the scenarios
# What every scenario finds in place: the namespace, its addresses, the registries and containerd.
# Set up once by the runner (world_up); scenarios may stop, fault and restart parts of it, and put
# back what later scenarios rely on. Addresses inside the namespace (nothing else is ever dialled):
#
#   127.0.0.10:5000  upstream A (docker-registry) with library/test:1
#   127.0.0.11:5000  upstream B, the same image
#   127.0.0.12:5000  upstream C, the same image
#   127.0.0.20:5000  cache of A (docker-registry proxy); 01 stops it and starts it late
#   127.0.0.21:5000  cache of B
#   127.0.0.22:5000  cache of C
#   127.0.0.23:5000  second cache of A
#   127.0.0.25:5000  second cache of B; 08 makes it dead and hanging
#   127.0.0.30       a dead cluster IP: iptables DROP inside the namespace
#   127.0.0.40:5000  a "mirror" that accepts connections and never answers
#   127.0.0.53:53    the cluster DNS (dnsmasq, lib/dns.sh); 10 starts it
#   127.0.0.1:5002   10's cache of C, named http://localhost:5002 (a name outside cluster.local)
#   127.0.0.50:5443  TLS cache of A, certificate from a CA made at test time
#   127.0.0.51:5443  mutual-TLS cache of A (requires a client certificate)
#   127.0.0.60:5000  logging proxy serving cache A below /cache/docker (override_path)
#   127.0.0.61:5000  logging proxy in front of cache A that records headers (header)

A=127.0.0.10:5000
B=127.0.0.11:5000
C=127.0.0.12:5000
IMG=library/test:1
DEAD_IP=127.0.0.30

world_up() {
    namespace_up 127.0.0.{10,11,12,20,21,22,23,25,30,40,50,51,60,61}
    make_dead "$DEAD_IP"
    dial_hangs "$DEAD_IP" 5000 || { echo "the dead IP $DEAD_IP does not hang" >&2; return 1; }
    make_tls
    start_registry up10 127.0.0.10 5000
    start_registry up11 127.0.0.11 5000
    start_registry up12 127.0.0.12 5000
    push_test_image "$A" "$B" "$C"
    start_registry cache20 127.0.0.20 5000 "http://$A"
    start_registry cache21 127.0.0.21 5000 "http://$B"
    start_registry cache22 127.0.0.22 5000 "http://$C"
    start_registry cache23 127.0.0.23 5000 "http://$A"
    start_registry cache25 127.0.0.25 5000 "http://$B"
    start_registry cache50 127.0.0.50 5443 "http://$A" tls
    start_registry cache51 127.0.0.51 5443 "http://$A" mtls
    start_hang_server hang40 127.0.0.40 5000
    start_log_proxy proxy60 127.0.0.60 5000 http://127.0.0.20:5000 /cache/docker
    start_log_proxy proxy61 127.0.0.61 5000 http://127.0.0.20:5000
    start_containerd
}
