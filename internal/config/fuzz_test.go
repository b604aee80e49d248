package config

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkLoadResult asserts what Load must do with any file: return a
// config, or one error on one line that starts with "config FILE: ";
// and finish in bounded time.
func checkLoadResult(t *testing.T, file string, doc []byte, c *Config, err error, took time.Duration) {
	t.Helper()
	if took > 5*time.Second {
		t.Errorf("Load took %s for a %d-byte document:\n%s", took, len(doc), clip(doc))
	}
	if err == nil {
		if c == nil {
			t.Fatalf("Load returned neither a config nor an error for:\n%s", clip(doc))
		}
		return
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("multi-line error %q for:\n%s", msg, clip(doc))
	}
	if want := "config " + file + ": "; !strings.HasPrefix(msg, want) || len(msg) == len(want) {
		t.Fatalf("error %q does not start with %q and say what is wrong; document:\n%s", msg, want, clip(doc))
	}
}

func clip(doc []byte) string {
	if len(doc) > 2000 {
		return string(doc[:2000]) + "..."
	}
	return string(doc)
}

// loadDoc writes doc to a file in dir and loads it.
func loadDoc(t *testing.T, dir string, doc []byte) {
	t.Helper()
	file := filepath.Join(dir, "xrouter.yaml")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := Load(file, nil)
	checkLoadResult(t, file, doc, c, err, time.Since(start))
}

// laughs is a YAML alias bomb ("billion laughs") of depth levels, each
// level a list of width aliases of the one before.
func laughs(levels, width int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [\"lol\"]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range width {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// FuzzLoad loads arbitrary documents as the config file. Seeds: the
// example config, malformed and mistyped values, anchors and aliases, an
// alias bomb, several documents in one file.
func FuzzLoad(f *testing.F) {
	if example, err := os.ReadFile("../../contrib/xrouter.yaml"); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"",
		"---\n",
		"null",
		"[]",
		"- a\n- b\n",
		"dataplane: 1\n",
		"dataplane:\n  interfaces: eth0\n",
		"dataplane:\n  interfaces: [eth0]\n  cache: {size: -1}\n",
		"dataplane:\n  interfaces: [{a: b}]\n",
		"dataplane:\n  resync_interval: 1y\n",
		"dataplane:\n  cache:\n    max_age: [1, 2]\n",
		"log: {level: loud}\n",
		"log: {level: [debug]}\n",
		"api: {socket: relative.sock}\n",
		"metrics: {listen: \"0.0.0.0:9100\"}\n",
		"runtime: {memory_limit: 9999999999GiB, gc_percent: -1}\n",
		"runtime: {gc_percent: 1e400}\n",
		"fib: {metric: 99999999999999999999999}\n",
		"bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - address: 10.0.0.2\n      peer_as: 65002\n      families: [ipv4-unicast]\n      password: s3cret\n      multihop_ttl: 2\n",
		"bgp:\n  as: 4294967296\n",
		"bgp:\n  as: -1\n",
		"bgp:\n  neighbors: {address: x}\n",
		"bgp:\n  neighbors:\n    - 1\n    - [a]\n",
		"bgp:\n  neighbors:\n    - address: 10.0.0.2\n      max_prefixes: -5\n",
		"bgp:\n  neighbors:\n    - address: 10.0.0.2\n      max_prefixes: {limit: x}\n",
		"bgp:\n  prefix_lists:\n    - name: a\n      entries: [{prefix: 10.0.0.0/8, ge: 99, le: -3}]\n",
		"bgp:\n  neighbors:\n    - ttl_security: {enabled: yes, ttl_min: 300}\n      multihop_ttl: 3\n",
		"base: &b {level: debug}\nlog:\n  <<: *b\n",
		"log: &x\n  level: *x\n",
		"dataplane: !!binary aGVsbG8=\n",
		"dataplane: {mode: !!float 1}\n",
		"a: 1\n---\nb: 2\n",
		"\xff\xfe\x00d\x00a",
		"dataplane:\n\tinterfaces: [a]\n",
		"{{{{",
		"? [a, b]\n: c\n",
		"1: 2\ntrue: false\n",
		"DataPlane:\n  Interfaces: [a]\n",
		"dataplane.interfaces: [a]\n",
		laughs(9, 9),
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, doc []byte) {
		loadDoc(t, dir, doc)
	})
}

// TestLoadAliasBomb loads YAML alias bombs: the YAML decoder refuses
// excessive aliasing, so memory and time stay bounded, and the error is
// one line naming the file.
func TestLoadAliasBomb(t *testing.T) {
	dir := t.TempDir()
	for _, levels := range []int{6, 9, 12} {
		doc := []byte(laughs(levels, 10))
		file := filepath.Join(dir, "xrouter.yaml")
		if err := os.WriteFile(file, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := Load(file, nil)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%d levels of 10 aliases loaded", levels)
		}
		checkLoadResult(t, file, doc, nil, err, took)
		t.Logf("%d levels: %s in %s", levels, err, took.Round(time.Millisecond))
	}
}

// TestLoadOversizedFile: a config file larger than MaxFileSize is refused
// before it is parsed (a device such as /dev/zero too).
func TestLoadOversizedFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "xrouter.yaml")
	doc := []byte("# " + strings.Repeat("x", MaxFileSize) + "\nlog: {level: info}\n")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file, nil)
	checkLoadResult(t, file, doc[:100], nil, err, 0)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a %d-byte file: %v, want a size error", len(doc), err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		start := time.Now()
		_, err := Load("/dev/zero", nil)
		if err == nil || !strings.Contains(err.Error(), "larger than") || time.Since(start) > 5*time.Second {
			t.Fatalf("Load(/dev/zero): %v after %s, want a size error", err, time.Since(start))
		}
	}
}

// randomValue is a value of a random type: what a user (or a tool) might
// put under any key by mistake.
func randomValue(r *rand.Rand, depth int) any {
	switch n := r.IntN(22); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n == 2:
		return r.Int64() - r.Int64()
	case n == 3:
		return []int64{-1, 0, 1, 255, 256, 65535, 65536, 1 << 32, -1 << 63}[r.IntN(9)]
	case n == 4:
		return r.Float64() * 1e300
	case n == 5:
		return ""
	case n == 6:
		return strings.Repeat("x", r.IntN(5000))
	case n == 7:
		return []string{"10.0.0.1", "::1", "10.0.0.0/8", "10.0.0.1/8", "999.1.1.1", "fe80::1%eth0", "0.0.0.0:9100", "127.0.0.1:0", "[::1]:80"}[r.IntN(9)]
	case n == 8:
		return []string{"30s", "-5s", "0", "1y", "9999999999h", "1e9s", "5m3", "2GiB", "0B", "-1MiB", "1700MiB"}[r.IntN(11)]
	case n == 9:
		return []string{"auto", "native", "generic", "offload", "debug", "json", "ipv4-unicast", "teardown", "warn", "restart", "respect", "ignore"}[r.IntN(12)]
	case n == 10:
		return []string{"yes", "no", "on", "off", "true", "TRUE", "1", "0", "~", "null"}[r.IntN(10)]
	case n == 11:
		return string([]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	case n == 12:
		return "unix:///" + strings.Repeat("a/", r.IntN(50))
	case n == 13:
		return "/" + strings.Repeat("b", r.IntN(300))
	case n == 14:
		return "a\nb\tc\"d'e\x00"
	case depth > 3:
		return r.IntN(100)
	case n < 18:
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = randomValue(r, depth+1)
		}
		return l
	default:
		m := map[string]any{}
		for range r.IntN(4) {
			m[randomKeyName(r)] = randomValue(r, depth+1)
		}
		return m
	}
}

func randomKeyName(r *rand.Rand) string {
	return []string{"enabled", "limit", "address", "x", "", "1", "peer_as", "ü", "a.b", "neighbors", "<<"}[r.IntN(11)]
}

// set puts v at the dotted key in doc, creating maps (and for "[]", a
// list of maps) on the way; a clash with a value already there replaces
// it.
func set(doc map[string]any, key string, v any, r *rand.Rand) {
	parts := strings.Split(key, ".")
	m := doc
	for i, p := range parts {
		list := strings.HasSuffix(p, "[]")
		p = strings.TrimSuffix(p, "[]")
		if i == len(parts)-1 {
			m[p] = v
			return
		}
		if list {
			l, ok := m[p].([]any)
			if !ok || len(l) == 0 {
				l = []any{map[string]any{}}
				if r.IntN(3) == 0 {
					l = append(l, map[string]any{})
				}
				m[p] = l
			}
			e, ok := l[r.IntN(len(l))].(map[string]any)
			if !ok {
				return
			}
			m = e
			continue
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
}

// randomDocument builds a config from the real keys with random values,
// some unknown keys, and sometimes mangled bytes.
func randomDocument(r *rand.Rand, keys []string) []byte {
	doc := map[string]any{}
	for range 1 + r.IntN(12) {
		k := keys[r.IntN(len(keys))]
		if r.IntN(10) == 0 {
			k += "_typo"
		}
		set(doc, k, randomValue(r, 0), r)
	}
	if r.IntN(4) == 0 {
		set(doc, "dataplane.interfaces", []any{"eth0"}, r)
	}
	out, err := json.MarshalIndent(doc, "", "  ") // JSON is YAML
	if err != nil {
		return []byte(fmt.Sprintf("# %v\n", err))
	}
	switch r.IntN(6) {
	case 0: // truncate
		out = out[:r.IntN(len(out)+1)]
	case 1: // flip some bytes
		for range 1 + r.IntN(4) {
			out[r.IntN(len(out))] = byte(r.IntN(256))
		}
	case 2: // append YAML of its own: anchors, tags, a second document
		out = append(out, []string{"\n---\nlog: {}\n", "\nx: &a [*a]\n", "\n!!map {a: 1}\n", "\n  - dangling\n"}[r.IntN(4)]...)
	}
	return out
}

// TestLoadRandomDocuments is a property test: N random documents built
// from the real key set (AllKeys) with values of random types, unknown
// keys and mangled bytes load, or fail with one line naming the file, in
// bounded time. XR_CONFIG_DOCS sets N (default 400), XR_CONFIG_SEED the
// seed (default: a new one, logged).
func TestLoadRandomDocuments(t *testing.T) {
	n := 400
	if s := os.Getenv("XR_CONFIG_DOCS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("XR_CONFIG_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("XR_CONFIG_SEED=%d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	keys := AllKeys()
	dir := t.TempDir()
	ok := 0
	for range n {
		doc := randomDocument(r, keys)
		file := filepath.Join(dir, "xrouter.yaml")
		if err := os.WriteFile(file, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, err := Load(file, nil)
		checkLoadResult(t, file, doc, c, err, time.Since(start))
		if err == nil {
			ok++
		}
	}
	t.Logf("%d random documents: %d loaded, %d refused with one line", n, ok, n-ok)
}
