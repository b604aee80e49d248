package bgp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGRPCUnixSocketAccessPrivileged starts speakers with GoBGP's API on a
// Unix socket and drives it with the stock gobgp CLI, as an operator
// would: root gets through; uid nobody is refused with the default mode
// 0600, and gets through once bgp.grpc_group names nobody's group.
func TestGRPCUnixSocketAccessPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the gobgp CLI as root and as uid nobody")
	}
	if _, err := exec.LookPath("gobgp"); err != nil {
		t.Skip("gobgp CLI not installed (Debian package gobgpd; make deps installs it)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (util-linux)")
	}
	const nobody, nogroup = 65534, 65534

	for _, tc := range []struct {
		name       string
		group      string
		wantMode   os.FileMode
		wantGID    uint32
		nobodyGets bool
	}{
		{name: "default", wantMode: 0o600, wantGID: 0},
		{name: "group", group: fmt.Sprint(nogroup), wantMode: 0o660, wantGID: nogroup, nobodyGets: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A directory everyone may enter, so that only the socket's
			// own mode and group decide who gets through.
			dir, err := os.MkdirTemp("", "xrgrpc-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "gobgp.sock")
			cfg := Config{
				AS: 65001, RouterID: "10.77.0.1", ListenPort: -1,
				GRPCAddress: unixScheme + sock, GRPCGroup: tc.group,
				Neighbors: []Neighbor{{Address: "192.0.2.7", PeerAS: 65007, Families: []string{FamilyIPv4Unicast}, Passive: true}},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("config: %v", err)
			}
			sp, _ := startTestSpeaker(t, cfg)

			fi, err := os.Lstat(sock)
			if err != nil {
				t.Fatalf("socket not in place after Start: %v", err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.wantMode || st.Uid != 0 || st.Gid != tc.wantGID {
				t.Fatalf("socket %s: mode %v uid %d gid %d, want a socket with mode %v uid 0 gid %d",
					sock, fi.Mode(), st.Uid, st.Gid, tc.wantMode, tc.wantGID)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".gobgp-api-*")); len(left) != 0 {
				t.Errorf("private bind directory left behind: %v", left)
			}

			cli := func(asNobody bool) (string, error) {
				args := []string{"gobgp", "--target", unixScheme + sock, "neighbor"}
				if asNobody {
					args = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nogroup), "--clear-groups"}, args...)
				}
				out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
				return string(out), err
			}
			var out string
			deadline := time.Now().Add(10 * time.Second)
			for {
				out, err = cli(false)
				if err == nil && strings.Contains(out, "192.0.2.7") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("root's gobgp CLI on %s: %v: %s", sock, err, out)
				}
				time.Sleep(200 * time.Millisecond)
			}

			out, err = cli(true)
			if tc.nobodyGets {
				if err != nil || !strings.Contains(out, "192.0.2.7") {
					t.Fatalf("uid nobody in group %d: gobgp CLI refused: %v: %s", nogroup, err, out)
				}
			} else if err == nil || strings.Contains(out, "192.0.2.7") {
				// The CLI reports a refused connect only as a dial
				// timeout: what counts is that it got nothing.
				t.Fatalf("uid nobody reached the API through a 0600 socket: err %v, output %q", err, out)
			}

			sp.Stop()
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket %s still there after Stop: %v", sock, err)
			}
		})
	}
}
