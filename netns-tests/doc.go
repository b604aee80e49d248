// Package netnstests holds xrouter's end-to-end tests: the real binary
// (`xrouter run`) forwards between network namespaces built with
// internal/testbed, and the tests check what an operator would check —
// ping, UDP delivery, `xrouter stats` and `status`, `ip link`, and the
// kernel's own forwarding counters.
//
// The tests need root (network namespaces, veth, XDP, bpffs); their names
// end in Privileged and they skip otherwise. Run them with
//
//	go test -count=1 -p 1 -v ./netns-tests/
//
// Every namespace they create is named xrnt-*, every pin directory
// /sys/fs/bpf/xrnt-*, and both are removed when each test ends.
package netnstests
