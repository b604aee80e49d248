package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// TestConnectFailureWarnsOnce: GoBGP reports a neighbour it cannot reach at
// debug level on every retry; the operator gets one warning per neighbour
// and error, and another after the session was up in between.
func TestConnectFailureWarnsOnce(t *testing.T) {
	var buf bytes.Buffer
	l := &gobgpLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	fail := func(key, err string) {
		l.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": key, "Error": err})
	}
	fail("192.0.2.1", "connect: network is unreachable")
	fail("192.0.2.1", "connect: network is unreachable")
	fail("192.0.2.2", "connect: network is unreachable")
	fail("192.0.2.1", "connect: connection refused")
	l.Info("Peer Up", gobgplog.Fields{"Topic": "Peer", "Key": "192.0.2.1"})
	fail("192.0.2.1", "connect: connection refused")
	if got := strings.Count(buf.String(), "level=WARN msg=\"bgp neighbour: cannot connect\""); got != 4 {
		t.Errorf("%d warnings, want 4 (first failure of .1, of .2, .1's new error, .1 after Peer Up):\n%s", got, buf.String())
	}
}
