#!/usr/bin/env bash
# make demo: build a three-namespace line topology (src - router - dst),
# run the real xrouter daemon on the router, send IPv4 and IPv6 traffic
# across it, print `xrouter stats`, and remove everything again.
set -euo pipefail

XR=${XR:-./bin/xrouter}
OBJ=${OBJ:-internal/dataplane/sink_bpfel.o}
ID=$$
SRC=xrdemo-src-$ID RTR=xrdemo-rtr-$ID DST=xrdemo-dst-$ID
PIN=/sys/fs/bpf/xrouter-demo-$ID
WORK=$(mktemp -d)
XR_PID=

cleanup() {
	set +e
	if [[ -n $XR_PID ]]; then kill "$XR_PID" 2>/dev/null; wait "$XR_PID" 2>/dev/null; fi
	for ns in $SRC $RTR $DST; do ip netns del "$ns" 2>/dev/null; done
	"$XR" detach --pin-path "$PIN" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "topology: $SRC (10.200.1.2, fd00:200:1::2) - $RTR - $DST (10.200.2.2, fd00:200:2::2)"
for ns in $SRC $RTR $DST; do
	ip netns add "$ns"; ip -n "$ns" link set lo up
	# No duplicate address detection on these private links: link-local
	# addresses are usable at once, so IPv6 neighbour discovery is immediate.
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
ip link add s0 netns "$SRC" type veth peer name r0 netns "$RTR"
ip link add d0 netns "$DST" type veth peer name r1 netns "$RTR"
ip -n "$SRC" addr add 10.200.1.2/24 dev s0; ip -n "$SRC" addr add fd00:200:1::2/64 dev s0 nodad
ip -n "$RTR" addr add 10.200.1.1/24 dev r0; ip -n "$RTR" addr add fd00:200:1::1/64 dev r0 nodad
ip -n "$RTR" addr add 10.200.2.1/24 dev r1; ip -n "$RTR" addr add fd00:200:2::1/64 dev r1 nodad
ip -n "$DST" addr add 10.200.2.2/24 dev d0; ip -n "$DST" addr add fd00:200:2::2/64 dev d0 nodad
for pair in "$SRC s0" "$RTR r0" "$RTR r1" "$DST d0"; do set -- $pair; ip -n "$1" link set "$2" up; done
ip -n "$SRC" route add default via 10.200.1.1; ip -n "$SRC" -6 route add default via fd00:200:1::1
ip -n "$DST" route add default via 10.200.2.1; ip -n "$DST" -6 route add default via fd00:200:2::1
# Frames redirected into a veth arrive only if its peer runs XDP (or has
# GRO on): give the end hosts a counting pass-through program.
ip -n "$SRC" link set dev s0 xdpdrv obj "$OBJ" sec xdp
ip -n "$DST" link set dev d0 xdpdrv obj "$OBJ" sec xdp

cat > "$WORK/xrouter.yaml" <<YAML
dataplane:
  interfaces: [r0, r1]
  mode: auto
  pin_path: $PIN
  manage_forwarding: true   # the demo router enables its own forwarding sysctls
log:
  level: info
api:
  socket: $WORK/xrouter.sock
YAML
say "config"
cat "$WORK/xrouter.yaml"
"$XR" config check -c "$WORK/xrouter.yaml" --netns "$RTR"

say "starting xrouter run in $RTR"
"$XR" run -c "$WORK/xrouter.yaml" --netns "$RTR" 2> >(sed 's/^/  xrouter: /' >&2) &
XR_PID=$!
for _ in $(seq 50); do
	ip -n "$RTR" link show r1 | grep -q xdp && break
	sleep 0.1
done
sleep 0.3
"$XR" status -c "$WORK/xrouter.yaml" --netns "$RTR"

say "traffic: 200 IPv4 and 200 IPv6 pings from src to dst"
ip netns exec "$SRC" ping -q -c 200 -i 0.002 -W 1 10.200.2.2 | tail -2
ip netns exec "$SRC" ping -6 -q -c 200 -i 0.002 -W 1 fd00:200:2::2 | tail -2
say "slow path: TTL 1 gets Time Exceeded from the router; the router's own address is answered locally"
ip netns exec "$SRC" ping -c 1 -t 1 -W 1 10.200.2.2 | grep -E 'Time to live|exceeded' || true
ip netns exec "$SRC" ping -c 1 -W 1 10.200.1.1 | grep 'bytes from' || true

say "xrouter stats"
"$XR" stats -c "$WORK/xrouter.yaml" --interval 0
say "kernel forwarding counter in $RTR (ForwDatagrams stays low: the fast path bypassed it)"
ip netns exec "$RTR" awk '/^Ip:/ {if (!h) {split($0,k); h=1} else {split($0,v); for (i in k) if (k[i]=="ForwDatagrams") print "  Ip ForwDatagrams", v[i]}}' /proc/net/snmp
