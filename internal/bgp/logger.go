package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger sends GoBGP's logs to slog, so the daemon has one log stream.
type gobgpLogger struct {
	log *slog.Logger

	mu          sync.Mutex
	dialFailure map[string]string // neighbour → last connect error warned about

	// onPrefixLimit, when set, is told of GoBGP's "prefix limit reached"
	// (it has just sent the Cease NOTIFICATION): GoBGP has no event for it.
	onPrefixLimit func(neighbor, family string)
	// onPeerUp and onPeerDown, when set, are told of GoBGP's "Peer Up"
	// and "Peer Down" (with its reason), which its FSM goroutine logs
	// before the server handles the change.
	onPeerUp   func(neighbor string)
	onPeerDown func(neighbor, reason string)
}

func (l *gobgpLogger) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	l.log.Log(context.Background(), level, msg, attrs...)
}

// Panic keeps GoBGP's contract (it calls Panic on internal bugs only).
func (l *gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s", msg))
}

// Fatal does not exit: GoBGP calls it when the gRPC API cannot listen, and
// losing the API must not take the router (and its routes) down.
func (l *gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l *gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l *gobgpLogger) Warn(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelWarn, msg, fields)
	// The same message with "Pct" is the early-warning threshold, which
	// we do not configure.
	if _, pct := fields["Pct"]; msg == "prefix limit reached" && !pct && l.onPrefixLimit != nil {
		key, _ := fields["Key"].(string)
		fam := fmt.Sprint(fields["Family"])
		l.onPrefixLimit(key, fam)
	}
}

func (l *gobgpLogger) Info(msg string, fields gobgplog.Fields) {
	switch {
	case msg == "Peer Up":
		l.mu.Lock()
		delete(l.dialFailure, fmt.Sprint(fields["Key"]))
		l.mu.Unlock()
		if l.onPeerUp != nil {
			l.onPeerUp(fmt.Sprint(fields["Key"]))
		}
	case msg == "Peer Down" && l.onPeerDown != nil:
		l.onPeerDown(fmt.Sprint(fields["Key"]), fmt.Sprint(fields["Reason"]))
	}
	l.emit(slog.LevelInfo, msg, fields)
}

func (l *gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	// GoBGP reports a neighbour it cannot connect to only at debug level,
	// at every retry. An operator must see it: warn once per neighbour and
	// error, again after the session was up in between.
	if msg == "failed to connect" && l.newDialFailure(fields) {
		l.emit(slog.LevelWarn, "bgp neighbour: cannot connect", fields)
		return
	}
	l.emit(slog.LevelDebug, msg, fields)
}

func (l *gobgpLogger) newDialFailure(fields gobgplog.Fields) bool {
	key, errText := fmt.Sprint(fields["Key"]), fmt.Sprint(fields["Error"])
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dialFailure == nil {
		l.dialFailure = map[string]string{}
	}
	if last, ok := l.dialFailure[key]; ok && last == errText {
		return false
	}
	l.dialFailure[key] = errText
	return true
}

// SetLevel is ignored: the slog handler decides.
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP whether to build its (costly) debug fields at all.
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
