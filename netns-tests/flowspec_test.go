package netnstests

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xrouter/xrouter/internal/testbed"
)

// portCounter counts datagrams and bytes (UDP payload) arriving on one
// port inside a namespace.
type portCounter struct {
	conn         *net.UDPConn
	pkts, nbytes atomic.Int64
}

func countUDP(t *testing.T, ns *testbed.Netns, addr string, port int) *portCounter {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	c := &portCounter{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c.pkts.Add(1)
			c.nbytes.Add(int64(n))
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return c
}

// blast sends n datagrams of size bytes to dst:port at the given interval
// and returns how long it took.
func blast(t *testing.T, s *udpSender, dst string, port, n, size int, interval time.Duration) time.Duration {
	t.Helper()
	to := netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(port))
	buf := make([]byte, size)
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := s.conn.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start)
}

type fsRow struct {
	Match   string `json:"match"`
	Source  string `json:"source"`
	Action  string `json:"action"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Over    uint64 `json:"over_rate_packets"`
}

func flowspecRows(t *testing.T, cfgPath string) map[string]fsRow {
	t.Helper()
	out, stderr, err := xr("flowspec", "-c", cfgPath, "--json", "--interval", "0")
	if err != nil {
		t.Fatalf("xrouter flowspec: %v: %s", err, stderr)
	}
	var rows []fsRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("xrouter flowspec --json: %v: %s", err, out)
	}
	m := map[string]fsRow{}
	for _, r := range rows {
		m[r.Action] = r
	}
	return m
}

// TestFlowspecStaticPrivileged: a static rule drops UDP to one port, another
// rate-limits UDP to a second port, a third port is untouched. The dropped
// traffic never arrives, the limited traffic arrives at about the rate (at
// most rate × time × 1.5 + the bucket's depth), the legitimate traffic all
// arrives, and `xrouter flowspec` counts every packet sent. A SIGHUP with
// the rules removed lets the dropped port through at once.
func TestFlowspecStaticPrivileged(t *testing.T) {
	tp := newTopo(t)
	const (
		dropPort  = 5353
		ratePort  = 5354
		legitPort = 5355
		rate      = 20000 // bytes per second
		burst     = 9216  // dataplane.FlowspecBurst(rate)
		size      = 500   // UDP payload; frames of 542 bytes
		frame     = size + 8 + 20 + 14
	)
	sock := filepath.Join(t.TempDir(), "api.sock")
	base := writeConfig(t, cfg{Interfaces: []string{testbed.LineRouterSrcDev, testbed.LineRouterDstDev}, Pin: tp.Pin})
	rules := fmt.Sprintf(`api:
  socket: %s
flowspec:
  rules:
    - match: {destination: %s/32, protocol: [udp], destination_port: ["=%d"]}
      action: {rate: 0}
    - match: {destination: %s/32, protocol: [udp], destination_port: [">=%d&<=%d"]}
      action: {rate: %d}
`, sock, dst4, dropPort, dst4, ratePort, ratePort, rate)
	baseText := string(mustRead(t, base))
	cfgPath := writeFile(t, "xrouter.yaml", baseText+rules)
	d := startDaemon(t, tp.Router, cfgPath)
	d.waitLog(t, "xrouter running", 20*time.Second)
	d.waitLog(t, "flowspec rules installed", time.Second)

	s := newUDPSender(t, tp.Src, "udp4")
	drop := countUDP(t, tp.Dst, dst4, dropPort)
	limited := countUDP(t, tp.Dst, dst4, ratePort)
	legit := countUDP(t, tp.Dst, dst4, legitPort)
	warmUp(t, tp.Src, dst4)

	const n = 1000
	blast(t, s, dst4, dropPort, n, size, 0)
	took := blast(t, s, dst4, ratePort, n, size, 2*time.Millisecond) // 271 kB/s offered
	blast(t, s, dst4, legitPort, 200, size, 100*time.Microsecond)
	if !waitFor(5*time.Second, func() bool { return legit.pkts.Load() == 200 }) {
		t.Errorf("legitimate traffic: %d of 200 datagrams arrived", legit.pkts.Load())
	}
	time.Sleep(200 * time.Millisecond)
	if got := drop.pkts.Load(); got != 0 {
		t.Errorf("dropped port: %d datagrams arrived, want 0", got)
	}
	got := limited.pkts.Load() * frame
	max := int64(rate*took.Seconds()*1.5) + burst
	min := int64(rate * took.Seconds() * 0.5)
	t.Logf("rate-limited port: %d of %d datagrams (%d frame bytes) in %s; rate %d B/s allows %.0f + burst %d",
		limited.pkts.Load(), n, got, took, rate, rate*took.Seconds(), burst)
	if got > max || got < min {
		t.Errorf("rate-limited port: %d frame bytes arrived in %s, want %d..%d", got, took, min, max)
	}

	rows := flowspecRows(t, cfgPath)
	if r := rows["drop"]; r.Packets != n || r.Bytes != n*frame || r.Source != "config" {
		t.Errorf("drop rule: %+v, want %d packets, %d bytes, source config", r, n, n*frame)
	}
	r := rows[fmt.Sprintf("rate %dB/s", rate)]
	if r.Packets != n || r.Over != uint64(n-limited.pkts.Load()) {
		t.Errorf("rate rule: %+v, want %d packets, %d over", r, n, n-limited.pkts.Load())
	}

	// Remove the rules: the next datagrams to the dropped port arrive.
	replaceConfig(t, cfgPath, baseText+fmt.Sprintf("api:\n  socket: %s\n", sock))
	d.sighup(t, "config reloaded", "config reload rejected")
	if len(flowspecRows(t, cfgPath)) != 0 {
		t.Fatal("rules still installed after the reload")
	}
	blast(t, s, dst4, dropPort, 100, size, 100*time.Microsecond)
	if !waitFor(5*time.Second, func() bool { return drop.pkts.Load() == 100 }) {
		t.Errorf("after removing the rule: %d of 100 datagrams arrived", drop.pkts.Load())
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
