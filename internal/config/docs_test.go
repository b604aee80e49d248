package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docPath is the configuration reference, relative to this package.
const docPath = "../../docs/configuration.md"

// docKey is one key documented in a table of docs/configuration.md.
type docKey struct {
	key     string // full name, e.g. bgp.neighbors[].max_prefixes.limit
	line    int
	def     string // the default column ("" when the table has none)
	hasDefs bool   // the table has a default column
}

var (
	// The key cell: a row starting with one backquoted name.
	keyCell = regexp.MustCompile("^`([a-z0-9_.\\[\\]]+)`$")
	// A table of a list's element keys is introduced by a line such as
	// "Each neighbour (`bgp.neighbors[]`):"; its rows are then bare names
	// (`max_prefixes.limit`) under that prefix.
	listIntro = regexp.MustCompile("^Each .*`([a-z0-9_.\\[\\]]+\\[\\])`")
)

// documentedKeys reads the key tables of the configuration reference: every
// table row whose first cell is one backquoted key.
func documentedKeys(t *testing.T) []docKey {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out       []docKey
		prefix    string // of the current table's keys
		lastText  string // the last non-blank line outside a table
		inTable   bool
		defColumn = -1
	)
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable = false
			if line != "" {
				lastText = line
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if !inTable { // the header row
			inTable, prefix, defColumn = true, "", slices.Index(cells, "default")
			if m := listIntro.FindStringSubmatch(lastText); m != nil {
				prefix = m[1] + "."
			}
			continue
		}
		m := keyCell.FindStringSubmatch(cells[0])
		if m == nil {
			continue
		}
		k := docKey{key: prefix + m[1], line: i + 1, hasDefs: defColumn >= 0}
		if defColumn >= 0 && defColumn < len(cells) {
			k.def = cells[defColumn]
		}
		out = append(out, k)
	}
	return out
}

// TestEveryKeyDocumented fails when a key the decoder accepts has no row in
// docs/configuration.md, or a documented key no longer exists.
func TestEveryKeyDocumented(t *testing.T) {
	doc := documentedKeys(t)
	if len(doc) == 0 {
		t.Fatalf("%s: no key tables found", docPath)
	}
	documented := map[string]docKey{}
	for _, d := range doc {
		if prev, ok := documented[d.key]; ok {
			t.Errorf("%s:%d: key %s documented twice (also line %d)", docPath, d.line, d.key, prev.line)
		}
		documented[d.key] = d
		if !d.hasDefs {
			t.Errorf("%s:%d: key %s is in a table without a default column", docPath, d.line, d.key)
		} else if d.def == "" {
			t.Errorf("%s:%d: key %s has no default (write — when there is none)", docPath, d.line, d.key)
		}
	}
	code := AllKeys()
	for _, k := range code {
		if _, ok := documented[k]; !ok {
			t.Errorf("key %s exists in the code but is not documented in %s", k, docPath)
		}
	}
	for _, d := range doc {
		if !slices.Contains(code, d.key) {
			t.Errorf("%s:%d: documented key %s does not exist in the code (xrouter config keys)", docPath, d.line, d.key)
		}
	}
}

// TestAllKeysMatchDefaults: every key outside bgp must have a default, or
// Load rejects it as unknown; and every default must be a real key.
func TestAllKeysMatchDefaults(t *testing.T) {
	all := AllKeys()
	for _, k := range Keys() {
		if !slices.Contains(all, k) {
			t.Errorf("default set for %s, which Config does not have", k)
		}
	}
	for _, k := range all {
		if !decoderChecked(k) && !slices.Contains(Keys(), k) {
			t.Errorf("key %s has no default in setDefaults: a file setting it is rejected as unknown", k)
		}
	}
	for _, k := range []string{"dataplane.mode", "bgp.neighbors", "bgp.neighbors[].max_prefixes.limit", "bgp.prefix_lists[].entries[].le", "bgp.graceful_restart.enabled"} {
		if !slices.Contains(all, k) {
			t.Errorf("AllKeys() lacks %s", k)
		}
	}
	for _, k := range []string{"bgp", "bgp.graceful_restart", "bgp.neighbors[].max_prefixes", "file"} {
		if slices.Contains(all, k) {
			t.Errorf("AllKeys() lists %s, which is not a key", k)
		}
	}
}

// TestDocumentedErrorExamples: the error messages the reference quotes are
// the ones Load gives.
func TestDocumentedErrorExamples(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	nb := "bgp:\n  as: 65001\n  router_id: 10.0.0.1\n  neighbors:\n    - {address: 10.0.0.2, peer_as: 65002"
	for _, tc := range []struct{ body, quoted string }{
		{"dataplane:\n  modes: auto\n", `unknown key "dataplane.modes"`},
		{"dataplane:\n  mode: fast\n", `key "dataplane.mode": unknown mode "fast" (want one of auto, native, generic)`},
		{nb + "}\n", `key "bgp.neighbors[0].families": required (ipv4-unicast, ipv6-unicast, ipv4-flowspec, ipv6-flowspec)`},
		{nb + ", families: [ipv4-unicast], colour: red}\n", `key "bgp.neighbors[0]": has invalid keys: colour`},
		{nb + ", families: [ipv4-unicast], import: nope}\n", `key "bgp.neighbors[0].import": no prefix list named "nope"`},
	} {
		if !strings.Contains(string(b), tc.quoted) {
			t.Errorf("%s does not quote %s", docPath, tc.quoted)
		}
		p := writeFile(t, tc.body)
		_, err := Load(p, nil)
		if err == nil || !strings.Contains(err.Error(), "config "+p+": "+tc.quoted) {
			t.Errorf("Load:\n%s\nerr = %v\nwant one containing: config %s: %s", tc.body, err, p, tc.quoted)
		}
	}
}

// TestBGPErrorsOnOneLine: several problems of the bgp section are all
// reported, each naming its key, on one line.
func TestBGPErrorsOnOneLine(t *testing.T) {
	p := writeFile(t, "bgp:\n  as: 65001\n  router_id: x\n  neighbors:\n    - {address: 10.0.0.2, peer_as: 0, families: [ipv4-unicast]}\n")
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	want := `config ` + p + `: key "bgp.router_id": "x" is not an IPv4 address; key "bgp.neighbors[0].peer_as": required`
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
}

// TestDocExamplesLoad: every YAML example in the README and the operations
// guide is a config that loads.
func TestDocExamplesLoad(t *testing.T) {
	n := 0
	for _, doc := range []string{"../../README.md", "../../docs/operations.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
			n++
			if _, err := Load(writeFile(t, block[1]), nil); err != nil {
				t.Errorf("%s: example does not load: %v\n%s", doc, err, block[1])
			}
		}
	}
	if n == 0 {
		t.Error("no YAML examples found")
	}
}
