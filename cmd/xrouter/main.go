// Command xrouter is the xrouter daemon (`xrouter run`) and its operator
// commands (stats, status, config check, detach, version).

// Go 1.24 and later make listening TCP sockets Multipath TCP where the
// kernel offers it. GoBGP's BGP listener is one, and an MPTCP socket
// refuses TCP_MD5SIG (ENOPROTOOPT) and IP_TTL (EOPNOTSUPP): a neighbour
// with a password could not connect to us (its signed SYNs were dropped
// as unexpected), and GTSM's TTL 255 was not set on the listener. BGP is
// plain TCP.
//
//go:debug multipathtcp=0
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/xrouter/xrouter/internal/config"
	"github.com/xrouter/xrouter/internal/kernel"
)

// Set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := enterNetns(); err != nil {
		fmt.Fprintln(os.Stderr, "xrouter:", err)
		os.Exit(1)
	}
	os.Exit(xrouter(os.Args[1:], os.Stdout, os.Stderr))
}

// xrouter runs the command line args and returns the exit status: 0, or
// 1 with the error on one line of stderr.
func xrouter(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "xrouter",
		Short:         "XDP layer-3 software router",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("netns", "", "run in the named network namespace (/run/netns/NAME), keeping the host's mounts")
	root.AddCommand(runCmd(), statsCmd(), statusCmd(), peersCmd(), routesCmd(), flowspecCmd(), configCmd(), detachCmd(), versionCmd())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "xrouter:", config.OneLineError(err))
		return 1
	}
	return 0
}

// writeJSON is every command's --json output: indented, one document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// enterNetns handles --netns before anything else runs: Go cannot move a
// whole process between network namespaces, so the process moves one thread
// and re-executes itself from it; every thread of the new image starts in
// the namespace. Unlike `ip netns exec`, the mount namespace (and so
// /sys/fs/bpf with the pins) stays the host's.
func enterNetns() error {
	name, rest, found := "", []string{os.Args[0]}, false
	for i := 1; i < len(os.Args); i++ {
		a := os.Args[i]
		switch {
		case a == "--netns" && i+1 < len(os.Args):
			name, found = os.Args[i+1], true
			i++
		case len(a) > 8 && a[:8] == "--netns=":
			name, found = a[8:], true
		default:
			rest = append(rest, a)
		}
	}
	if !found {
		return nil
	}
	if name == "" {
		return errors.New("--netns: empty namespace name")
	}
	if err := kernel.EnterNamespace("/run/netns/" + name); err != nil {
		return fmt.Errorf("--netns %s: %w", name, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--netns: finding own executable: %w", err)
	}
	return unix.Exec(exe, rest, os.Environ())
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "xrouter %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
