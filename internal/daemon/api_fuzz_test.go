package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiTestServer serves the daemon's API handler, with the daemon's HTTP
// server settings, on a unix socket in a temporary directory. BGP is off
// (nil speaker and routes) and the pin path holds no data plane, so
// /stats and /status answer with their error. panicked reports whether
// the server recovered from a handler's panic (it then closes the
// connection without an answer and logs it).
func apiTestServer(tb testing.TB) (sock string, panicked func() string) {
	tb.Helper()
	sock = filepath.Join(tb.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	c := &control{pinPath: filepath.Join(tb.TempDir(), "nopins"), matches: func(string) bool { return false }}
	srv := apiServer(c.handler())
	errLog := &panicLog{}
	srv.ErrorLog = log.New(errLog, "", 0)
	serveHTTP(ctx, ln, srv, slog.New(slog.DiscardHandler))
	return sock, errLog.panicked
}

// panicLog keeps the first panic the HTTP server logs.
type panicLog struct {
	mu    sync.Mutex
	first string
}

func (l *panicLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == "" && bytes.Contains(p, []byte("panic")) {
		l.first = string(p)
	}
	return len(p), nil
}

func (l *panicLog) panicked() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// rawRequest writes req as it is to the socket and reads one response
// (nil when the server closed the connection without one).
func rawRequest(tb testing.TB, sock, method string, req []byte) (*http.Response, []byte) {
	tb.Helper()
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", sock, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req); err != nil {
		// The server may answer and close before reading everything.
		tb.Logf("write: %v", err)
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return nil, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		tb.Fatalf("reading the response body: %v", err)
	}
	return resp, body
}

// checkAPIResponse asserts what every answer of the API must be: a
// success is JSON; anything else is an error status with a one-line body
// (JSON {"error": ...} from the handler, or Go's own one-line text for a
// request its HTTP parser refused).
func checkAPIResponse(t *testing.T, req []byte, resp *http.Response, body []byte) {
	t.Helper()
	if resp == nil {
		return // connection closed without an answer: nothing to judge
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if resp.Request.Method == http.MethodHead {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("request %q: 200 with a body that is not JSON: %q", req, body)
		}
	case resp.StatusCode >= 400 && resp.StatusCode < 600:
		b := strings.TrimSuffix(string(body), "\n")
		if strings.Contains(b, "\n") {
			t.Fatalf("request %q: %s with a multi-line body: %q", req, resp.Status, body)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("request %q: %s with JSON body %q, want {\"error\": ...}", req, resp.Status, body)
			}
		}
	default:
		t.Fatalf("request %q: status %s (body %q): the API answers 200 or an error, never a redirect", req, resp.Status, body)
	}
}

// checkPeersAnswer asserts the API still answers GET /peers with the
// (empty, BGP off) list of neighbours.
func checkPeersAnswer(t *testing.T, sock string) {
	t.Helper()
	var rows []PeerRow
	if err := unixGet(sock, "/peers", &rows); err != nil {
		t.Fatalf("GET /peers after bad input: %v", err)
	}
	if rows == nil || len(rows) != 0 {
		t.Fatalf("GET /peers after bad input: %v, want []", rows)
	}
}

// FuzzAPI sends arbitrary requests (method, target, one header, body) to
// the daemon's local API as raw bytes on its socket: the server parses
// them as it would a client's. Every answer is JSON or a clean error with
// a one-line body, nothing panics, and the API still answers /peers.
func FuzzAPI(f *testing.F) {
	for _, seed := range []struct{ method, target, header, body string }{
		{"GET", "/peers", "", ""},
		{"GET", "/routes", "", ""},
		{"GET", "/stats", "", ""},
		{"GET", "/status", "", ""},
		{"HEAD", "/peers", "", ""},
		{"POST", "/peers", "Content-Type: application/json", `{"address":"10.0.0.1"}`},
		{"DELETE", "/routes", "", ""},
		{"GET", "/peers?x=1&y=%zz", "", ""},
		{"GET", "/", "", ""},
		{"GET", "/peers/", "", ""},
		{"GET", "//peers", "", ""},
		{"GET", "/../peers", "", ""},
		{"GET", "/./stats", "", ""},
		{"GET", "/%2e%2e/status", "", ""},
		{"GET", "/debug/pprof/", "", ""},
		{"GET", "http://other/peers", "", ""},
		{"GET", "*", "", ""},
		{"OPTIONS", "*", "", ""},
		{"CONNECT", "xrouter:80", "", ""},
		{"GET", "/\xff\xfe", "", ""},
		{"GET", "/peers\x00", "", ""},
		{"GET", "/" + strings.Repeat("a", 5000), "", ""},
		{"GET", "/peers", "Transfer-Encoding: chunked", "zz\r\n"},
		{"GET", "/peers", "Content-Length: -1", ""},
		{"GET", "/peers", "X-Junk: " + strings.Repeat("x", 20000), ""},
		{"G\x00T", "/peers", "", ""},
		{"", "", "", ""},
	} {
		f.Add(seed.method, seed.target, seed.header, []byte(seed.body))
	}
	sock, panicked := apiTestServer(f)
	n := 0
	f.Fuzz(func(t *testing.T, method, target, header string, body []byte) {
		var req bytes.Buffer
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: xrouter\r\n", method, target)
		if header != "" {
			fmt.Fprintf(&req, "%s\r\n", header)
		}
		if !strings.Contains(strings.ToLower(header), "content-length") && !strings.Contains(strings.ToLower(header), "transfer-encoding") {
			fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
		}
		fmt.Fprintf(&req, "Connection: close\r\n\r\n")
		req.Write(body)
		resp, b := rawRequest(t, sock, method, req.Bytes())
		if p := panicked(); p != "" {
			t.Fatalf("request %q: the handler panicked: %s", req.Bytes(), p)
		}
		checkAPIResponse(t, req.Bytes(), resp, b)
		if n++; n%16 == 1 {
			checkPeersAnswer(t, sock)
		}
	})
}

// TestAPIRefusals checks the answers to requests the API does not serve:
// each a JSON error with the status a client can act on, naming the
// problem, and never a redirect.
func TestAPIRefusals(t *testing.T) {
	sock, panicked := apiTestServer(t)
	for _, tc := range []struct {
		req    string
		status int
		want   string
	}{
		{"GET /nope HTTP/1.1", http.StatusNotFound, `no such resource \"/nope\" (the API serves /peers, /routes, /stats, /status, /flowspec, /flowspec/bgp)`},
		{"GET //peers HTTP/1.1", http.StatusNotFound, `no such resource \"//peers\"`},
		{"GET /../peers HTTP/1.1", http.StatusNotFound, `no such resource`},
		{"GET /%70eers HTTP/1.1", http.StatusNotFound, `no such resource \"/%70eers\"`},
		{"OPTIONS * HTTP/1.1", http.StatusNotFound, `no such resource \"*\"`},
		{"POST /peers HTTP/1.1", http.StatusMethodNotAllowed, `method \"POST\" not allowed: the API is read-only (GET)`},
		{"GET /routes?prefix=10.0.0.0/8 HTTP/1.1", http.StatusBadRequest, `/routes takes no parameters (got \"prefix=10.0.0.0/8\")`},
		{"GET /stats? HTTP/1.1", http.StatusBadRequest, `/stats takes no parameters`},
		{"GET /stats HTTP/1.1", http.StatusInternalServerError, `is the data plane running with this pin path?`},
	} {
		req := tc.req + "\r\nHost: xrouter\r\nConnection: close\r\n\r\n"
		resp, body := rawRequest(t, sock, "GET", []byte(req))
		if resp == nil {
			t.Errorf("%s: no answer", tc.req)
			continue
		}
		checkAPIResponse(t, []byte(req), resp, body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s %s %q, want %d application/json with %q", tc.req, resp.Status, resp.Header.Get("Content-Type"), body, tc.status, tc.want)
		}
	}
	// Headers beyond the limit: refused by the server, one line.
	req := "GET /peers HTTP/1.1\r\nHost: xrouter\r\nX-Junk: " + strings.Repeat("x", 64<<10) + "\r\n\r\n"
	resp, body := rawRequest(t, sock, "GET", []byte(req))
	if resp == nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %v %q, want 431", resp, body)
	}
	checkPeersAnswer(t, sock)
	if p := panicked(); p != "" {
		t.Fatalf("the handler panicked: %s", p)
	}
}

// unixGet GETs path from the API on the unix socket sock into v, as
// `xrouter peers` does.
func unixGet(sock, path string, v any) error {
	cl := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	resp, err := cl.Get("http://xrouter" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return json.Unmarshal(body, v)
}
