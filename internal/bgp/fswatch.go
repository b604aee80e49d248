package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/xrouter/xrouter/internal/flowspec"
)

// FlowSpec paths are followed per neighbour, after GoBGP's import policy
// (its post-policy adj-RIB-in watcher): every rule a neighbour sends is
// judged on its own, so that two neighbours sending the same rule each get
// theirs, and a rule rejected for one neighbour cannot hide another's as a
// best path would. GoBGP's import policy lets through the FlowSpec paths
// of neighbours that may send any (iBGP, or eBGP with flowspec_import);
// everything else (decoding, flowspec_import, validation) happens here, in
// one worker goroutine: the watcher callback only queues paths, since it
// runs in GoBGP's goroutine and validation asks GoBGP's RIB.
//
// Each neighbour's accepted rules are handed over whole (the callback set
// with OnFlowSpec) whenever they change: a rule withdrawn, its session
// gone, or its neighbour removed is gone from the next set at once. Sets
// are handed over at most every fsPublishGap per burst of updates, so that
// a neighbour sending many rules does not make the callee rebuild its
// table for each one.
//
// The RFC 8955 validation depends on the unicast best paths: the unicast
// watcher reports each prefix whose best path changed (unicastChanged),
// and the worker validates again the rules whose destination overlaps it.

// FlowSpecRuleView is one rule a neighbour sent, as xrouter judged it.
type FlowSpecRuleView struct {
	Family string `json:"family"`
	// NLRI is the rule's match as text (components in wire order).
	NLRI     string `json:"nlri"`
	Accepted bool   `json:"accepted"`
	// Reason says why a rule is rejected: an unsupported component or
	// action, the import policy, or the validation.
	Reason string         `json:"reason,omitempty"`
	Rule   *flowspec.Rule `json:"rule,omitempty"`
}

// FlowSpecPeerView is one neighbour's FlowSpec rules.
type FlowSpecPeerView struct {
	Peer   netip.Addr         `json:"peer"`
	Source string             `json:"source"`
	Rules  []FlowSpecRuleView `json:"rules"`
}

// fsPublishGap is the shortest time between two hand-overs of rule sets.
const fsPublishGap = 50 * time.Millisecond

// fsMaxChanged bounds the unicast prefixes remembered between two passes
// of the worker; more, and every rule is validated again.
const fsMaxChanged = 4096

// fsMaxLogs bounds the rejections logged per pass; the rest are counted.
const fsMaxLogs = 20

type fsEntry struct {
	path   fsPath
	reason string // "" when accepted
}

// fsState is the FlowSpec side of the speaker.
type fsState struct {
	log *slog.Logger

	// mu guards what the watchers hand the worker, and the callback.
	mu         sync.Mutex
	watching   bool
	validating bool // some neighbour validates: unicast changes matter
	pending    []fsPath
	changed    map[netip.Prefix]struct{}
	changedAll bool
	reeval     bool
	onRules    func(source string, rules []flowspec.Rule)
	kick       chan struct{}

	// rib answers the validation's lookups (the GoBGP server).
	rib unicastRIB
	// entries is owned by the worker.
	entries map[netip.Addr]map[string]*fsEntry

	viewMu sync.Mutex
	view   map[netip.Addr][]FlowSpecRuleView
}

func newFSState(log *slog.Logger) *fsState {
	return &fsState{
		log: log, changed: map[netip.Prefix]struct{}{}, kick: make(chan struct{}, 1),
		entries: map[netip.Addr]map[string]*fsEntry{}, view: map[netip.Addr][]FlowSpecRuleView{},
	}
}

// OnFlowSpec sets the function that receives each neighbour's accepted
// FlowSpec rules: source is "peer ADDRESS" (also each rule's Source), and
// rules is the neighbour's whole current set, empty when it has none left
// (a withdrawal, the session gone, the neighbour removed). It is called
// from one goroutine of the speaker, never concurrently; it may keep the
// slice. Call OnFlowSpec before Start.
func (s *Speaker) OnFlowSpec(fn func(source string, rules []flowspec.Rule)) {
	s.fs.mu.Lock()
	s.fs.onRules = fn
	s.fs.mu.Unlock()
}

// FlowSpec returns every neighbour's FlowSpec rules as judged, accepted
// and rejected, by neighbour address.
func (s *Speaker) FlowSpec() []FlowSpecPeerView {
	s.fs.viewMu.Lock()
	defer s.fs.viewMu.Unlock()
	out := make([]FlowSpecPeerView, 0, len(s.fs.view))
	for a, rs := range s.fs.view {
		out = append(out, FlowSpecPeerView{Peer: a, Source: flowSpecSource(a), Rules: slices.Clone(rs)})
	}
	slices.SortFunc(out, func(a, b FlowSpecPeerView) int { return a.Peer.Compare(b.Peer) })
	return out
}

// startFlowSpec starts following FlowSpec paths when a neighbour has a
// FlowSpec family (the post-policy watcher costs every received path a
// copy in GoBGP, so it is off otherwise), and has the worker judge every
// rule again for a changed config. Call with opMu held.
func (s *Speaker) startFlowSpec(ctx context.Context, cfg Config) error {
	need, validating := false, false
	for _, n := range cfg.Neighbors {
		if n.hasFlowSpec() {
			need = true
			validating = validating || n.flowSpecValidation()
		}
	}
	f := s.fs
	f.mu.Lock()
	f.validating = validating
	f.reeval = true
	if f.rib == nil {
		f.rib = s.srv
	}
	start := need && !f.watching
	f.watching = f.watching || need
	f.mu.Unlock()
	f.signal()
	if !start {
		return nil
	}
	wctx := s.watchCtx
	if err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_POST_POLICY, Init: true},
		}},
	}, s.onFlowSpecEvent); err != nil {
		f.mu.Lock()
		f.watching = false
		f.mu.Unlock()
		return fmt.Errorf("watching FlowSpec paths: %w", err)
	}
	go s.fsWorker(wctx)
	return nil
}

func (f *fsState) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// onFlowSpecEvent runs in GoBGP's watcher goroutine: it decodes the
// FlowSpec paths (few, unlike unicast ones) and queues them.
func (s *Speaker) onFlowSpecEvent(r *api.WatchEventResponse) {
	t := r.GetTable()
	if t == nil {
		return
	}
	var got []fsPath
	for _, p := range t.Paths {
		if p.Nlri == nil || !isFlowSpecPath(p) {
			continue
		}
		d, err := decodeFlowSpec(p)
		if err != nil {
			s.log.Warn("bgp FlowSpec path ignored", "neighbor", p.NeighborIp, "err", err)
			continue
		}
		got = append(got, d)
	}
	if len(got) == 0 {
		return
	}
	s.fs.mu.Lock()
	s.fs.pending = append(s.fs.pending, got...)
	s.fs.mu.Unlock()
	s.fs.signal()
}

// unicastChanged records that the best path of a unicast prefix changed,
// for the validation. It runs in the unicast watcher for every prefix, so
// it does nothing unless a neighbour validates FlowSpec rules.
func (f *fsState) unicastChanged(p netip.Prefix) {
	if f == nil {
		return
	}
	f.mu.Lock()
	if !f.validating || f.changedAll {
		f.mu.Unlock()
		return
	}
	if len(f.changed) >= fsMaxChanged {
		f.changedAll = true
		clear(f.changed)
	} else {
		f.changed[p] = struct{}{}
	}
	f.mu.Unlock()
	f.signal()
}

// fsWorker judges queued rules, validates again on unicast changes, and
// hands the changed neighbours' sets over.
func (s *Speaker) fsWorker(ctx context.Context) {
	f := s.fs
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		f.mu.Lock()
		pending, changed, all, reeval := f.pending, f.changed, f.changedAll, f.reeval
		f.pending, f.changed, f.changedAll, f.reeval = nil, map[netip.Prefix]struct{}{}, false, false
		onRules := f.onRules
		f.mu.Unlock()

		if s.fsPass(ctx, pending, changed, all, reeval, onRules) {
			// A burst of updates: let the next ones gather.
			select {
			case <-ctx.Done():
				return
			case <-time.After(fsPublishGap):
			}
		}
	}
}

// fsPass is one pass of the worker; it reports whether it handed sets
// over.
func (s *Speaker) fsPass(ctx context.Context, pending []fsPath, changed map[netip.Prefix]struct{}, all, reeval bool, onRules func(string, []flowspec.Rule)) bool {
	f := s.fs
	cfg := s.config()
	neighbors := map[netip.Addr]Neighbor{}
	for _, n := range cfg.Neighbors {
		if a, err := netip.ParseAddr(n.Address); err == nil && n.hasFlowSpec() {
			neighbors[a] = n
		}
	}
	dirty := map[netip.Addr]bool{}
	logged, unlogged := 0, 0
	judge := func(e *fsEntry, n Neighbor, why string) {
		old := e.reason
		e.reason = s.judgeFlowSpec(ctx, cfg, n, e.path)
		if e.reason == "" {
			if old != "" || why == "new" {
				s.log.Debug("FlowSpec rule accepted", "neighbor", e.path.peer, "family", e.path.family, "rule", e.path.nlri, "why", why)
			}
			return
		}
		if e.reason == old {
			return
		}
		if logged >= fsMaxLogs {
			unlogged++
			return
		}
		logged++
		s.log.Warn("FlowSpec rule rejected", "neighbor", e.path.peer, "family", e.path.family, "rule", e.path.nlri, "reason", e.reason)
	}

	for _, p := range pending {
		n, ok := neighbors[p.peer]
		if !ok {
			continue // removed meanwhile; reeval drops its entries
		}
		m := f.entries[p.peer]
		if p.withdraw {
			if e := m[p.key]; e != nil {
				delete(m, p.key)
				dirty[p.peer] = true
				s.log.Debug("FlowSpec rule withdrawn", "neighbor", p.peer, "family", p.family, "rule", p.nlri, "was_accepted", e.reason == "")
			}
			continue
		}
		if m == nil {
			m = map[string]*fsEntry{}
			f.entries[p.peer] = m
		}
		e := &fsEntry{path: p}
		m[p.key] = e
		dirty[p.peer] = true
		judge(e, n, "new")
	}

	if reeval || all || len(changed) > 0 {
		for a, m := range f.entries {
			n, ok := neighbors[a]
			if !ok {
				delete(f.entries, a)
				dirty[a] = true
				continue
			}
			for _, e := range m {
				why := "config reloaded"
				if !reeval {
					if !n.flowSpecValidation() || e.path.err != nil || !overlapsAny(e.path.rule.Match.Dst, changed, all) {
						continue
					}
					why = "unicast route changed"
				}
				old := e.reason
				judge(e, n, why)
				if e.reason != old {
					dirty[a] = true
				}
			}
		}
	}
	if unlogged > 0 {
		s.log.Warn("FlowSpec rules rejected, not logged one by one", "count", unlogged)
	}
	if len(dirty) == 0 {
		return false
	}

	sets := map[netip.Addr][]flowspec.Rule{}
	f.viewMu.Lock()
	for a := range dirty {
		m := f.entries[a]
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		rules := []flowspec.Rule{}
		view := make([]FlowSpecRuleView, 0, len(keys))
		for _, k := range keys {
			e := m[k]
			v := FlowSpecRuleView{Family: e.path.family, NLRI: e.path.nlri, Accepted: e.reason == "", Reason: e.reason}
			if e.path.err == nil {
				r := e.path.rule
				v.Rule = &r
			}
			if v.Accepted {
				rules = append(rules, e.path.rule)
			}
			view = append(view, v)
		}
		if len(m) == 0 {
			delete(f.entries, a)
			delete(f.view, a)
		} else {
			f.view[a] = view
		}
		sets[a] = rules
	}
	f.viewMu.Unlock()
	if onRules != nil {
		for a, rules := range sets {
			onRules(flowSpecSource(a), rules)
		}
	}
	return true
}

// judgeFlowSpec returns why a rule is rejected, "" when accepted.
func (s *Speaker) judgeFlowSpec(ctx context.Context, cfg Config, n Neighbor, p fsPath) string {
	if p.err != nil {
		return p.err.Error()
	}
	if err := importCheck(cfg, n, p.rule); err != nil {
		return "import policy: " + err.Error()
	}
	if !n.flowSpecValidation() {
		return ""
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := validateFlowSpec(vctx, s.fs.rib, p.peer, p.rule.Match.Dst); err != nil {
		return err.Error()
	}
	return ""
}

// overlapsAny reports whether a changed unicast prefix can change the
// validation of a rule with destination dst: one covering it (a new
// best-match route) or one inside it (a more specific route).
func overlapsAny(dst netip.Prefix, changed map[netip.Prefix]struct{}, all bool) bool {
	if all || !dst.IsValid() {
		return all
	}
	for p := range changed {
		if p.Overlaps(dst) {
			return true
		}
	}
	return false
}
