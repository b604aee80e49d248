package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xrouter.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsAndFile(t *testing.T) {
	p := writeFile(t, `
dataplane:
  interfaces: [eth1, eth2]
  mode: generic
  resync_interval: 5s
log:
  format: json
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Dataplane.Interfaces; len(got) != 2 || got[0] != "eth1" || got[1] != "eth2" {
		t.Errorf("interfaces = %v", got)
	}
	if c.Dataplane.Mode != "generic" || c.Log.Format != "json" || c.Log.Level != "info" {
		t.Errorf("mode/format/level = %q/%q/%q", c.Dataplane.Mode, c.Log.Format, c.Log.Level)
	}
	if c.Dataplane.PinPath != "/sys/fs/bpf/xrouter" || c.Dataplane.ResyncInterval != 5*time.Second {
		t.Errorf("pin_path/resync = %q/%v", c.Dataplane.PinPath, c.Dataplane.ResyncInterval)
	}
	if cc := c.Dataplane.Cache; !cc.Enabled || cc.Size != 65536 || cc.MaxAge != 2*time.Second {
		t.Errorf("cache defaults = %+v", cc)
	}
	if err := c.RequireInterfaces(); err != nil {
		t.Error(err)
	}
	if !c.Dataplane.Matches("eth1") || c.Dataplane.Matches("eth3") {
		t.Error("Matches disagrees with interfaces")
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the one-line error
	}{
		{"unknown key", "dataplane:\n  interfaces: [a]\n  modes: auto\n", []string{`unknown key "dataplane.modes"`}},
		{"unknown top-level key", "dataplne:\n  mode: auto\n", []string{`unknown key "dataplne`}},
		{"unknown mode", "dataplane:\n  mode: fast\n", []string{`"dataplane.mode"`, `"fast"`}},
		{"unknown netfilter mode", "dataplane:\n  netfilter: ignore\n", []string{`"dataplane.netfilter"`, `"ignore"`, "respect or bypass"}},
		{"malformed bool", "dataplane:\n  detach_on_exit: maybe\n", []string{"dataplane.detach_on_exit"}},
		{"list for string", "dataplane:\n  mode: [1, 2]\n", []string{"dataplane.mode"}},
		{"bad duration", "dataplane:\n  resync_interval: soon\n", []string{"dataplane.resync_interval"}},
		{"bad pattern", "dataplane:\n  interface_pattern: \"eth[\"\n", []string{"dataplane.interface_pattern"}},
		{"relative pin path", "dataplane:\n  pin_path: xr\n", []string{"dataplane.pin_path"}},
		{"bad interface name", "dataplane:\n  interfaces: [\"a/b\"]\n", []string{"dataplane.interfaces", `"a/b"`}},
		{"duplicate interface", "dataplane:\n  interfaces: [a, a]\n", []string{"dataplane.interfaces", "twice"}},
		{"bad metrics address", "metrics:\n  listen: localhost\n", []string{"metrics.listen"}},
		{"bad level", "log:\n  level: loud\n", []string{"log.level"}},
		{"not yaml", "dataplane: [\n", []string{"config "}},
		{"bgp unknown neighbour key", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - address: 10.0.0.2\n      peer_as: 65002\n      families: [ipv4-unicast]\n      colour: red\n", []string{"colour"}},
		{"bgp malformed network", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  networks: [10.0.0.0/33]\n", []string{"bgp.networks", "10.0.0.0/33"}},
		{"bgp max_prefixes action", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - address: 10.0.0.2\n      peer_as: 65002\n      families: [ipv4-unicast]\n      max_prefixes: {limit: 5, action: explode}\n", []string{"bgp.neighbors[0].max_prefixes.action", "explode"}},
		{"bgp max_prefixes negative", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - address: 10.0.0.2\n      peer_as: 65002\n      families: [ipv4-unicast]\n      max_prefixes: -1\n", []string{"max_prefixes"}},
		{"bgp restart_time too long", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  graceful_restart: {enabled: true, restart_time: 2h}\n", []string{"bgp.graceful_restart.restart_time"}},
		{"bgp redistribute without list", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  redistribute:\n    static: {enabled: true}\n", []string{"bgp.redistribute.static.prefix_list"}},
		{"bgp redistribute unknown list", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  redistribute:\n    connected: {enabled: true, prefix_list: nope}\n", []string{"bgp.redistribute.connected.prefix_list", "nope"}},
		{"bgp neighbour without families", "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - address: 10.0.0.2\n      peer_as: 65002\n", []string{"bgp.neighbors[0].families"}},
		{"fib table local", "fib:\n  table: 255\n", []string{"fib.table"}},
		{"bad memory limit", "runtime:\n  memory_limit: lots\n", []string{"runtime.memory_limit", "lots"}},
		{"gc percent out of range", "runtime:\n  gc_percent: -5\n", []string{"runtime.gc_percent"}},
		{"gc off without limit", "runtime:\n  gc_percent: -1\n", []string{"runtime.gc_percent", "memory_limit"}},
		{"bad pprof address", "debug:\n  pprof: 6060\n", []string{"debug.pprof"}},
		{"cache size too small", "dataplane:\n  cache:\n    size: 10\n", []string{"dataplane.cache.size", "10"}},
		{"cache size not a number", "dataplane:\n  cache:\n    size: big\n", []string{"dataplane.cache.size"}},
		{"cache max_age zero", "dataplane:\n  cache:\n    max_age: 0s\n", []string{"dataplane.cache.max_age"}},
		{"cache enabled not bool", "dataplane:\n  cache:\n    enabled: perhaps\n", []string{"dataplane.cache.enabled"}},
		{"cache unknown key", "dataplane:\n  cache:\n    ttl: 5s\n", []string{"dataplane.cache.ttl"}},
		// Found by TestLoadRandomDocuments: the group name came back raw,
		// its newline splitting the error.
		{"newline in a group name", "api:\n  group: \"wheel\\nx\"\n", []string{`key "api.group"`, `wheel\nx`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.body)
			_, err := Load(p, nil)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.body)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.Contains(msg, p) {
				t.Errorf("error does not name the file %s: %q", p, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestRequireInterfaces(t *testing.T) {
	c, err := Load(writeFile(t, "log:\n  level: debug\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RequireInterfaces(); err == nil || !strings.Contains(err.Error(), "dataplane.interfaces") {
		t.Errorf("RequireInterfaces = %v, want an error naming dataplane.interfaces", err)
	}
}

func TestEnvAndFlagsOverride(t *testing.T) {
	p := writeFile(t, "dataplane:\n  interfaces: [a]\n  mode: native\n  pin_path: /sys/fs/bpf/file\n")
	t.Setenv("XROUTER_DATAPLANE_MODE", "generic")
	t.Setenv("XROUTER_DATAPLANE_PIN_PATH", "/sys/fs/bpf/env")
	t.Setenv("XROUTER_DATAPLANE_DETACH_ON_EXIT", "yes")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("pin-path", "", "")
	if err := fs.Parse([]string{"--pin-path", "/sys/fs/bpf/flag"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, map[string]*pflag.Flag{"dataplane.pin_path": fs.Lookup("pin-path")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Dataplane.Mode != "generic" {
		t.Errorf("env did not override mode: %q", c.Dataplane.Mode)
	}
	if c.Dataplane.PinPath != "/sys/fs/bpf/flag" {
		t.Errorf("flag did not win over env: %q", c.Dataplane.PinPath)
	}
	if !c.Dataplane.DetachOnExit {
		t.Error("XROUTER_DATAPLANE_DETACH_ON_EXIT=yes not applied")
	}
	t.Setenv("XROUTER_DATAPLANE_MODE", "turbo")
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "dataplane.mode") {
		t.Errorf("bad env value: err = %v", err)
	}
}

func TestPatternMatches(t *testing.T) {
	c, err := Load(writeFile(t, "dataplane:\n  interface_pattern: \"r*\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Dataplane.Matches("r0") || c.Dataplane.Matches("s0") {
		t.Error("pattern r* matched wrongly")
	}
}

func TestKeysListsEveryField(t *testing.T) {
	want := []string{"dataplane.interfaces", "dataplane.interface_pattern", "dataplane.mode", "dataplane.pin_path",
		"dataplane.detach_on_exit", "dataplane.manage_forwarding", "dataplane.resync_interval",
		"log.level", "log.format", "metrics.listen", "api.socket", "fib.metric", "fib.table",
		"fib.stale_timeout", "fib.resync_interval", "fib.remove_on_stop", "fib.nexthop_objects", "fib.pic", "debug.pprof", "runtime.memory_limit", "runtime.gc_percent", "bgp.grpc_address",
		"dataplane.cache.enabled", "dataplane.cache.size", "dataplane.cache.max_age", "dataplane.netfilter",
		"api.group", "metrics.allow_remote", "debug.allow_remote"}
	got := strings.Join(Keys(), ",")
	for _, k := range want {
		if !strings.Contains(got, k) {
			t.Errorf("Keys() lacks %s", k)
		}
	}
	if len(Keys()) != len(want) {
		t.Errorf("Keys() = %v, want %d keys", Keys(), len(want))
	}
}

func TestLoadBGPFeatureKeys(t *testing.T) {
	p := writeFile(t, `
bgp:
  as: 65001
  router_id: 10.0.0.1
  graceful_restart: {enabled: true, restart_time: 30s}
  prefix_lists:
    - name: lan
      entries: [{prefix: 10.1.0.0/16, le: 24}]
  redistribute:
    connected: {enabled: true, prefix_list: lan}
  neighbors:
    - address: 10.0.0.2
      peer_as: 65002
      families: [ipv4-unicast]
      max_prefixes: 100
    - address: 10.0.0.3
      peer_as: 65003
      families: [ipv4-unicast]
      graceful_restart: false
      max_prefixes: {limit: 10, action: restart, restart_after: 5s}
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	if b.GRPCAddress != "unix:///run/xrouter/gobgp.sock" {
		t.Errorf("grpc_address default = %q, want unix:///run/xrouter/gobgp.sock", b.GRPCAddress)
	}
	if !b.GracefulRestart.Enabled || b.GracefulRestart.RestartTime != 30*time.Second {
		t.Errorf("graceful_restart = %+v", b.GracefulRestart)
	}
	if !b.Redistribute.Connected.Enabled || b.Redistribute.Connected.PrefixList != "lan" || b.Redistribute.Static.Enabled {
		t.Errorf("redistribute = %+v", b.Redistribute)
	}
	if mp := b.Neighbors[0].MaxPrefixes; mp.Limit != 100 || mp.Action != "" {
		t.Errorf("plain max_prefixes = %+v, want limit 100 (action defaults to teardown)", mp)
	}
	if mp := b.Neighbors[1].MaxPrefixes; mp.Limit != 10 || mp.Action != "restart" || mp.RestartAfter != 5*time.Second {
		t.Errorf("max_prefixes = %+v", mp)
	}
	if gr := b.Neighbors[1].GracefulRestart; gr == nil || *gr {
		t.Errorf("neighbour graceful_restart = %v, want false", gr)
	}
	if b.Neighbors[0].GracefulRestart != nil {
		t.Error("neighbour graceful_restart set without being configured")
	}
}

func TestMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1700MiB": 1700 << 20, "2GiB": 2 << 30, "4096": 4096, "64 KiB": 64 << 10} {
		got, err := Runtime{MemoryLimit: in}.MemoryLimitBytes()
		if err != nil || got != want {
			t.Errorf("memory_limit %q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "0", "1.5GiB", "2TB"} {
		if _, err := (Runtime{MemoryLimit: in}).MemoryLimitBytes(); err == nil {
			t.Errorf("memory_limit %q accepted", in)
		}
	}
}

func TestGCTarget(t *testing.T) {
	for _, c := range []struct {
		set  int
		gogc string
		want int
	}{
		{0, "", DefaultGCPercent}, // nothing set: xrouter's default
		{0, "150", 0},             // GOGC set: the runtime already follows it
		{0, "off", 0},
		{300, "", 300},    // the key wins
		{300, "150", 300}, // over GOGC too
		{-1, "", -1},      // off (validated to need a memory limit)
		{100, "", 100},    // Go's own default, asked for
	} {
		if got := (Runtime{GCPercent: c.set}).GCTarget(c.gogc); got != c.want {
			t.Errorf("gc_percent %d, GOGC %q: target %d, want %d", c.set, c.gogc, got, c.want)
		}
	}
}

func TestNetfilterMode(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dataplane.Netfilter != "respect" {
		t.Errorf("default dataplane.netfilter %q, want respect", c.Dataplane.Netfilter)
	}
	c, err = Load(writeFile(t, "dataplane:\n  netfilter: bypass\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dataplane.Netfilter != "bypass" || len(c.Dataplane.Netfilter.Warnings()) == 0 {
		t.Errorf("dataplane.netfilter %q, warnings %v", c.Dataplane.Netfilter, c.Dataplane.Netfilter.Warnings())
	}
}

// TestRemoteListenersNeedAllowRemote: /metrics and pprof have no
// authentication, so an address other than loopback is refused unless the
// section's allow_remote says so, with the key named.
func TestRemoteListenersNeedAllowRemote(t *testing.T) {
	for _, tc := range []struct {
		yaml, wantErr string
	}{
		{"metrics:\n  listen: 127.0.0.1:9100\n", ""},
		{"metrics:\n  listen: '[::1]:9100'\n", ""},
		{"metrics:\n  listen: 0.0.0.0:9100\n", `key "metrics.listen": 0.0.0.0:9100 is not a loopback address and the endpoint has no authentication: bind it to 127.0.0.1 or ::1, or set metrics.allow_remote: true`},
		{"metrics:\n  listen: 192.0.2.1:9100\n  allow_remote: true\n", ""},
		{"debug:\n  pprof: 10.0.0.1:6060\n", `key "debug.pprof": 10.0.0.1:6060 is not a loopback address`},
		{"debug:\n  pprof: '[::]:6060'\n  allow_remote: true\n", ""},
		{"api:\n  group: no-such-group-xr\n", `key "api.group": group "no-such-group-xr"`},
		{"api:\n  socket: ''\n  group: '0'\n", `key "api.group": "0" set but api.socket is off`},
	} {
		_, err := loadYAML(t, tc.yaml)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.wantErr)
		}
	}
}

// TestWarningsNameEveryOpenSurface: each surface opened beyond root gets
// one warning naming its key; the defaults get none.
func TestWarningsNameEveryOpenSurface(t *testing.T) {
	c, err := loadYAML(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("defaults: warnings %q, want none", w)
	}
	c, err = loadYAML(t, "api:\n  group: '0'\nmetrics:\n  listen: 0.0.0.0:9100\n  allow_remote: true\ndebug:\n  pprof: 127.0.0.1:6060\n")
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, key := range []string{"api.group:", "metrics.listen: 0.0.0.0:9100 (metrics.allow_remote)", "debug.pprof: 127.0.0.1:6060: every local user"} {
		if !strings.Contains(w, key) {
			t.Errorf("warnings lack %q:\n%s", key, w)
		}
	}
}

func loadYAML(t *testing.T, body string) (*Config, error) {
	t.Helper()
	if body == "" {
		body = "log:\n  level: info\n"
	}
	return Load(writeFile(t, body), nil)
}
