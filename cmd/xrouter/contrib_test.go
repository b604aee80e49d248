package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xrouter/xrouter/internal/config"
)

// TestExampleConfigLoads: the example config that `make install` ships is
// accepted as it is (interfaces aside, which exist only on a real host).
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../../contrib/xrouter.yaml", nil)
	if err != nil {
		t.Fatalf("contrib/xrouter.yaml: %v", err)
	}
	if cfg.BGP.AS == 0 || len(cfg.BGP.Neighbors) == 0 || len(cfg.Dataplane.Interfaces) == 0 {
		t.Fatalf("contrib/xrouter.yaml lost its content: bgp.as %d, %d neighbours, interfaces %v",
			cfg.BGP.AS, len(cfg.BGP.Neighbors), cfg.Dataplane.Interfaces)
	}
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the shipped
// unit, with its binary paths pointed at a built xrouter, and checks that
// it grants exactly the capabilities docs/operations.md names.
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("../../contrib/systemd/xrouter.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ProtectHome=yes\n",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n", "MemoryDenyWriteExecute=yes\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "xrouter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	path := filepath.Join(dir, "xrouter.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/xrouter", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// verify also complains about unrelated units on the host; only
	// lines naming our unit count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "xrouter") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", path, err, strings.Join(ours, "\n"))
	}
}
