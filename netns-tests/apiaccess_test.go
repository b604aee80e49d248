package netnstests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestAPIGroupAccessPrivileged checks who may use the daemon's own API
// socket. Without api.group it is root's alone (mode 0600 from the start):
// `nobody` is refused. With api.group, the socket is 0660 with that group,
// and a member who cannot open the pins still gets `stats` and `status`
// from the daemon, with the counters of the traffic just forwarded.
func TestAPIGroupAccessPrivileged(t *testing.T) {
	tp := newTopo(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	const nobody, nogroup = 65534, 65534
	// Everything nobody must read lives in a directory it may enter.
	dir, err := os.MkdirTemp("", prefix+"api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		group string
	}{{"root only", ""}, {"api.group", fmt.Sprint(nogroup)}} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, "api-"+strings.ReplaceAll(tc.name, " ", "-")+".sock")
			extra := ""
			if tc.group != "" {
				extra = fmt.Sprintf("  group: %q\n", tc.group)
			}
			body := fmt.Sprintf("dataplane:\n  interfaces: [%s, %s]\n  mode: native\n  pin_path: %s\n  manage_forwarding: true\napi:\n  socket: %s\n%slog:\n  level: debug\n",
				testbed.LineRouterSrcDev, testbed.LineRouterDstDev, tp.Pin, sock, extra)
			cfgPath := filepath.Join(dir, "xrouter-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, tp.Router, cfgPath)

			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			wantMode, wantGID := os.FileMode(0o600), uint32(0)
			if tc.group != "" {
				wantMode, wantGID = 0o660, nogroup
			}
			if fi.Mode().Perm() != wantMode || st.Gid != wantGID {
				t.Fatalf("api socket %s: mode %o group %d, want %o group %d", sock, fi.Mode().Perm(), st.Gid, wantMode, wantGID)
			}
			// No socket may be left in the socket's directory but ours
			// (the private bind directory is gone).
			if m, _ := filepath.Glob(filepath.Join(dir, ".xrouter-sock-*")); len(m) != 0 {
				t.Fatalf("private bind directories left behind: %v", m)
			}

			warmUp(t, tp.Src, dst4)
			pingOK(t, tp.Src, dst4, 50)

			asNobody := func(args ...string) (string, error) {
				full := append([]string{fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nogroup), "--clear-groups", xrBin}, args...)
				out, err := exec.Command("setpriv", full...).CombinedOutput()
				return string(out), err
			}
			out, err := asNobody("stats", "--json", "--interval", "0", "-c", cfgPath)
			if tc.group == "" {
				if err == nil || !strings.Contains(out, sock+": permission denied") {
					t.Fatalf("nobody ran `xrouter stats` against a root-only daemon: err %v, output:\n%s", err, out)
				}
				out, err = asNobody("peers", "-c", cfgPath)
				if err == nil || !strings.Contains(out, sock+": permission denied") {
					t.Fatalf("nobody ran `xrouter peers` against a root-only socket: err %v, output:\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("`xrouter stats` as a member of api.group: %v\n%s\ndaemon log:\n%s", err, out, d.Log)
			}
			var doc struct {
				Forwarded uint64 `json:"forwarded"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("xrouter stats --json as nobody: %v\n%s", err, out)
			}
			if doc.Forwarded < 50 {
				t.Fatalf("xrouter stats as nobody: forwarded %d, want at least the 50 pings just forwarded", doc.Forwarded)
			}
			out, err = asNobody("status", "--json", "-c", cfgPath)
			if err != nil {
				t.Fatalf("`xrouter status` as a member of api.group: %v\n%s", err, out)
			}
			var rep statusReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("xrouter status --json as nobody: %v\n%s", err, out)
			}
			if got := rep.attachedNames(); len(got) != 2 {
				t.Fatalf("xrouter status as nobody lists %v, want both router interfaces:\n%s", got, out)
			}
			if out, err := asNobody("peers", "-c", cfgPath); err != nil {
				t.Fatalf("`xrouter peers` as a member of api.group: %v\n%s", err, out)
			}
		})
	}
}
