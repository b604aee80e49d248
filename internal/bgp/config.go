package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Families a neighbour may enable.
const (
	FamilyIPv4Unicast  = "ipv4-unicast"
	FamilyIPv6Unicast  = "ipv6-unicast"
	FamilyIPv4FlowSpec = "ipv4-flowspec"
	FamilyIPv6FlowSpec = "ipv6-flowspec"
)

// FlowSpec actions an import policy may allow (FlowSpecImport.Actions).
const (
	FlowSpecActionDrop      = "drop"       // traffic-rate 0
	FlowSpecActionRateLimit = "rate-limit" // traffic-rate above 0
	FlowSpecActionMark      = "mark"       // traffic-marking
)

// flowSpecActions are all of them, the default of FlowSpecImport.Actions.
var flowSpecActions = []string{FlowSpecActionDrop, FlowSpecActionRateLimit, FlowSpecActionMark}

// Defaults applied by Config.withDefaults to zero values.
const (
	DefaultListenPort = 179
	DefaultHoldTime   = 90 * time.Second
	// DefaultGRPCAddress is a Unix socket that only root can use: GoBGP's
	// API adds paths and neighbours without any authentication of its
	// own, so file permissions are its access control.
	DefaultGRPCAddress = "unix://" + DefaultGRPCSocket
	// DefaultGRPCSocket is the path of DefaultGRPCAddress.
	DefaultGRPCSocket = "/run/xrouter/gobgp.sock"
	// DefaultRestartTime is the graceful-restart time we advertise: how
	// long peers keep our routes while we restart.
	DefaultRestartTime = 120 * time.Second
	// DefaultDeferralTime bounds how long a restarted speaker waits for
	// every peer's End-of-RIB before sending its own updates.
	DefaultDeferralTime = 60 * time.Second
	// DefaultRestartAfter is how long a session torn down by the
	// max-prefix action "restart" stays down.
	DefaultRestartAfter = 60 * time.Second
)

// Max-prefix actions.
const (
	MaxPrefixTeardown = "teardown"
	MaxPrefixWarn     = "warn"
	MaxPrefixRestart  = "restart"
)

// Config is the BGP speaker's configuration, decoded by the daemon's config
// loader (hence the mapstructure tags). Zero values take the defaults named
// on each field.
type Config struct {
	// AS is the local autonomous system number. Required.
	AS uint32 `mapstructure:"as"`
	// RouterID is the BGP identifier, an IPv4 address. Required.
	RouterID string `mapstructure:"router_id"`
	// ListenPort is the TCP port for incoming sessions: 0 means 179, -1
	// means no listener (the speaker only dials).
	ListenPort int32 `mapstructure:"listen_port"`
	// ListenAddresses restricts the listener; empty listens on all.
	ListenAddresses []string `mapstructure:"listen_addresses"`
	// Multipath installs all equal-cost best paths as one ECMP route. It is
	// process-wide in GoBGP, so one process holds one speaker.
	Multipath bool `mapstructure:"multipath"`
	// GRPCAddress is where GoBGP's gRPC API listens, so that the stock
	// `gobgp` CLI works: "unix:///PATH" for a Unix socket (mode 0600, or
	// 0660 with GRPCGroup), or IP:port for TCP, which needs GRPCTLS unless
	// the IP is a loopback address; "" turns it off. The daemon's default
	// is DefaultGRPCAddress, set by its config loader; this package does
	// not open it unless asked.
	GRPCAddress string `mapstructure:"grpc_address"`
	// GRPCGroup names a group (or a numeric gid) whose members may use the
	// Unix socket too; the socket is then mode 0660 and of that group.
	GRPCGroup string `mapstructure:"grpc_group"`
	// GRPCTLS serves the API over TLS, for a TCP address.
	GRPCTLS GRPCTLS `mapstructure:"grpc_tls"`
	// Networks are the prefixes announced to peers (subject to the export
	// policy), with this router as next hop.
	Networks []string `mapstructure:"networks"`
	// PrefixLists are named lists that import and export policies refer to.
	PrefixLists []PrefixList `mapstructure:"prefix_lists"`
	// Neighbors are the configured peers.
	Neighbors []Neighbor `mapstructure:"neighbors"`
	// GracefulRestart configures RFC 4724 for every neighbour (each may
	// override Enabled).
	GracefulRestart GracefulRestart `mapstructure:"graceful_restart"`
	// Redistribute announces kernel routes that xrouter did not write.
	Redistribute Redistribute `mapstructure:"redistribute"`
}

// GRPCTLS configures TLS for GoBGP's API on a TCP address.
type GRPCTLS struct {
	// CertFile and KeyFile are the server's certificate (chain) and key,
	// PEM. Both or neither.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ClientCAFile, when set, makes the server require a client
	// certificate signed by one of these CAs (PEM): without it TLS only
	// encrypts, and anyone who reaches the port may use the API.
	ClientCAFile string `mapstructure:"client_ca_file"`
}

// enabled reports whether TLS is configured.
func (t GRPCTLS) enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// GracefulRestart is RFC 4724, in both roles: as restarting speaker (the
// daemon restarts, its kernel routes stay and peers keep its routes for
// RestartTime) and as helper (a peer restarts, its routes stay installed
// until it is back and sent End-of-RIB, or its advertised restart time
// passes).
type GracefulRestart struct {
	Enabled bool `mapstructure:"enabled"`
	// RestartTime is advertised to peers: how long they keep our routes
	// while we are down. At most 4095s (a 12-bit field); default 120s.
	RestartTime time.Duration `mapstructure:"restart_time"`
	// DeferralTime: after a restart we send our routes once every peer
	// has sent End-of-RIB, or when this passes. Default 60s.
	DeferralTime time.Duration `mapstructure:"deferral_time"`
}

// Redistribute selects kernel routes to announce.
type Redistribute struct {
	// Connected are the subnets of the router's own addresses (kernel
	// routes with protocol "kernel" and scope link).
	Connected RedistributeSource `mapstructure:"connected"`
	// Static are routes with protocol "static" or "boot" (ip route add
	// without a proto); never xrouter's own (protocol bgp).
	Static RedistributeSource `mapstructure:"static"`
}

// RedistributeSource is one kind of kernel route to announce.
type RedistributeSource struct {
	Enabled bool `mapstructure:"enabled"`
	// PrefixList names the list a route must match to be announced;
	// required when Enabled.
	PrefixList string `mapstructure:"prefix_list"`
}

// MaxPrefixes limits the prefixes a neighbour may send per family. A plain
// integer in the config file is a Limit with the action teardown.
type MaxPrefixes struct {
	// Limit > 0 turns the check on.
	Limit uint32 `mapstructure:"limit"`
	// Action when the neighbour sends more than Limit: "teardown" (the
	// default) closes the session with a Cease NOTIFICATION and keeps it
	// down until the config is reloaded with a change to the neighbour or
	// the daemon restarts; "restart" closes it and re-enables it after
	// RestartAfter; "warn" logs and keeps accepting.
	Action string `mapstructure:"action"`
	// RestartAfter is the wait of the "restart" action; default 60s.
	RestartAfter time.Duration `mapstructure:"restart_after"`
}

// PrefixList is a named list of prefixes with length ranges.
type PrefixList struct {
	Name    string        `mapstructure:"name"`
	Entries []PrefixEntry `mapstructure:"entries"`
}

// PrefixEntry matches routes inside Prefix whose length is between GE and
// LE (inclusive), as in the usual "ge/le" prefix lists: neither set matches
// Prefix's own length only; GE alone matches from GE to the family's
// maximum; LE alone from Prefix's length to LE.
type PrefixEntry struct {
	Prefix string `mapstructure:"prefix"`
	GE     int    `mapstructure:"ge"`
	LE     int    `mapstructure:"le"`
}

// Neighbor is one configured peer.
type Neighbor struct {
	// Address is the peer's IP address. Required.
	Address string `mapstructure:"address"`
	// PeerAS is the peer's AS; equal to Config.AS makes it iBGP. Required.
	PeerAS uint32 `mapstructure:"peer_as"`
	// Families lists the address families to negotiate ("ipv4-unicast",
	// "ipv6-unicast", "ipv4-flowspec", "ipv6-flowspec"). Required: nothing
	// is enabled implicitly.
	Families []string `mapstructure:"families"`
	// Passive waits for the peer to connect instead of dialling.
	Passive bool `mapstructure:"passive"`
	// HoldTime defaults to 90s; KeepaliveInterval to a third of it.
	HoldTime          time.Duration `mapstructure:"hold_time"`
	KeepaliveInterval time.Duration `mapstructure:"keepalive_interval"`
	// MultihopTTL > 0 enables eBGP multihop with that TTL.
	MultihopTTL uint32 `mapstructure:"multihop_ttl"`
	// TTLSecurity is GTSM (RFC 5082).
	TTLSecurity TTLSecurity `mapstructure:"ttl_security"`
	// LocalAddress is the source address of the session; empty lets the
	// kernel choose.
	LocalAddress string `mapstructure:"local_address"`
	// Password enables TCP-MD5 (RFC 2385) with this key.
	Password string `mapstructure:"password"`
	// Import and Export name prefix lists: routes matching are accepted,
	// others rejected. Empty means reject everything for an eBGP neighbour
	// (RFC 8212) and accept everything for an iBGP one.
	Import string `mapstructure:"import"`
	Export string `mapstructure:"export"`
	// MaxPrefixes limits the prefixes the peer may send per family
	// (FlowSpec rules count as prefixes of their family).
	MaxPrefixes MaxPrefixes `mapstructure:"max_prefixes"`
	// FlowSpecImport is the import policy of the FlowSpec families.
	// Unset (no prefix list): an eBGP neighbour's rules are all rejected
	// (RFC 8212), an iBGP neighbour's all accepted.
	FlowSpecImport FlowSpecImport `mapstructure:"flowspec_import"`
	// FlowSpecValidation is the RFC 8955 section 6 check of each rule
	// against the unicast RIB; nil means on.
	FlowSpecValidation *bool `mapstructure:"flowspec_validation"`
	// GracefulRestart overrides bgp.graceful_restart.enabled for this
	// neighbour when set.
	GracefulRestart *bool `mapstructure:"graceful_restart"`
}

// FlowSpecImport accepts a FlowSpec rule when its destination prefix
// matches PrefixList (an entry contains it, with a length in the entry's
// ge/le range) and each of its actions is one of Actions. A rule without a
// destination matches no list. A rule without actions only counts packets
// and is accepted when its destination matches.
type FlowSpecImport struct {
	// PrefixList names the prefix list the destination must match; set, it
	// turns the policy on.
	PrefixList string `mapstructure:"prefix_list"`
	// Actions allowed: "drop", "rate-limit", "mark"; empty allows all
	// three.
	Actions []string `mapstructure:"actions"`
}

// TTLSecurity is the Generalized TTL Security Mechanism (RFC 5082): we send
// with TTL 255 and the kernel drops the neighbour's segments that arrive
// with a TTL below TTLMin (IP_MINTTL), so that a spoofer further away than
// the neighbour cannot reach the session. The neighbour must send with TTL
// 255 too (BIRD's "ttl security on", FRR's "ttl-security hops").
type TTLSecurity struct {
	Enabled bool `mapstructure:"enabled"`
	// TTLMin is the lowest TTL accepted: 255 (the default) for a directly
	// connected neighbour, 255-N+1 for one N hops away.
	TTLMin uint32 `mapstructure:"ttl_min"`
}

// DefaultTTLMin accepts only a directly connected neighbour.
const DefaultTTLMin = 255

// grEnabled reports whether graceful restart is on for the neighbour.
func (n Neighbor) grEnabled(global GracefulRestart) bool {
	if n.GracefulRestart != nil {
		return *n.GracefulRestart
	}
	return global.Enabled
}

// flowSpecValidation reports whether RFC 8955 section 6 validation is on.
func (n Neighbor) flowSpecValidation() bool {
	return n.FlowSpecValidation == nil || *n.FlowSpecValidation
}

// hasFlowSpec reports whether a FlowSpec family is enabled.
func (n Neighbor) hasFlowSpec() bool {
	for _, f := range n.Families {
		if isFlowSpecFamily(f) {
			return true
		}
	}
	return false
}

func isFlowSpecFamily(f string) bool { return f == FamilyIPv4FlowSpec || f == FamilyIPv6FlowSpec }

// ebgp reports whether the neighbour is external.
func (n Neighbor) ebgp(localAS uint32) bool { return n.PeerAS != localAS }

// withDefaults returns c with the documented defaults filled in.
func (c Config) withDefaults() Config {
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	ns := make([]Neighbor, len(c.Neighbors))
	for i, n := range c.Neighbors {
		if n.HoldTime == 0 {
			n.HoldTime = DefaultHoldTime
		}
		if n.KeepaliveInterval == 0 {
			n.KeepaliveInterval = n.HoldTime / 3
		}
		if n.TTLSecurity.Enabled && n.TTLSecurity.TTLMin == 0 {
			n.TTLSecurity.TTLMin = DefaultTTLMin
		}
		if n.MaxPrefixes.Limit > 0 {
			if n.MaxPrefixes.Action == "" {
				n.MaxPrefixes.Action = MaxPrefixTeardown
			}
			if n.MaxPrefixes.RestartAfter == 0 {
				n.MaxPrefixes.RestartAfter = DefaultRestartAfter
			}
		}
		ns[i] = n
	}
	c.Neighbors = ns
	if c.GracefulRestart.RestartTime == 0 {
		c.GracefulRestart.RestartTime = DefaultRestartTime
	}
	if c.GracefulRestart.DeferralTime == 0 {
		c.GracefulRestart.DeferralTime = DefaultDeferralTime
	}
	return c
}

// Validate checks the configuration and reports every problem at once, each
// naming the offending key, so that a bad file is fixed in one go.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.AS == 0 {
		bad("bgp.as: required")
	}
	if a, err := netip.ParseAddr(c.RouterID); err != nil || !a.Is4() {
		bad("bgp.router_id: %q is not an IPv4 address", c.RouterID)
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		bad("bgp.listen_port: %d out of range (-1 for no listener)", c.ListenPort)
	}
	for _, a := range c.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			bad("bgp.listen_addresses: %q: %w", a, err)
		}
	}
	for _, p := range c.Networks {
		if _, err := parsePrefix(p); err != nil {
			bad("bgp.networks: %w", err)
		}
	}
	lists := map[string]bool{}
	for i, pl := range c.PrefixLists {
		if pl.Name == "" {
			bad("bgp.prefix_lists[%d].name: required", i)
		}
		if lists[pl.Name] {
			bad("bgp.prefix_lists[%d].name: %q defined twice", i, pl.Name)
		}
		lists[pl.Name] = true
		for j, e := range pl.Entries {
			p, err := parsePrefix(e.Prefix)
			if err != nil {
				bad("bgp.prefix_lists[%d].entries[%d].prefix: %w", i, j, err)
				continue
			}
			ge, le := e.lengths(p)
			if ge < p.Bits() || le < ge || le > p.Addr().BitLen() {
				bad("bgp.prefix_lists[%d].entries[%d]: length range %d-%d does not fit %s", i, j, ge, le, p)
			}
		}
	}
	seen := map[netip.Addr]bool{}
	for i, n := range c.Neighbors {
		key := fmt.Sprintf("bgp.neighbors[%d]", i)
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			bad("%s.address: %q is not an IP address", key, n.Address)
		} else if seen[a] {
			bad("%s.address: %s configured twice", key, a)
		}
		seen[a] = true
		if n.PeerAS == 0 {
			bad("%s.peer_as: required", key)
		}
		if len(n.Families) == 0 {
			bad("%s.families: required (%s, %s, %s, %s)", key, FamilyIPv4Unicast, FamilyIPv6Unicast, FamilyIPv4FlowSpec, FamilyIPv6FlowSpec)
		}
		for _, f := range n.Families {
			if f != FamilyIPv4Unicast && f != FamilyIPv6Unicast && !isFlowSpecFamily(f) {
				bad("%s.families: unknown family %q (want %s, %s, %s or %s)", key, f, FamilyIPv4Unicast, FamilyIPv6Unicast, FamilyIPv4FlowSpec, FamilyIPv6FlowSpec)
			}
		}
		if fi := n.FlowSpecImport; fi.PrefixList != "" || len(fi.Actions) > 0 || n.FlowSpecValidation != nil {
			if !n.hasFlowSpec() {
				bad("%s: flowspec_import and flowspec_validation need %s or %s in families", key, FamilyIPv4FlowSpec, FamilyIPv6FlowSpec)
			}
			if fi.PrefixList == "" && len(fi.Actions) > 0 {
				bad("%s.flowspec_import.prefix_list: required with actions", key)
			} else if fi.PrefixList != "" && !lists[fi.PrefixList] {
				bad("%s.flowspec_import.prefix_list: no prefix list named %q", key, fi.PrefixList)
			}
			for _, a := range fi.Actions {
				if !slices.Contains(flowSpecActions, a) {
					bad("%s.flowspec_import.actions: unknown action %q (want %s, %s or %s)", key, a, FlowSpecActionDrop, FlowSpecActionRateLimit, FlowSpecActionMark)
				}
			}
		}
		if n.LocalAddress != "" {
			if _, err := netip.ParseAddr(n.LocalAddress); err != nil {
				bad("%s.local_address: %q is not an IP address", key, n.LocalAddress)
			}
		}
		if n.HoldTime < 0 || (n.HoldTime > 0 && n.HoldTime < 3*time.Second) {
			bad("%s.hold_time: %s is below 3s", key, n.HoldTime)
		}
		if n.KeepaliveInterval < 0 || (n.HoldTime > 0 && n.KeepaliveInterval > n.HoldTime) {
			bad("%s.keepalive_interval: %s must be positive and at most the hold time", key, n.KeepaliveInterval)
		}
		if n.MultihopTTL > 255 {
			bad("%s.multihop_ttl: %d above 255", key, n.MultihopTTL)
		}
		if ts := n.TTLSecurity; ts.Enabled {
			if ts.TTLMin > 255 {
				bad("%s.ttl_security.ttl_min: %d above 255", key, ts.TTLMin)
			}
			if n.MultihopTTL > 0 {
				bad("%s.ttl_security: not together with multihop_ttl (GTSM always sends TTL 255; lower ttl_min for a neighbour hops away)", key)
			}
		} else if ts.TTLMin != 0 {
			bad("%s.ttl_security.ttl_min: set without ttl_security.enabled", key)
		}
		for _, ref := range []struct{ k, v string }{{"import", n.Import}, {"export", n.Export}} {
			if ref.v != "" && !lists[ref.v] {
				bad("%s.%s: no prefix list named %q", key, ref.k, ref.v)
			}
		}
		mp := n.MaxPrefixes
		switch mp.Action {
		case "", MaxPrefixTeardown, MaxPrefixWarn, MaxPrefixRestart:
		default:
			bad("%s.max_prefixes.action: unknown action %q (want %s, %s or %s)", key, mp.Action, MaxPrefixTeardown, MaxPrefixWarn, MaxPrefixRestart)
		}
		if mp.Limit == 0 && (mp.Action != "" || mp.RestartAfter != 0) {
			bad("%s.max_prefixes.limit: required with an action", key)
		}
		if mp.RestartAfter < 0 || (mp.RestartAfter > 0 && mp.RestartAfter < time.Second) {
			bad("%s.max_prefixes.restart_after: %s is below 1s", key, mp.RestartAfter)
		}
	}
	errs = append(errs, c.validateGRPC()...)
	gr := c.GracefulRestart
	if gr.RestartTime < 0 || gr.RestartTime > 4095*time.Second || (gr.RestartTime > 0 && gr.RestartTime < time.Second) {
		bad("bgp.graceful_restart.restart_time: %s out of range (1s to 4095s)", gr.RestartTime)
	}
	if gr.DeferralTime < 0 || gr.DeferralTime > 65535*time.Second || (gr.DeferralTime > 0 && gr.DeferralTime < time.Second) {
		bad("bgp.graceful_restart.deferral_time: %s out of range (1s to 65535s)", gr.DeferralTime)
	}
	for _, src := range []struct {
		k string
		v RedistributeSource
	}{{"connected", c.Redistribute.Connected}, {"static", c.Redistribute.Static}} {
		key := "bgp.redistribute." + src.k + ".prefix_list"
		switch {
		case src.v.Enabled && src.v.PrefixList == "":
			bad("%s: required when redistribution is enabled", key)
		case src.v.PrefixList != "" && !lists[src.v.PrefixList]:
			bad("%s: no prefix list named %q", key, src.v.PrefixList)
		}
	}
	return errors.Join(errs...)
}

// lengths returns the effective length range of an entry.
func (e PrefixEntry) lengths(p netip.Prefix) (ge, le int) {
	ge, le = e.GE, e.LE
	if ge == 0 {
		ge = p.Bits()
	}
	if le == 0 {
		le = ge
		if e.GE != 0 {
			le = p.Addr().BitLen()
		}
	}
	return ge, le
}

// parsePrefix accepts only canonical prefixes: a host bit set is a typo
// more often than an intent.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not a prefix", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}
