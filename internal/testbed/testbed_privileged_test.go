package testbed

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNetnsDoPrivileged(t *testing.T) {
	RequireRoot(t)
	ns := NewNetns(t, "xrtb-")
	host := netnsInode(t, "/proc/thread-self/ns/net")
	want := netnsInode(t, ns.Path())

	var inside uint64
	err := ns.Do(func() error {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		inside = st.Ino
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("inside Do: namespace inode %d, want %d", inside, want)
	}
	if got := netnsInode(t, "/proc/thread-self/ns/net"); got != host {
		t.Errorf("caller's namespace changed: inode %d, was %d", got, host)
	}

	sentinel := errors.New("sentinel")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestNetnsCleanupPrivileged(t *testing.T) {
	RequireRoot(t)
	var name, pin string
	t.Run("create", func(t *testing.T) {
		ns := NewNetns(t, "xrtb-")
		name = ns.Name()
		pin = PinDir(t, "xrtb-")
		Veth(t, ns, "a0", ns, "b0")
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Fatal(err)
		}
	})
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("namespace %s still listed after its test ended:\n%s", name, out)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin directory %s still there after its test ended (%v)", pin, err)
	}
}

func TestSysctlAndLinkPrivileged(t *testing.T) {
	RequireRoot(t)
	ns := NewNetns(t, "xrtb-")
	a, b := Veth(t, ns, "a0", ns, "b0")
	if a.Index == b.Index || len(a.MAC) != 6 || a.Name != "a0" {
		t.Fatalf("veth ends: %+v %+v", a, b)
	}
	ns.SetMTU(t, "a0", 1280)
	if got := ns.Link(t, "a0").MTU; got != 1280 {
		t.Errorf("MTU %d, want 1280", got)
	}
	ns.EnableForwarding(t)
	ns.SetForwarding(t, "b0", false)
	for key, want := range map[string]string{
		"net.ipv4.conf.a0.forwarding": "1",
		"net.ipv6.conf.a0.forwarding": "1",
		"net.ipv4.conf.b0.forwarding": "0",
		"net.ipv6.conf.b0.forwarding": "0",
	} {
		got := strings.TrimSpace(ns.Run(t, "sysctl", "-n", key))
		if got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
}

func TestLinePingPrivileged(t *testing.T) {
	RequireRoot(t)
	l := NewLine(t, "xrtb-")
	for _, dst := range []string{l.DstPort.Addr4.Addr().String(), l.DstPort.Addr6.Addr().String()} {
		if out, err := l.Src.Exec("ping", "-c", "1", "-W", "2", dst); err != nil {
			t.Errorf("ping %s through the router: %v\n%s", dst, err, out)
		}
	}
}
