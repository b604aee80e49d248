// Package dataplane loads the xrouter XDP program (bpf/fwd.c) and gives typed
// access to its maps. It is the only package besides internal/devmap that
// imports cilium/ebpf.
package dataplane

// The BPF objects are generated and committed, so that go build needs no
// clang. Regenerate with `make generate`; CI checks the result is unchanged.
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type xr_counter -type xr_port -type xr_cache_cfg -type xr_cache_pcpu -type xr_nh_key -type xr_nh_key4 -type xr_nh_entry -type xr_lpm4 -type xr_lpm6 -type xr_fib_cfg -type xr_hop_table -type xr_fs_key -type xr_fs_list -type xr_fs_cand -type xr_fs_filter -type xr_fs_dst -type xr_fs_rule -type xr_fs_bucket fwd ../../bpf/fwd.c
