package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run this binary as xrouter itself: with
// XR_TEST_AS_XROUTER=1 it is main() with the arguments after "--".
func TestMain(m *testing.M) {
	if os.Getenv("XR_TEST_AS_XROUTER") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"xrouter"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// xrouterProcess runs `xrouter ARGS` as a process (this test binary as
// xrouter): its exit status, stdout and stderr.
func xrouterProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "XR_TEST_AS_XROUTER=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("xrouter %v still running after 20 s", args)
		return 0, "", ""
	}
}

// checkConfigCheck asserts the contract of `xrouter config check -c
// FILE` on any file: exit 0 ("config FILE: ok" on stdout, warnings on
// stderr) or exit 1 with exactly one line on stderr, "xrouter: config
// FILE: ..."; never a panic (exit 2) or a multi-line error.
// With process false it runs in this process (what main runs, without
// the exit).
func checkConfigCheck(t *testing.T, file string, doc []byte, process bool) {
	t.Helper()
	var code int
	var stdout, stderr string
	if process {
		code, stdout, stderr = xrouterProcess(t, "config", "check", "-c", file)
	} else {
		var out, errb bytes.Buffer
		start := time.Now()
		code = xrouter([]string{"config", "check", "-c", file}, &out, &errb)
		stdout, stderr = out.String(), errb.String()
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("config check took %s for:\n%s", took, clipDoc(doc))
		}
	}
	switch code {
	case 0:
		if stdout != "config "+file+": ok\n" {
			t.Fatalf("exit 0 with stdout %q for:\n%s", stdout, clipDoc(doc))
		}
		for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
			if l != "" && !strings.HasPrefix(l, "warning: config "+file+": ") {
				t.Fatalf("exit 0 with stderr line %q for:\n%s", l, clipDoc(doc))
			}
		}
	case 1:
		want := "xrouter: config " + file + ": "
		if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, want) || len(stderr) <= len(want)+1 {
			t.Fatalf("exit 1 with stderr %q, want one line %q...; document:\n%s", stderr, want, clipDoc(doc))
		}
	default:
		t.Fatalf("exit status %d (stderr %q) for:\n%s", code, clipDoc([]byte(stderr)), clipDoc(doc))
	}
}

func clipDoc(doc []byte) string {
	if len(doc) > 1500 {
		return string(doc[:1500]) + "..."
	}
	return string(doc)
}

// mutate damages a YAML document the way hands and tools do: a line
// dropped or repeated, a value replaced with one of another type, the
// indentation shifted, bytes flipped, the end cut off.
func mutate(r *rand.Rand, doc []byte) []byte {
	lines := strings.Split(string(doc), "\n")
	junk := []string{"-1", "4294967296", "1e999", "[]", "{}", "~", "yes", `"10.0.0.1/33"`, "'::'", "&a x", "*a", "!!binary AA==",
		`"` + strings.Repeat("z", 3000) + `"`, "[[[", "0x1F", "30", "1y", "\"\\u0000\"", "{a: {b: {c: [1, {d: 2}]}}}", "|\n  multi\n  line"}
	for range 1 + r.IntN(3) {
		i := r.IntN(len(lines))
		switch r.IntN(7) {
		case 0:
			lines = append(lines[:i], lines[i+1:]...)
		case 1:
			lines = append(lines[:i+1], lines[i:]...)
		case 2, 3:
			if k, _, ok := strings.Cut(lines[i], ":"); ok {
				lines[i] = k + ": " + junk[r.IntN(len(junk))]
			}
		case 4:
			lines[i] = strings.Repeat(" ", r.IntN(5)) + strings.TrimLeft(lines[i], " ")
		case 5:
			if b := []byte(lines[i]); len(b) > 0 {
				b[r.IntN(len(b))] = byte(r.IntN(256))
				lines[i] = string(b)
			}
		case 6:
			lines = append(lines[:i], "unknown_"+strconv.Itoa(r.IntN(9))+": 1")
		}
		if len(lines) == 0 {
			lines = []string{""}
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// TestConfigCheckBadInput runs `xrouter config check` as a process on
// malformed files (wrong types, unknown keys, an alias bomb, binary junk,
// a file too large) and on random mutations of the example config: exit
// status 0 or 1, never a crash; the error is one line that names the
// file. XR_CONFIG_MUTATIONS sets how many mutations (default 200),
// XR_CONFIG_SEED the seed (logged). Some of the fixed files run as
// processes (the exit status is the process's), the rest in this process.
func TestConfigCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../contrib/xrouter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		"",
		"[]",
		"dataplane: 1\n",
		"dataplane:\n  interfaces: [{a: b}]\n",
		"dataplane:\n  interfaces: [lo]\n  cache: {size: -1}\n",
		"dataplane:\n  interfaces: [no-such-if0]\n",
		"log: {level: [debug]}\n",
		"fib: {metric: 99999999999999999999999}\n",
		"runtime: {gc_percent: 1e400}\n",
		"bgp:\n  neighbors:\n    - 1\n    - [a]\n",
		"bgp:\n  as: 65001\n  router_id: x\n  neighbors:\n    - {address: y, ttl_security: {enabled: yes, ttl_min: 300}, multihop_ttl: 3}\n",
		"log: &x\n  level: *x\n",
		"a0: &a0 [lol]\na1: &a1 [*a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0]\na2: &a2 [*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1]\na3: &a3 [*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2]\na4: &a4 [*a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3]\na5: &a5 [*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4]\na6: &a6 [*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5]\na7: &a7 [*a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6]\n",
		"\xff\xfe\x00d\x00a\x00",
		"dataplane:\n\tinterfaces: [a]\n",
		"a: 1\n---\nb: 2\n",
		"# " + strings.Repeat("x", 5<<20) + "\n",
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("XR_CONFIG_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	n := 200
	if s := os.Getenv("XR_CONFIG_MUTATIONS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Logf("XR_CONFIG_SEED=%d", seed)
	fixed := len(docs)
	r := rand.New(rand.NewPCG(seed, 1))
	for range n {
		docs = append(docs, string(mutate(r, example)))
	}
	for i, doc := range docs {
		file := filepath.Join(dir, "xrouter-"+strconv.Itoa(i)+".yaml")
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		// A few as processes, for the exit status (a panic is 2).
		checkConfigCheck(t, file, []byte(doc), i < fixed && i%4 == 0)
	}
	// No such file, a directory, an endless device.
	for _, file := range []string{filepath.Join(dir, "missing.yaml"), dir, "/dev/zero"} {
		checkConfigCheck(t, file, nil, file == dir)
	}
}
