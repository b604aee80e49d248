package devmap

import (
	"testing"

	"github.com/xrouter/xrouter/internal/testbed"
)

// TestScanSourcePolicyPrivileged: a fresh namespace has only the kernel's
// rules and local routes; a rule, a local route and a realm added by hand
// each show up as the kernel's reason for the full source check.
func TestScanSourcePolicyPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrdm-")
	ns.IP(t, "link", "set", "lo", "up")
	ns.IP(t, "addr", "add", "10.9.0.1/24", "dev", "lo")
	scan := func() srcPolicy {
		t.Helper()
		var p srcPolicy
		if err := ns.Do(func() error {
			var err error
			p, err = scanSourcePolicy()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := scan(); p != (srcPolicy{}) {
		t.Fatalf("fresh namespace: %+v, want nothing custom", p)
	}
	ns.IP(t, "route", "add", "local", "10.55.0.0/16", "dev", "lo")
	if p := scan(); p != (srcPolicy{customLocal: true}) {
		t.Errorf("after a local route: %+v", p)
	}
	ns.IP(t, "route", "add", "10.56.0.0/16", "dev", "lo", "realm", "7")
	ns.IP(t, "rule", "add", "to", "10.57.0.0/16", "lookup", "100")
	if p := scan(); p != (srcPolicy{customLocal: true, customRules: true, realms: true}) {
		t.Errorf("after a realm and a rule: %+v", p)
	}
	if !(srcPolicy{customRules: true}).full(false) || (srcPolicy{customRules: true}).full(true) || !(srcPolicy{realms: true}).full(true) {
		t.Error("full(): accept_local must lift custom routes and rules but not realms")
	}
}
