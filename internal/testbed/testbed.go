// Package testbed builds network-namespace topologies for tests that need a
// real kernel: namespaces, veth pairs, addresses, routes, neighbours and
// sysctls. It drives iproute2 (`ip`) rather than a netlink library so that
// test setup reads like the commands an operator would type, and so that
// only the packages that own a kernel interface import netlink.
//
// Everything a helper creates is registered with t.Cleanup. Helpers fail the
// test on error; they never leave half-built topologies behind.
package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/kernel"
)

// BPFFS is where tests pin BPF objects.
const BPFFS = "/sys/fs/bpf"

// RequireRoot skips the test unless it runs as root with iproute2 installed,
// and makes sure BPFFS is a mounted bpffs (mounting it if needed), so that
// privileged tests fail only for real reasons, never for a missing setup.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN and CAP_BPF for network namespaces and BPF programs)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (`ip`) in PATH")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(BPFFS, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return
	}
	if err := os.MkdirAll(BPFFS, 0o755); err != nil {
		t.Fatalf("creating %s: %v", BPFFS, err)
	}
	if err := unix.Mount("bpffs", BPFFS, "bpf", 0, ""); err != nil {
		t.Fatalf("mounting bpffs on %s: %v", BPFFS, err)
	}
}

// PinDir returns a new, empty directory on the bpffs for one test's pinned
// objects, removed (with everything pinned in it) when the test ends. Its
// name is unique so that tests running concurrently never share maps.
func PinDir(t testing.TB, prefix string) string {
	t.Helper()
	dir := filepath.Join(BPFFS, prefix+randSuffix(t))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("creating pin directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing pin directory %s: %v", dir, err)
		}
	})
	return dir
}

func randSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random suffix: %v", err)
	}
	return hex.EncodeToString(b)
}

// Netns is a named network namespace (/run/netns/NAME) owned by one test.
type Netns struct {
	name string
}

// NewNetns creates a network namespace named prefix plus a random suffix and
// removes it when the test ends. Use a prefix that says which package's tests
// made it (for example "xrdp-"), so that leftovers are easy to attribute and
// concurrent test binaries never collide.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	n := &Netns{name: prefix + randSuffix(t)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		// Deleting the namespace also destroys its veth ends, and with them
		// their peers in other namespaces.
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	// A new namespace's loopback is down; local delivery inside it needs it.
	n.IP(t, "link", "set", "lo", "up")
	// Without duplicate address detection, IPv6 addresses (link-local ones
	// too, which neighbour discovery uses) work as soon as a link is up
	// instead of a second or two later, so tests need no sleeps.
	n.Sysctl(t, "net.ipv6.conf.all.accept_dad", "0")
	n.Sysctl(t, "net.ipv6.conf.default.accept_dad", "0")
	return n
}

// Name is the namespace's name as `ip netns` knows it.
func (n *Netns) Name() string { return n.name }

// Path is the namespace's bind mount, usable with setns(2) and `nsenter --net=`.
func (n *Netns) Path() string { return filepath.Join("/run/netns", n.name) }

// Exec runs a command inside the namespace with `ip netns exec` and returns
// its combined output. Note that `ip netns exec` gives the command a fresh
// sysfs, so BPFFS is not mounted there; use Do or nsenter for BPF work.
func (n *Netns) Exec(args ...string) (string, error) {
	return runIP(fmt.Sprintf("netns %s: %s", n.name, strings.Join(args, " ")), append([]string{"netns", "exec", n.name}, args...))
}

// Run is Exec that fails the test on error.
func (n *Netns) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// IPExec runs `ip -n NAME args...` and returns its combined output.
func (n *Netns) IPExec(args ...string) (string, error) {
	return runIP(fmt.Sprintf("ip -n %s %s", n.name, strings.Join(args, " ")), append([]string{"-n", n.name}, args...))
}

// runIP runs ip(8) and returns its combined output; an error carries what
// (the command as the caller names it) and the output.
func runIP(what string, args []string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", what, err, bytesTrim(out))
	}
	return string(out), nil
}

// IP is IPExec that fails the test on error: n.IP(t, "route", "add", ...).
func (n *Netns) IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.IPExec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }

// Do runs fn on a new goroutine locked to an OS thread that has entered the
// namespace, and returns fn's error (kernel.InNamespace). The caller's
// thread never changes namespace. Things resolved by ifindex in "the
// current namespace" (devmap updates, XDP attach, BPF_PROG_RUN's
// ingress_ifindex, netlink and /proc/sys/net) must happen inside fn.
// Goroutines that fn starts run in the host namespace. fn must report
// failures by returning an error: t.Fatal is only allowed on the test's own
// goroutine (from fn it returns kernel.ErrGoexit).
func (n *Netns) Do(fn func() error) error {
	return kernel.InNamespace(n.Path(), fn)
}

// Enter locks the calling goroutine to its OS thread and moves the thread
// into the namespace for good (kernel.EnterNamespace), for a worker that
// lives there (a traffic generator's thread). The thread is never
// unlocked, so it ends with the goroutine instead of going back to the
// scheduler's pool in the wrong namespace; that holds on error too.
func (n *Netns) Enter() error {
	return kernel.EnterNamespace(n.Path())
}

// Sysctl writes value to the namespace's sysctl key, in dotted form
// ("net.ipv4.conf.eth0.forwarding"; interface names must not contain dots).
// It writes /proc/sys from a thread inside the namespace, since the net.*
// sysctls are per namespace and resolved by the writer's namespace.
func (n *Netns) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) })
	if err != nil {
		t.Fatalf("netns %s: sysctl %s=%s: %v", n.name, key, value, err)
	}
}

// EnableForwarding turns on IPv4 and IPv6 forwarding for the whole namespace:
// the "all" switches also set "default" (for interfaces created later) and
// every existing interface, and bpf_fib_lookup reads the per-interface value.
func (n *Netns) EnableForwarding(t testing.TB) {
	t.Helper()
	n.Sysctl(t, "net.ipv4.conf.all.forwarding", "1")
	n.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
}

// SetForwarding sets IPv4 and IPv6 forwarding of one interface.
func (n *Netns) SetForwarding(t testing.TB, dev string, on bool) {
	t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	n.Sysctl(t, "net.ipv4.conf."+dev+".forwarding", v)
	n.Sysctl(t, "net.ipv6.conf."+dev+".forwarding", v)
}

// Link is what tests need to know about one interface.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int
}

// Link reads an interface's ifindex, MAC and MTU. Ifindexes are per
// namespace: the same number may name different interfaces elsewhere.
func (n *Netns) Link(t testing.TB, dev string) Link {
	t.Helper()
	out := n.IP(t, "-j", "link", "show", "dev", dev)
	var links []struct {
		Index   int    `json:"ifindex"`
		Name    string `json:"ifname"`
		Address string `json:"address"`
		MTU     int    `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("netns %s: parsing `ip -j link show dev %s` (%v): %s", n.name, dev, err, out)
	}
	mac, err := net.ParseMAC(links[0].Address)
	if err != nil {
		t.Fatalf("netns %s: %s: MAC %q: %v", n.name, dev, links[0].Address, err)
	}
	return Link{Name: links[0].Name, Index: links[0].Index, MAC: mac, MTU: links[0].MTU}
}

// Addrs lists the addresses configured on an interface.
func (n *Netns) Addrs(t testing.TB, dev string) []netip.Prefix {
	t.Helper()
	out := n.IP(t, "-j", "addr", "show", "dev", dev)
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("netns %s: parsing `ip -j addr show dev %s` (%v): %s", n.name, dev, err, out)
	}
	var ps []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				ps = append(ps, netip.PrefixFrom(addr, a.PrefixLen))
			}
		}
	}
	return ps
}

// XDPLinks lists the interfaces in the namespace that have an XDP program
// attached, in any mode (`ip -j link show`: the "xdp" object), in the
// kernel's order.
func (n *Netns) XDPLinks() ([]string, error) {
	out, err := n.IPExec("-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string          `json:"ifname"`
		XDP  json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("netns %s: parsing `ip -j link show` (%v): %s", n.name, err, out)
	}
	var names []string
	for _, l := range links {
		if len(l.XDP) > 0 {
			names = append(names, l.Name)
		}
	}
	return names, nil
}

// SetUp brings an interface up.
func (n *Netns) SetUp(t testing.TB, dev string) {
	t.Helper()
	n.IP(t, "link", "set", "dev", dev, "up")
}

// SetMAC sets an interface's MAC address, so that tests can use fixed frames.
func (n *Netns) SetMAC(t testing.TB, dev string, mac net.HardwareAddr) {
	t.Helper()
	n.IP(t, "link", "set", "dev", dev, "address", mac.String())
}

// SetMTU sets an interface's MTU.
func (n *Netns) SetMTU(t testing.TB, dev string, mtu int) {
	t.Helper()
	n.IP(t, "link", "set", "dev", dev, "mtu", strconv.Itoa(mtu))
}

// AddAddr adds an address with its prefix length (10.0.0.1/24) to an
// interface. IPv6 addresses skip duplicate address detection (nodad), so
// that they are usable at once even on interfaces moved in from elsewhere.
func (n *Netns) AddAddr(t testing.TB, dev string, addr netip.Prefix) {
	t.Helper()
	args := []string{"addr", "add", addr.String(), "dev", dev}
	if addr.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.IP(t, args...)
}

// AddNeigh installs a permanent neighbour entry, which neither expires nor
// needs ARP/ND traffic: bpf_fib_lookup finds it even when nothing ever
// resolved the address.
func (n *Netns) AddNeigh(t testing.TB, dev string, addr netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	n.IP(t, "neigh", "replace", addr.String(), "lladdr", mac.String(), "dev", dev, "nud", "permanent")
}

// Veth creates a veth pair with end aName in namespace a and end bName in
// namespace b (a and b may be the same), brings both ends up, and returns
// them. Interface names are limited to 15 bytes. The pair disappears with
// either namespace.
func Veth(t testing.TB, a *Netns, aName string, b *Netns, bName string) (Link, Link) {
	t.Helper()
	for _, name := range []string{aName, bName} {
		if len(name) > unix.IFNAMSIZ-1 || name == "" {
			t.Fatalf("interface name %q: must be 1 to %d bytes", name, unix.IFNAMSIZ-1)
		}
	}
	args := []string{"link", "add", aName, "type", "veth", "peer", "name", bName}
	if a != b {
		// Creating the peer directly in b avoids a name clash in a.
		args = append(args, "netns", b.Name())
	}
	a.IP(t, args...)
	a.SetUp(t, aName)
	b.SetUp(t, bName)
	return a.Link(t, aName), b.Link(t, bName)
}
