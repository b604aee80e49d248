package daemon

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/flowspec"
)

// restartOnly names the first section outside bgp that changed: those are
// read at start only.
func restartOnly(cur, next *config.Config) error {
	for _, s := range []struct {
		key       string
		cur, next any
	}{
		{"dataplane", cur.Dataplane, next.Dataplane},
		{"log", cur.Log, next.Log},
		{"metrics", cur.Metrics, next.Metrics},
		{"api", cur.API, next.API},
		{"fib", cur.FIB, next.FIB},
		{"debug", cur.Debug, next.Debug},
		{"runtime", cur.Runtime, next.Runtime},
	} {
		if !reflect.DeepEqual(s.cur, s.next) {
			return fmt.Errorf("key %q: changes to this section need a restart (`xrouter run` again); reload applies bgp.* and flowspec only", s.key)
		}
	}
	if (cur.BGP.AS == 0) != (next.BGP.AS == 0) {
		return errors.New(`key "bgp.as": turning BGP on or off needs a restart`)
	}
	return nil
}

// applyStaticFlowspec installs cfg's flowspec rules (source "config") in
// place of the ones installed before.
func (d *Daemon) applyStaticFlowspec(cfg *config.Config) error {
	rules, err := cfg.Flowspec.StaticRules()
	if err != nil {
		return fmt.Errorf("config %s: %w", cfg.File, err)
	}
	if err := d.fs.Set("config", rules); err != nil {
		return fmt.Errorf("config %s: key \"flowspec.rules\": %w", cfg.File, err)
	}
	if len(rules) > 0 {
		d.log.Info("flowspec rules installed", "source", "config", "rules", len(rules), "total", len(d.fs.Rules()))
	}
	return nil
}

// bgpFlowspec installs one neighbour's whole current FlowSpec rule set
// (empty: withdrawn). Rules the classifier cannot match are left out and
// named; the others are installed.
func (d *Daemon) bgpFlowspec(source string, rules []flowspec.Rule) {
	if err := d.fs.Set(source, rules); err != nil {
		d.log.Warn("flowspec rules from BGP not installed", "source", source, "err", err)
	}
}
