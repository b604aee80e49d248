// Package loadgen holds the tests' and the benchmark's own BPF programs: the
// live-frames traffic generator (bpf/gen.c), the counting sink for the far
// end (bpf/sink.c) and the reference programs for the router's ingress
// (bpf/bare.c: a bare devmap redirect and a bare drop). It imports
// cilium/ebpf; nothing in xrouter itself uses it.
package loadgen

// The BPF objects are generated and committed like internal/dataplane's.
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type gen_cfg -type gen_dst gen ../../bpf/gen.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel bare ../../bpf/bare.c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel sink ../../bpf/sink.c
