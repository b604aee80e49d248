package sysctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc builds a /proc/sys tree with the given sysctl values.
func fakeProc(t *testing.T, vals map[string]string) {
	t.Helper()
	root := t.TempDir()
	for k, v := range vals {
		p := filepath.Join(root, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := ProcSys
	ProcSys = root
	t.Cleanup(func() { ProcSys = old })
}

func TestCheckForwarding(t *testing.T) {
	fakeProc(t, map[string]string{
		"net/ipv4/conf/eth0/forwarding": "1",
		"net/ipv6/conf/eth0/forwarding": "1",
		"net/ipv6/conf/all/forwarding":  "1",
		"net/ipv4/conf/eth1/forwarding": "0",
		"net/ipv6/conf/eth1/forwarding": "1",
		"net/ipv4/conf/eth2/forwarding": "1", // no IPv6 on eth2
	})
	f, err := CheckForwarding("eth0")
	if err != nil || !f.IPv4 || !f.IPv6 || !f.IPv6All || len(f.Problems()) != 0 {
		t.Errorf("eth0: %+v, %v, problems %v", f, err, f.Problems())
	}
	f, err = CheckForwarding("eth1")
	if err != nil || f.IPv4 || len(f.Problems()) != 1 || !strings.Contains(f.Problems()[0], "net.ipv4.conf.eth1.forwarding=0") {
		t.Errorf("eth1: %+v, %v, problems %v", f, err, f.Problems())
	}
	f, err = CheckForwarding("eth2")
	if err != nil || len(f.Problems()) != 0 {
		t.Errorf("eth2 (IPv6 disabled): %+v, %v, problems %v", f, err, f.Problems())
	}
	if _, err := CheckForwarding("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("missing interface: err = %v", err)
	}
}

func TestIPv6AllOffIsAProblem(t *testing.T) {
	fakeProc(t, map[string]string{
		"net/ipv4/conf/eth0/forwarding": "1",
		"net/ipv6/conf/eth0/forwarding": "1",
		"net/ipv6/conf/all/forwarding":  "0",
	})
	f, _ := CheckForwarding("eth0")
	if p := f.Problems(); len(p) != 1 || !strings.Contains(p[0], "all.forwarding=0") {
		t.Errorf("problems = %v", p)
	}
}

func TestEnableForwarding(t *testing.T) {
	fakeProc(t, map[string]string{
		"net/ipv4/conf/eth0/forwarding": "0",
		"net/ipv6/conf/eth0/forwarding": "0",
		"net/ipv6/conf/all/forwarding":  "0",
	})
	if err := EnableForwarding("eth0"); err != nil {
		t.Fatal(err)
	}
	f, err := CheckForwarding("eth0")
	if err != nil || len(f.Problems()) != 0 {
		t.Errorf("after enabling: %+v %v", f, err)
	}
}
