package netnstests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// randomAPIRequest is one request for the local API with one or two
// faults: a random or near-miss method or path, bad percent-encodings,
// invalid UTF-8, NUL bytes, a long path, a wrong protocol, huge,
// numerous or malformed headers, a body the API does not want, or the
// request cut short.
func randomAPIRequest(r *rand.Rand) (method string, raw []byte) {
	methods := []string{"HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH", "get", "G\x00T", "", strings.Repeat("M", 300)}
	paths := []string{"/peers", "/routes", "/stats", "/status", "/", "*", "/peers/", "//peers", "/../peers", "/%2e%2e/peers", "/peers%00", "/peers?x=1",
		"/peers?%zz", "/%zz", "/\xff\xfe", "/debug/pprof/", "http://x/peers", "xrouter:80", "/" + strings.Repeat("a/", 2000), "/peers#frag", "/peers;x", ""}
	method, path, proto := "GET", apiPathsForTest[r.IntN(4)], "HTTP/1.1"
	headers := []string{"Host: xrouter"}
	var body []byte
	cut := false
	for range 1 + r.IntN(2) {
		switch r.IntN(8) {
		case 0:
			method = methods[r.IntN(len(methods))]
		case 1:
			path = paths[r.IntN(len(paths))]
		case 2:
			b := make([]byte, 1+r.IntN(40))
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			path = "/" + string(b)
		case 3:
			proto = []string{"HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "http/1.1"}[r.IntN(5)]
		case 4:
			headers = append(headers, []string{
				"X-Junk: " + strings.Repeat("j", r.IntN(40<<10)),
				"Transfer-Encoding: chunked",
				"Content-Length: -1",
				"Content-Length: 99999999999999999999",
				"bad header line",
				"X-Bin: \x00\xff\x01",
			}[r.IntN(6)])
			if r.IntN(3) == 0 {
				headers = headers[1:] // no Host
			}
		case 5:
			for i := range 300 {
				headers = append(headers, fmt.Sprintf("X-H%d: v", i))
			}
		case 6:
			body = make([]byte, r.IntN(70<<10))
			for i := range body {
				body[i] = byte(r.IntN(256))
			}
			headers = append(headers, fmt.Sprintf("Content-Length: %d", len(body)))
		case 7:
			cut = true
		}
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s %s\r\n", method, path, proto)
	for _, h := range headers {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("Connection: close\r\n\r\n")
	req.Write(body)
	raw = req.Bytes()
	if cut {
		raw = raw[:r.IntN(len(raw)+1)] // the client stops sending
	}
	return method, raw
}

// apiPathsForTest are the API's resources.
var apiPathsForTest = []string{"/peers", "/routes", "/stats", "/status"}

// sendRaw writes raw to the API socket, half-closes, and reads one
// answer (nil when the server closed without one).
func sendRaw(t *testing.T, sock, method string, raw []byte) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	_, _ = c.Write(raw) // the server may answer and close before reading it all
	_ = c.(*net.UnixConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return nil, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body
}

// TestAPIBadRequestsPrivileged sends the running daemon's local API a few
// hundred random bad requests (XR_API_REQUESTS, default 300; seed
// XR_API_SEED, logged), holds slow connections that send half a request
// and stop, and checks after all that: every answer was JSON or an error
// status with a one-line body, the slow connections were cut off by the
// server, the daemon logged no panic, still runs, and `xrouter peers`
// still lists its neighbour.
func TestAPIBadRequestsPrivileged(t *testing.T) {
	tp := newTopo(t)
	// One neighbour that never answers (nobody listens at 10.201.2.2):
	// /peers has a row to report.
	cfgPath, sock := writeRouterConfig(t, tp, lineRouterIfaces, bgpHead+`  neighbors:
    - address: 10.201.2.2
      peer_as: 65002
      families: [ipv4-unicast]
`)
	d := startDaemon(t, tp.Router, cfgPath)

	n := 300
	if s := os.Getenv("XR_API_REQUESTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("XR_API_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("XR_API_SEED=%d", seed)
	r := rand.New(rand.NewPCG(seed, 2))

	// Slow clients: half a request line, then silence. The server must
	// cut them off (ReadHeaderTimeout) while it keeps serving others.
	const slow = 20
	var wg sync.WaitGroup
	slowCut := make(chan time.Duration, slow)
	for range slow {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("GET /pee")); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
			slowCut <- time.Since(start)
		}()
	}

	statuses := map[int]int{}
	start := time.Now()
	for i := range n {
		method, raw := randomAPIRequest(r)
		resp, body := sendRaw(t, sock, method, raw)
		if resp == nil {
			statuses[0]++
			continue
		}
		statuses[resp.StatusCode]++
		switch {
		case resp.StatusCode == http.StatusOK:
			if method != http.MethodHead && !json.Valid(body) {
				t.Fatalf("request %d %q: 200 with a body that is not JSON: %q", i, clipRaw(raw), body)
			}
		case resp.StatusCode >= 400 && resp.StatusCode < 600:
			if strings.Contains(strings.TrimSuffix(string(body), "\n"), "\n") {
				t.Fatalf("request %d %q: %s with a multi-line body %q", i, clipRaw(raw), resp.Status, body)
			}
		default:
			t.Fatalf("request %d %q: %s %q, want 200 or an error status", i, clipRaw(raw), resp.Status, body)
		}
	}
	t.Logf("%d requests in %s: answers by status %v (0: closed without an answer)", n, time.Since(start).Round(time.Millisecond), statuses)

	wg.Wait()
	close(slowCut)
	for took := range slowCut {
		if took > 15*time.Second {
			t.Errorf("a slow client was held for %s, want it cut off after about 5 s (ReadHeaderTimeout)", took)
		}
	}

	if !d.running() {
		t.Fatalf("daemon exited: %v", d.Err())
	}
	if strings.Contains(d.Log.String(), "panic") {
		t.Fatalf("the daemon logged a panic:\n%s", d.Log.String())
	}
	peers := readPeers(t, cfgPath)
	if p, ok := peers["10.201.2.2"]; len(peers) != 1 || !ok || p.PeerAS != 65002 || p.State == "established" {
		t.Fatalf("xrouter peers after the junk: %+v, want 10.201.2.2 (AS 65002), not established", peers)
	}
}

func clipRaw(raw []byte) string {
	if len(raw) > 300 {
		return string(raw[:300]) + "..."
	}
	return string(raw)
}
