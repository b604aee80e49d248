package dataplane

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOutcomesMirrorBPF checks the outcomes' names and help text against
// enum xr_outcome in bpf/xrouter.h: the values are bpf2go's, but the short
// names (XR_PASS_NOT_IP is not_ip) are written in outcome.go, and a stale
// generated file (an enum changed without `make generate`) shows as a count
// that differs from the header's.
func TestOutcomesMirrorBPF(t *testing.T) {
	src, err := os.ReadFile("../../bpf/xrouter.h")
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)enum xr_outcome \{(.*?)\};`).FindSubmatch(src)
	if body == nil {
		t.Fatal("enum xr_outcome not found in bpf/xrouter.h")
	}
	// Drop comments, then take each enumerator's name; an explicit value is
	// allowed only on the first, which must be 0.
	text := regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`).ReplaceAllString(string(body[1]), "")
	var names []string
	for _, item := range strings.Split(text, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, explicit := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if explicit && (len(names) != 0 || strings.TrimSpace(value) != "0") {
			t.Fatalf("enumerator %q has an explicit value; the mirror assumes 0, 1, 2, ...", item)
		}
		names = append(names, name)
	}

	if len(names) == 0 || names[len(names)-1] != "XR_OUTCOME_MAX" {
		t.Fatalf("enum xr_outcome does not end with XR_OUTCOME_MAX: %v", names)
	}
	names = names[:len(names)-1]
	if len(names) != int(NumOutcomes) {
		t.Errorf("C has %d outcomes, Go has %d", len(names), NumOutcomes)
	}
	for i, cname := range names {
		want := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(cname, "XR_"), "PASS_"))
		if got := Outcome(i).String(); got != want {
			t.Errorf("outcome %d: Go name %q, C %s (want %q)", i, got, cname, want)
		}
		if Outcome(i).Help() == "" {
			t.Errorf("outcome %d (%s) has no help text", i, cname)
		}
	}
}

// TestOutcomesDocumented checks the table of docs/architecture.md ("Pass
// reasons") against the outcomes: one row per outcome, in the enum's
// order, named as `xrouter stats` names it. The short help text lives in
// outcome.go only; the table explains each outcome at length.
func TestOutcomesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Pass reasons\n")
	if !ok {
		t.Fatal(`docs/architecture.md has no "## Pass reasons" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	var want []string
	for _, o := range Outcomes() {
		want = append(want, o.String())
	}
	if !slices.Equal(documented, want) {
		t.Errorf("docs/architecture.md, Pass reasons: rows %v\nwant one per outcome, in order: %v", documented, want)
	}
}
