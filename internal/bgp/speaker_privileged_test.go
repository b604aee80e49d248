package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/fib"
)

// helperEnv switches the test binary into helper mode: it runs a Speaker
// wired to a fib.Routes until SIGTERM. The root test starts it under
// `nsenter --net=...` so that the whole process, with every goroutine and
// socket GoBGP creates, lives in the router namespace; locking one thread
// into the namespace would leave GoBGP's own goroutines in the host's.
const helperEnv = "XRBGP_HELPER_CONFIG"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

func runHelper(cfgJSON string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		log.Error("helper: bad config", "err", err)
		return 2
	}
	w, err := fib.NewKernelWriter(fib.Settings{}, "", nil)
	if err != nil {
		log.Error("helper: netlink", "err", err)
		return 1
	}
	defer w.Close()
	routes := fib.NewRoutes(w, fib.Settings{ResyncInterval: -1}, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	routesDone := make(chan error, 1)
	go func() { routesDone <- routes.Run(ctx) }()

	sp, err := New(cfg, routes, log)
	if err != nil {
		log.Error("helper: config", "err", err)
		return 2
	}
	if err := sp.Start(ctx); err != nil {
		log.Error("helper: start", "err", err)
		return 1
	}
	<-ctx.Done()
	sp.Stop()
	if err := <-routesDone; err != nil {
		log.Error("helper: routes", "err", err)
		return 1
	}
	return 0
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFor polls cond until it returns "" (met) or the timeout passes, then
// fails with cond's last explanation.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// netns creates a namespace deleted when the test ends.
func netns(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("xrbgp-%s-%d-%d", role, os.Getpid(), time.Now().UnixNano()%1e6)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

const birdConf = `router id 10.77.0.2;
log stderr all;
protocol device {}
protocol static s4 { ipv4; route 203.0.113.0/24 unreachable; route 100.64.99.0/24 unreachable; }
protocol static sw { ipv4; route 198.51.100.0/24 unreachable; }
protocol static s6 { ipv6; route 2001:db8:77::/48 unreachable; }
protocol bgp xr4 {
	local 10.77.0.2 as 65002;
	neighbor 10.77.0.1 as 65001;
	hold time 9;
	connect retry time 1;
	ipv4 { import all; export all; };
}
protocol bgp xr6 {
	local 2001:db8:ff::2 as 65002;
	neighbor 2001:db8:ff::1 as 65001;
	hold time 9;
	connect retry time 1;
	ipv6 { import all; export all; };
}
`

// TestSpeakerBIRDPrivileged peers the speaker with BIRD 2 over veth between
// two namespaces, for IPv4 and IPv6, and checks the kernel FIB and BIRD's
// table on both sides.
func TestSpeakerBIRDPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, runs BIRD, writes kernel routes")
	}
	for _, tool := range []string{"ip", "bird", "birdc", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (bird2 and iproute2/util-linux packages)", tool)
		}
	}
	dir := t.TempDir()
	r, p := netns(t, "r"), netns(t, "p")
	run(t, "ip", "link", "add", "xr0", "netns", r, "type", "veth", "peer", "name", "xp0", "netns", p)
	for _, c := range [][]string{
		{"-n", r, "addr", "add", "10.77.0.1/30", "dev", "xr0"},
		{"-n", r, "addr", "add", "2001:db8:ff::1/64", "dev", "xr0", "nodad"},
		{"-n", r, "link", "set", "xr0", "up"},
		{"-n", p, "addr", "add", "10.77.0.2/30", "dev", "xp0"},
		{"-n", p, "addr", "add", "2001:db8:ff::2/64", "dev", "xp0", "nodad"},
		{"-n", p, "link", "set", "xp0", "up"},
		// The operator's own route for a prefix BIRD will announce too.
		{"-n", r, "route", "add", "198.51.100.0/24", "via", "10.77.0.2", "proto", "static"},
	} {
		run(t, "ip", c...)
	}

	// BIRD in the peer namespace.
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(conf, []byte(birdConf), 0o600); err != nil {
		t.Fatal(err)
	}
	birdLog, err := os.Create(filepath.Join(dir, "bird.log"))
	if err != nil {
		t.Fatal(err)
	}
	bird := exec.Command("ip", "netns", "exec", p, "bird", "-f", "-c", conf, "-s", sock)
	bird.Stdout, bird.Stderr = birdLog, birdLog
	if err := bird.Start(); err != nil {
		t.Fatalf("starting bird: %v", err)
	}
	t.Cleanup(func() { stopProcess(t, bird, "bird", birdLog.Name()) })
	birdc := func(args ...string) string {
		out, _ := exec.Command("birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
		return string(out)
	}

	// The speaker in the router namespace, as a separate process.
	cfg := Config{
		AS: 65001, RouterID: "10.77.0.1",
		Networks: []string{"192.0.2.0/24", "2001:db8:1::/48"},
		PrefixLists: []PrefixList{
			{Name: "from-bird", Entries: []PrefixEntry{{Prefix: "198.51.100.0/24"}, {Prefix: "203.0.113.0/24"}, {Prefix: "2001:db8:77::/48"}}},
			{Name: "ours", Entries: []PrefixEntry{{Prefix: "192.0.2.0/24"}, {Prefix: "2001:db8:1::/48"}}},
		},
		Neighbors: []Neighbor{
			{Address: "10.77.0.2", PeerAS: 65002, Families: []string{FamilyIPv4Unicast}, HoldTime: 9 * time.Second, Import: "from-bird", Export: "ours"},
			{Address: "2001:db8:ff::2", PeerAS: 65002, Families: []string{FamilyIPv6Unicast}, HoldTime: 9 * time.Second, Import: "from-bird", Export: "ours"},
		},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spLog, err := os.Create(filepath.Join(dir, "speaker.log"))
	if err != nil {
		t.Fatal(err)
	}
	sp := exec.Command("nsenter", "--net=/run/netns/"+r, exe, "-test.run=^$")
	sp.Env = append(os.Environ(), helperEnv+"="+string(cfgJSON))
	sp.Stdout, sp.Stderr = spLog, spLog
	if err := sp.Start(); err != nil {
		t.Fatalf("starting speaker: %v", err)
	}
	t.Cleanup(func() { stopProcess(t, sp, "speaker", spLog.Name()) })

	waitFor(t, 30*time.Second, "both sessions Established (birdc show protocols)", func() string {
		out := birdc("show", "protocols")
		for _, proto := range []string{"xr4", "xr6"} {
			if !lineHas(out, proto, "Established") {
				return out
			}
		}
		return ""
	})

	routes := func() string {
		return run(t, "ip", "-n", r, "route", "show", "proto", "bgp") + run(t, "ip", "-n", r, "-6", "route", "show", "proto", "bgp")
	}
	waitFor(t, 20*time.Second, "BIRD's prefixes in the router's FIB with proto bgp metric 20", func() string {
		out := routes()
		for _, want := range []string{
			"198.51.100.0/24 via 10.77.0.2 dev xr0 metric 20",
			"203.0.113.0/24 via 10.77.0.2 dev xr0 metric 20",
			"2001:db8:77::/48 via 2001:db8:ff::2 dev xr0 metric 20",
		} {
			if !strings.Contains(out, want) {
				return fmt.Sprintf("missing %q in:\n%s", want, out)
			}
		}
		return ""
	})
	if out := routes(); strings.Contains(out, "100.64.99.0") {
		t.Errorf("a prefix outside the import list was installed:\n%s", out)
	}
	if out := run(t, "ip", "-n", r, "route", "show", "198.51.100.0/24"); !strings.Contains(out, "198.51.100.0/24 via 10.77.0.2 dev xr0 proto static") {
		t.Errorf("operator's static route changed after install:\n%s", out)
	}

	waitFor(t, 20*time.Second, "xrouter's networks in BIRD's table", func() string {
		out := birdc("show", "route")
		if !strings.Contains(out, "192.0.2.0/24") || !strings.Contains(out, "2001:db8:1::/48") {
			return out
		}
		return ""
	})

	// Withdraw at the peer: our route goes, the operator's stays.
	if out := birdc("disable", "sw"); !strings.Contains(out, "disabled") {
		t.Fatalf("birdc disable sw: %s", out)
	}
	waitFor(t, 20*time.Second, "withdrawn prefix removed from the FIB", func() string {
		if out := routes(); strings.Contains(out, "198.51.100.0/24") {
			return out
		}
		return ""
	})
	out := run(t, "ip", "-n", r, "route", "show", "198.51.100.0/24")
	if strings.TrimSpace(out) != "198.51.100.0/24 via 10.77.0.2 dev xr0 proto static" {
		t.Errorf("after withdrawal want exactly the operator's static route, got:\n%s", out)
	}
	if out := routes(); !strings.Contains(out, "203.0.113.0/24") {
		t.Errorf("a prefix still announced was removed:\n%s", out)
	}
}

// lineHas reports whether one line of out starts with first and contains want.
func lineHas(out, first, want string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

// stopProcess ends a child by its PID: SIGTERM, then SIGKILL after 5 s. On
// failure it shows the child's log.
func stopProcess(t *testing.T, cmd *exec.Cmd, name, logPath string) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil && name == "speaker" {
			t.Errorf("speaker exited with %v", err)
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop on SIGTERM within 5s; killed", name)
	}
	if t.Failed() {
		if b, err := os.ReadFile(logPath); err == nil {
			t.Logf("%s log:\n%s", name, b)
		}
	}
}
