package devmap

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/testbed"
)

func TestDefaultRulesPrivileged(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.NewNetns(t, "xrinv-")
	rules := func() []syscall.NetlinkMessage {
		var msgs []syscall.NetlinkMessage
		err := ns.Do(func() error {
			var err error
			msgs, err = dumpRetry(unix.RTM_GETRULE, make([]byte, 12))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	msgs := rules()
	if !defaultRules(msgs, unix.AF_INET) || !defaultRules(msgs, unix.AF_INET6) {
		t.Fatalf("a fresh namespace's rules are not recognised as the default set")
	}
	for _, c := range []struct {
		args             []string
		custom4, custom6 bool
	}{
		{[]string{"rule", "add", "to", "10.1.0.0/16", "lookup", "100"}, true, false},
		{[]string{"-6", "rule", "add", "fwmark", "1", "lookup", "100"}, true, true},
	} {
		ns.IP(t, c.args...)
		msgs := rules()
		if got4, got6 := !defaultRules(msgs, unix.AF_INET), !defaultRules(msgs, unix.AF_INET6); got4 != c.custom4 || got6 != c.custom6 {
			t.Errorf("after ip %v: custom v4 %v v6 %v, want %v %v", c.args, got4, got6, c.custom4, c.custom6)
		}
	}
	// Moving the local rule is not the default set either.
	ns2 := testbed.NewNetns(t, "xrinv-")
	ns2.IP(t, "rule", "add", "pref", "100", "lookup", "local")
	ns2.IP(t, "rule", "del", "pref", "0")
	var msgs2 []syscall.NetlinkMessage
	if err := ns2.Do(func() error {
		var err error
		msgs2, err = dumpRetry(unix.RTM_GETRULE, make([]byte, 12))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if defaultRules(msgs2, unix.AF_INET) {
		t.Error("local rule moved to pref 100: still taken for the default set")
	}
}
