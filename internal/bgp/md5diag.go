package bgp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// TCP-MD5 (RFC 2385) failures are invisible to BGP: the kernel drops a
// segment whose signature is wrong or missing before any socket sees it,
// so a session with a wrong password just never comes up. The kernel
// only counts them, per network namespace, in /proc/net/netstat (TcpExt
// TCPMD5NotFound, TCPMD5Unexpected, TCPMD5Failure). While a neighbour is
// down, the speaker watches these counters and, when they move, says why
// the session may not come up: in the log (once per neighbour and cause)
// and as the neighbour's Hint in Peers. The counters are the namespace's,
// not a neighbour's: when several neighbours are down, each that the
// cause may concern gets the hint. They move only when the peer's
// segments reach us, so the speaker must listen (the peer's connection
// attempts carry the signatures): with bgp.listen_port -1 a wrong
// password shows only on the peer's side.

// netstatPath is where the kernel counts TCP-MD5 drops (the reading
// thread's network namespace, the daemon's).
var netstatPath = "/proc/net/netstat"

// md5CheckInterval is how often the counters are read while a neighbour
// is down.
var md5CheckInterval = 3 * time.Second

// md5Counters are the kernel's TCP-MD5 drop counters.
type md5Counters struct {
	// NotFound: a segment without a signature from an address we have a
	// key for (the peer has no password).
	NotFound uint64
	// Unexpected: a signed segment from an address we have no key for
	// (only the peer has a password).
	Unexpected uint64
	// Failure: a signature that does not verify (different passwords).
	Failure uint64
}

// readMD5Counters parses the TcpExt section of /proc/net/netstat: a line
// of names and a line of values.
func readMD5Counters(r io.Reader) (md5Counters, error) {
	var names []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		var c md5Counters
		found := 0
		for i, n := range names {
			if i >= len(f) {
				break
			}
			var dst *uint64
			switch n {
			case "TCPMD5NotFound":
				dst = &c.NotFound
			case "TCPMD5Unexpected":
				dst = &c.Unexpected
			case "TCPMD5Failure":
				dst = &c.Failure
			default:
				continue
			}
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return md5Counters{}, fmt.Errorf("TcpExt %s: %q: %w", n, f[i], err)
			}
			*dst = v
			found++
		}
		if found != 3 {
			return md5Counters{}, fmt.Errorf("TcpExt: TCP-MD5 counters missing (kernel without CONFIG_TCP_MD5SIG?)")
		}
		return c, nil
	}
	if err := sc.Err(); err != nil {
		return md5Counters{}, err
	}
	return md5Counters{}, fmt.Errorf("no TcpExt section")
}

func readMD5CountersFile() (md5Counters, error) {
	f, err := os.Open(netstatPath)
	if err != nil {
		return md5Counters{}, err
	}
	defer f.Close()
	c, err := readMD5Counters(f)
	if err != nil {
		return md5Counters{}, fmt.Errorf("%s: %w", netstatPath, err)
	}
	return c, nil
}

// Hints about a session that does not come up, from the counters.
const (
	hintMD5Failure    = "TCP-MD5 signature failures from the peer (wrong password on one side?)"
	hintMD5NotFound   = "the peer does not sign with TCP-MD5 (password set only here?)"
	hintMD5Unexpected = "the peer signs with TCP-MD5 but no password is set here"
)

// md5Hints names, for the counters' growth d, the hint for a neighbour
// that is down: with a password, missing or failing signatures; without,
// unexpected ones.
func md5Hint(d md5Counters, password bool) string {
	switch {
	case password && d.Failure > 0:
		return hintMD5Failure
	case password && d.NotFound > 0:
		return hintMD5NotFound
	case !password && d.Unexpected > 0:
		return hintMD5Unexpected
	}
	return ""
}

// watchMD5 reads the counters every md5CheckInterval until ctx ends and
// gives the neighbours that are down the hint their growth points to.
func (s *Speaker) watchMD5(ctx context.Context) {
	prev, err := readMD5CountersFile()
	if err != nil {
		s.log.Warn("bgp: TCP-MD5 failures cannot be diagnosed", "err", err)
		return
	}
	t := time.NewTicker(md5CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := readMD5CountersFile()
		if err != nil {
			continue
		}
		d := md5Counters{NotFound: cur.NotFound - prev.NotFound, Unexpected: cur.Unexpected - prev.Unexpected, Failure: cur.Failure - prev.Failure}
		prev = cur
		if d == (md5Counters{}) {
			continue
		}
		peers, err := s.Peers(ctx)
		if err != nil {
			continue
		}
		up := map[netip.Addr]bool{}
		for _, p := range peers {
			up[p.Address] = p.State == "established"
		}
		for _, n := range s.config().Neighbors {
			a, err := netip.ParseAddr(n.Address)
			if err != nil || up[a] {
				continue
			}
			h := md5Hint(d, n.Password != "")
			if h == "" {
				continue
			}
			s.mu.Lock()
			old := s.hints[a]
			s.hints[a] = h
			s.mu.Unlock()
			if old != h {
				s.log.Warn(fmt.Sprintf("neighbor %s: %s", a, h), "neighbor", a, "peer_as", n.PeerAS,
					"TCPMD5Failure", d.Failure, "TCPMD5NotFound", d.NotFound, "TCPMD5Unexpected", d.Unexpected)
			}
		}
	}
}

// clearHint forgets the hint of a neighbour whose session came up.
func (s *Speaker) clearHint(addr netip.Addr) {
	s.mu.Lock()
	delete(s.hints, addr)
	s.mu.Unlock()
}
