package netnstests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// xrBin is the xrouter binary built for this run.
	xrBin string
)

// TestMain builds the real binary once. Without root the tests skip
// themselves (testbed.RequireRoot), so nothing is built.
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// The failover benchmark's feeder runs as this binary (bgpfeed_test.go).
	if code, ok := feedMain(); ok {
		return code
	}
	if code, ok := lateSpeakerMain(); ok {
		return code
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns-tests:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "xrnt-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns-tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	xrBin = filepath.Join(dir, "xrouter")
	goTool := "go"
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		goTool = p
	}
	build := exec.Command(goTool, "build", "-o", xrBin, "./cmd/xrouter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "netns-tests: go build ./cmd/xrouter: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
