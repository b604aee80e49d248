// Command gobgppatch writes a copy of the GoBGP v3 module with xrouter's
// changes to it, and a go.work that builds xrouter with that copy (the
// Makefile sets GOWORK to it).
//
// Bounds checks in the BGP message decoder (pkg/packet/bgp/bgp.go): GoBGP
// v3.37.0 panics while decoding some malformed FlowSpec NLRI, a component
// whose value runs past the end of the NLRI or an IPv6 prefix component
// shorter than its header. The panic happens in the session's receive
// goroutine, so any established neighbour can end the daemon with one
// UPDATE, whether FlowSpec was negotiated or not. GoBGP v4 added the
// bounds checks; xrouter stays on v3 (see docs/architecture.md).
// internal/bgp's FuzzFlowSpecNLRIDecode fails on a build without them.
//
// A connection taken during the idle hold (pkg/server/fsm.go): GoBGP's
// idle state closes every connection a neighbour opens while its 5 s idle
// hold runs. Two speakers that both dial, each refused while the other
// idles, then fall into step: each one's dial lands in the other's idle
// hold, and the session can stay down for minutes (issue 11: a gobgpd
// neighbour that adds xrouter late). xrouter takes the connection instead,
// as its active state would (netns-tests/latepeer_test.go).
//
// (An overlay would patch the files alone, but the go command refuses
// overlays of files in the module cache.) Each change names the exact text
// it replaces, which must occur once in its file: a GoBGP upgrade that
// moves the code fails here, loudly, rather than building unpatched.
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	module  = "github.com/osrg/gobgp/v3"
	version = "v3.37.0"
	decoder = "pkg/packet/bgp/bgp.go"
	fsmFile = "pkg/server/fsm.go"
)

// change replaces old, which must occur exactly once in file, with new.
type change struct {
	file, why, old, new string
}

var changes = []change{
	{
		file: decoder,
		why:  "a component item's value may not run past the NLRI",
		old: `		v := make([]byte, 8)
		copy(v[8-l:], data[1:1+l])`,
		new: `		if len(data) < 1+l {
			return NewMessageError(BGP_ERROR_UPDATE_MESSAGE_ERROR, BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "flowspec component value runs past the NLRI")
		}
		v := make([]byte, 8)
		copy(v[8-l:], data[1:1+l])`,
	},
	{
		file: decoder,
		why:  "components are decoded within their own NLRI's length, never from the next NLRI's bytes",
		old: `	for l := length; l > 0; {
		if len(data) == 0 {`,
		new: `	data = data[:length]
	for l := length; l > 0; {
		if len(data) == 0 {`,
	},
	{
		file: decoder,
		why:  "an IPv6 prefix component has a type, a length and an offset octet",
		old: `	p.typ = BGPFlowSpecType(data[0])
	p.Offset = data[2]`,
		new: `	if len(data) < 3 {
		return NewMessageError(BGP_ERROR_UPDATE_MESSAGE_ERROR, BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "flowspec IPv6 prefix component is short")
	}
	p.typ = BGPFlowSpecType(data[0])
	p.Offset = data[2]`,
	},
	{
		file: fsmFile,
		why:  "a connection the neighbour opens during the idle hold is taken, not refused",
		old: `		case conn, ok := <-fsm.connCh:
			if !ok {
				break
			}
			conn.Close()
			fsm.lock.RLock()
			fsm.logger.Warn("Closed an accepted connection",
				log.Fields{
					"Topic": "Peer",
					"Key":   fsm.pConf.State.NeighborAddress,
					"State": fsm.state.String()})
			fsm.lock.RUnlock()

		case <-idleHoldTimer.C:`,
		new: `		case conn, ok := <-fsm.connCh:
			if !ok {
				break
			}
			fsm.lock.RLock()
			adminUp := fsm.adminState == adminStateUp
			fsm.lock.RUnlock()
			if adminUp {
				// xrouter (tools/gobgppatch): hand it to the active state,
				// which takes it at once, instead of refusing it.
				select {
				case fsm.connCh <- conn:
					idleHoldTimer.Stop()
					fsm.lock.RLock()
					fsm.logger.Info("Took a connection during the idle hold",
						log.Fields{
							"Topic": "Peer",
							"Key":   fsm.pConf.State.NeighborAddress,
							"State": fsm.state.String()})
					fsm.lock.RUnlock()
					return bgp.BGP_FSM_ACTIVE, newfsmStateReason(fsmIdleTimerExpired, nil, nil)
				default:
				}
			}
			conn.Close()
			fsm.lock.RLock()
			fsm.logger.Warn("Closed an accepted connection",
				log.Fields{
					"Topic": "Peer",
					"Key":   fsm.pConf.State.NeighborAddress,
					"State": fsm.state.String()})
			fsm.lock.RUnlock()

		case <-idleHoldTimer.C:`,
	},
}

func main() {
	dir := flag.String("dir", "build", "directory for the patched module and go.work")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gobgppatch:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	// A fresh machine has not fetched the module yet; go list -m names no
	// directory until it has.
	if out, err := exec.Command("go", "mod", "download", module).CombinedOutput(); err != nil {
		return fmt.Errorf("downloading %s: %w: %s", module, err, out)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", module).Output()
	if err != nil {
		return fmt.Errorf("finding %s: %w", module, err)
	}
	modDir, ver, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok || modDir == "" {
		return fmt.Errorf("finding %s: go list printed %q", module, out)
	}
	if ver != version {
		return fmt.Errorf("%s is %s, the patch is for %s: check whether the new version still needs each change and update tools/gobgppatch", module, ver, version)
	}
	patched := map[string]string{}
	for _, c := range changes {
		text, ok := patched[c.file]
		if !ok {
			b, err := os.ReadFile(filepath.Join(modDir, c.file))
			if err != nil {
				return err
			}
			text = string(b)
		}
		if n := strings.Count(text, c.old); n != 1 {
			return fmt.Errorf("%s in %s: the text to patch (%s) occurs %d times, want 1", c.file, modDir, c.why, n)
		}
		patched[c.file] = strings.Replace(text, c.old, c.new, 1)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	copyDir := filepath.Join(absDir, "gobgp-v3")
	if err := os.RemoveAll(copyDir); err != nil {
		return err
	}
	if err := copyTree(modDir, copyDir); err != nil {
		return fmt.Errorf("copying %s: %w", module, err)
	}
	for f, text := range patched {
		if err := os.WriteFile(filepath.Join(copyDir, f), []byte(text), 0o644); err != nil {
			return err
		}
	}
	goVer, err := exec.Command("go", "list", "-m", "-f", "{{.GoVersion}}").Output()
	if err != nil {
		return fmt.Errorf("reading the go version of go.mod: %w", err)
	}
	work := fmt.Sprintf("// Written by tools/gobgppatch; the Makefile builds with it (GOWORK).\ngo %s\n\nuse %s\n\nreplace %s %s => %s\n",
		strings.TrimSpace(string(goVer)), root, module, version, copyDir)
	return os.WriteFile(filepath.Join(absDir, "go.work"), []byte(work), 0o644)
}

// copyTree copies the regular files under src to dst, writable (the
// module cache's are read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
