package devmap

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xrouter/xrouter/internal/dataplane"
)

// procSys is a variable so tests can point it at a fake tree.
var procSys = "/proc/sys"

// readInt reads an integer sysctl; a missing or unreadable one reads as def.
func readInt(def int, parts ...string) int {
	b, err := os.ReadFile(filepath.Join(append([]string{procSys}, parts...)...))
	if err != nil {
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return def
	}
	return v
}

// portFlags reads the sysctls of iface that kernel forwarding obeys and
// bpf_fib_lookup does not, the way the kernel combines them.
func portFlags(iface string) dataplane.PortFlags {
	rp := max(readInt(0, "net/ipv4/conf/all/rp_filter"), readInt(0, "net/ipv4/conf", iface, "rp_filter"))
	acceptLocal := readInt(0, "net/ipv4/conf/all/accept_local") != 0 || readInt(0, "net/ipv4/conf", iface, "accept_local") != 0
	// ip6_forward: forwards only with all.forwarding, or the interface's
	// force_forwarding (Linux 6.17+).
	fwd6 := readInt(1, "net/ipv6/conf/all/forwarding") != 0 || readInt(0, "net/ipv6/conf", iface, "force_forwarding") != 0
	return dataplane.PortFlags{RPFilter: rp, AcceptLocal: acceptLocal, NoForward6: !fwd6}
}
