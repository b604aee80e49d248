package flowspec

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// ApplyFunc installs a complete, ordered rule set (internal/dataplane's
// SetFlowspec). It must apply all of it or, with an error, none of it.
type ApplyFunc func(rules []Rule) error

// Table merges the rules of several sources ("config", "peer 192.0.2.1",
// ...), orders them and hands the whole set to an ApplyFunc on every
// change. Sources are replaced as a whole: the BGP side calls Set with a
// peer's current rules after every change, and Set(source, nil) when the
// peer goes away.
type Table struct {
	mu      sync.Mutex
	apply   ApplyFunc
	sources map[string][]Rule
	current []Rule
}

// NewTable returns an empty table that installs through apply.
func NewTable(apply ApplyFunc) *Table {
	return &Table{apply: apply, sources: map[string][]Rule{}}
}

// Set replaces the rules of source. Rules the classifier cannot apply are
// left out, each named in the returned error (errors.Join); the others are
// installed. If installing fails, the previous rules stay in place (in the
// table and the data plane) and the error says so.
func (t *Table) Set(source string, rules []Rule) error {
	var rejected []error
	var ok []Rule
	for _, r := range rules {
		r.Source = source
		if err := Validate(r); err != nil {
			rejected = append(rejected, fmt.Errorf("flowspec rule %s from %s rejected: %w", r.Match.String(), source, err))
			continue
		}
		ok = append(ok, r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := maps.Clone(t.sources)
	if len(ok) == 0 {
		delete(next, source)
	} else {
		next[source] = ok
	}
	merged := merge(next)
	if err := t.apply(merged); err != nil {
		return errors.Join(append(rejected, fmt.Errorf("installing flowspec rules of %s: %w", source, err))...)
	}
	t.sources = next
	t.current = merged
	return errors.Join(rejected...)
}

// merge orders every source's rules; of rules with the same match the
// first (by source name) is kept.
func merge(sources map[string][]Rule) []Rule {
	var all []Rule
	for _, s := range slices.Sorted(maps.Keys(sources)) {
		all = append(all, sources[s]...)
	}
	Sort(all)
	seen := map[string]bool{}
	out := all[:0]
	for _, r := range all {
		k := r.Match.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

// Rules is the installed rule set, in classifier order.
func (t *Table) Rules() []Rule {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.current)
}
