package daemon

import (
	"strings"
	"testing"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/devmap"
)

func TestRestartOnly(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Dataplane: devmap.Settings{Interfaces: []string{"eth0"}, Mode: "auto", PinPath: "/sys/fs/bpf/x"},
			Log:       config.Log{Level: "info", Format: "text"},
			BGP:       bgp.Config{AS: 65001, RouterID: "10.0.0.1", Networks: []string{"10.1.0.0/24"}},
		}
	}
	next := base()
	next.BGP.Networks = append(next.BGP.Networks, "10.2.0.0/24")
	if err := restartOnly(base(), next); err != nil {
		t.Errorf("a bgp change: %v", err)
	}
	for _, tc := range []struct {
		name, key string
		change    func(c *config.Config)
	}{
		{"interfaces", `"dataplane"`, func(c *config.Config) { c.Dataplane.Interfaces = []string{"eth1"} }},
		{"log level", `"log"`, func(c *config.Config) { c.Log.Level = "debug" }},
		{"fib metric", `"fib"`, func(c *config.Config) { c.FIB.Metric = 30 }},
		{"pprof", `"debug"`, func(c *config.Config) { c.Debug.PProf = "127.0.0.1:6060" }},
		{"gc percent", `"runtime"`, func(c *config.Config) { c.Runtime.GCPercent = 300 }},
		{"bgp off", `"bgp.as"`, func(c *config.Config) { c.BGP.AS = 0 }},
	} {
		c := base()
		tc.change(c)
		err := restartOnly(base(), c)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.key)
		}
	}
}
