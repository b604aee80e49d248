// Package config loads and validates xrouter's configuration: a YAML file,
// XROUTER_* environment variables and command-line flags, merged by viper.
// Validation is complete before anything is applied, and every error names
// the offending key and the file it came from.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/xrouter/xrouter/internal/bgp"
	"github.com/xrouter/xrouter/internal/dataplane"
	"github.com/xrouter/xrouter/internal/devmap"
	"github.com/xrouter/xrouter/internal/fib"
	"github.com/xrouter/xrouter/internal/flowspec"
	"github.com/xrouter/xrouter/internal/unixsock"
)

// Config is the whole daemon configuration. Each section that a package
// reads is that package's own settings type (its tags are the keys, its
// Validate checks them); config composes them, adds the sections that
// configure the process itself (log, metrics, api, debug, runtime) and
// does the loading: defaults, environment, flags, unknown keys.
type Config struct {
	// Dataplane selects the interfaces and configures the fast path.
	Dataplane devmap.Settings `mapstructure:"dataplane"`
	Log       Log             `mapstructure:"log"`
	Metrics   Metrics         `mapstructure:"metrics"`
	API       API             `mapstructure:"api"`
	// FIB configures the kernel routes xrouter writes for BGP.
	FIB     fib.Settings `mapstructure:"fib"`
	Debug   Debug        `mapstructure:"debug"`
	Runtime Runtime      `mapstructure:"runtime"`
	// BGP configures the embedded speaker; it is off while bgp.as is 0.
	BGP bgp.Config `mapstructure:"bgp"`
	// Flowspec holds static FlowSpec rules for the XDP classifier.
	Flowspec flowspec.Settings `mapstructure:"flowspec"`

	// File is the config file the values came from ("" when none).
	File string `mapstructure:"-"`
}

// Limits of dataplane.cache.size.
const (
	MinCacheSize = dataplane.MinCacheSize
	MaxCacheSize = dataplane.MaxCacheSize
)

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text or json
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port for /metrics; empty turns it off.
	Listen string `mapstructure:"listen"`
	// AllowRemote permits a Listen address other than loopback: /metrics
	// has no authentication.
	AllowRemote bool `mapstructure:"allow_remote"`
}

// API configures the daemon's local control socket, which `xrouter peers`
// and `xrouter routes` query.
type API struct {
	// Socket is the path of the unix socket; empty turns it off.
	Socket string `mapstructure:"socket"`
	// Group may use the socket too (mode 0660); empty: root only (0600).
	Group string `mapstructure:"group"`
}

// Debug configures diagnostics.
type Debug struct {
	// PProf is host:port for Go's /debug/pprof/ handlers (CPU and heap
	// profiles); empty turns it off. Bind it to a loopback address.
	PProf string `mapstructure:"pprof"`
	// AllowRemote permits a PProf address other than loopback.
	AllowRemote bool `mapstructure:"allow_remote"`
}

// Runtime tunes the Go runtime of the daemon.
type Runtime struct {
	// MemoryLimit is the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit) as a size: "1700MiB", "2GiB" or bytes;
	// empty leaves the default (GOMEMLIMIT or none).
	MemoryLimit string `mapstructure:"memory_limit"`
	// GCPercent is the garbage collector's target (runtime/debug.SetGCPercent):
	// 0 takes xrouter's default (DefaultGCPercent, or GOGC when that is
	// set), -1 turns collection off until the memory limit is near.
	GCPercent int `mapstructure:"gc_percent"`
}

// DefaultGCPercent is the garbage collector's target when neither
// runtime.gc_percent nor GOGC is set. Below Go's 100: a full BGP table
// keeps about 0.7 GiB live, and at 100 the heap may grow to twice that
// before a collection (peak RSS about 2.0-2.2 GiB for 1M routes); at 70 it
// peaks near 1.7 GiB for 10-15% more CPU, about what the allocation-free
// BGP watcher callback saved (docs/benchmarks.md).
const DefaultGCPercent = 70

// GCTarget is the garbage collector's target to set, given the GOGC
// environment variable: runtime.gc_percent when set, else
// DefaultGCPercent unless GOGC is set (0: leave the runtime's own).
func (r Runtime) GCTarget(gogc string) int {
	if r.GCPercent != 0 {
		return r.GCPercent
	}
	if gogc != "" {
		return 0
	}
	return DefaultGCPercent
}

// MemoryLimitBytes is runtime.memory_limit in bytes; 0 when unset.
func (r Runtime) MemoryLimitBytes() (int64, error) {
	return parseSize(r.MemoryLimit)
}

// parseSize reads a byte count with an optional binary suffix (KiB, MiB,
// GiB); "" is 0.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a positive size such as 1700MiB, 2GiB or a byte count")
	}
	return n * mult, nil
}

// Modes are the accepted dataplane.mode values.
var Modes = devmap.Modes

// Defaults work for a single router on a host.
func setDefaults(v *viper.Viper) {
	v.SetDefault("dataplane.interfaces", []string{})
	v.SetDefault("dataplane.interface_pattern", "")
	v.SetDefault("dataplane.mode", "auto")
	v.SetDefault("dataplane.pin_path", "/sys/fs/bpf/xrouter")
	v.SetDefault("dataplane.detach_on_exit", false)
	v.SetDefault("dataplane.manage_forwarding", false)
	v.SetDefault("dataplane.resync_interval", "30s")
	v.SetDefault("dataplane.cache.enabled", true)
	v.SetDefault("dataplane.cache.size", 65536)
	v.SetDefault("dataplane.cache.max_age", "2s")
	v.SetDefault("dataplane.netfilter", "respect")
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	v.SetDefault("metrics.listen", "")
	v.SetDefault("metrics.allow_remote", false)
	v.SetDefault("api.socket", "/run/xrouter/xrouter.sock")
	v.SetDefault("api.group", "")
	v.SetDefault("fib.metric", 20)
	v.SetDefault("fib.table", 254)
	v.SetDefault("fib.stale_timeout", "2m")
	v.SetDefault("fib.resync_interval", "5m")
	v.SetDefault("fib.remove_on_stop", false)
	v.SetDefault("fib.nexthop_objects", true)
	v.SetDefault("fib.pic", true)
	v.SetDefault("debug.pprof", "")
	v.SetDefault("debug.allow_remote", false)
	v.SetDefault("runtime.memory_limit", "")
	v.SetDefault("runtime.gc_percent", 0)
	v.SetDefault("bgp.grpc_address", bgp.DefaultGRPCAddress)
}

// bgpKeys are checked by the decoder (ErrorUnused) rather than against the
// defaults: neighbours and prefix lists are lists of maps.
func isBGPKey(k string) bool { return k == "bgp" || strings.HasPrefix(k, "bgp.") }

// decoderChecked: the sections of lists of maps (bgp, flowspec) are
// checked by the decoder (ErrorUnused) rather than against defaults.
func decoderChecked(k string) bool {
	return isBGPKey(k) || k == "flowspec" || strings.HasPrefix(k, "flowspec.")
}

// Keys lists the keys that have a default: every key outside bgp (the bgp
// section is decoded by its own structs; AllKeys lists those too).
func Keys() []string {
	v := viper.New()
	setDefaults(v)
	keys := v.AllKeys()
	sort.Strings(keys)
	return keys
}

// Load reads the config file (optional: "" means defaults, environment and
// flags only), XROUTER_* variables (dataplane.mode is XROUTER_DATAPLANE_MODE)
// and the flags bound by name (a flag "pin-path" overrides
// dataplane.pin_path when set). It validates everything it can without
// looking at the system.
func Load(file string, flags map[string]*pflag.Flag) (*Config, error) {
	c, err := load(file, flags)
	if err != nil {
		return nil, OneLineError(err)
	}
	return c, nil
}

// OneLineError keeps an error on one line whatever the values it quotes
// hold: control characters (a newline in a group name, say) are escaped.
func OneLineError(err error) error {
	msg := err.Error()
	if !strings.ContainsFunc(msg, unicode.IsControl) {
		return err
	}
	var b strings.Builder
	for _, r := range msg {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return errors.New(b.String())
}

func load(file string, flags map[string]*pflag.Flag) (*Config, error) {
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix("XROUTER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, f := range flags {
		if f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, fmt.Errorf("binding flag --%s to %s: %w", f.Name, key, err)
			}
		}
	}
	where := "defaults"
	if file != "" {
		data, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("config %s: %s", file, oneLine(err))
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("config %s: %s", file, oneLine(err))
		}
		where = file
		known := Keys()
		for _, k := range v.AllKeys() {
			if !slices.Contains(known, k) && !isPrefixOfKnown(k, known) && !decoderChecked(k) {
				return nil, fmt.Errorf("config %s: unknown key %q", file, k)
			}
		}
	}
	var c Config
	dc := &mapstructure.DecoderConfig{
		Result:           &c,
		WeaklyTypedInput: false,
		ErrorUnused:      true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			stringToDurationHook,
			stringToSliceHook,
			stringToBoolHook,
			maxPrefixesHook,
		),
	}
	dec, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return nil, fmt.Errorf("config decoder: %w", err)
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		return nil, fmt.Errorf("config %s: %s", where, decodeError(err))
	}
	c.File = file
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", where, err)
	}
	return &c, nil
}

// MaxFileSize bounds the config file: a larger one (or an endless
// device) is refused after reading this much. A full config with
// thousands of neighbours and prefix-list entries stays far below.
const MaxFileSize = 4 << 20

// readFile reads a config file of at most MaxFileSize bytes.
func readFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d MiB: not a config file?", MaxFileSize>>20)
	}
	return data, nil
}

func isPrefixOfKnown(k string, known []string) bool {
	for _, kk := range known {
		if strings.HasPrefix(kk, k+".") {
			return true
		}
	}
	return false
}

// Environment variables and flags arrive as strings; accept the obvious
// spellings for lists and booleans, and nothing else.
func stringToSliceHook(f, t reflect.Type, data any) (any, error) {
	if f.Kind() != reflect.String || t.Kind() != reflect.Slice {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	if s == "" {
		return []string{}, nil
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }), nil
}

func stringToDurationHook(f, t reflect.Type, data any) (any, error) {
	if f.Kind() != reflect.String || t != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (e.g. 30s, 5m)", data)
	}
	return d, nil
}

// maxPrefixesHook keeps the older form of bgp.neighbors[].max_prefixes, a
// plain integer, as {limit: N} (action teardown).
func maxPrefixesHook(f, t reflect.Type, data any) (any, error) {
	if t != reflect.TypeOf(bgp.MaxPrefixes{}) {
		return data, nil
	}
	v := reflect.ValueOf(data)
	switch f.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n < 0 || n > 1<<32-1 {
			return nil, fmt.Errorf("%d out of range", n)
		}
		return bgp.MaxPrefixes{Limit: uint32(n)}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := v.Uint()
		if n > 1<<32-1 {
			return nil, fmt.Errorf("%d out of range", n)
		}
		return bgp.MaxPrefixes{Limit: uint32(n)}, nil
	}
	return data, nil
}

func stringToBoolHook(f, t reflect.Type, data any) (any, error) {
	if f.Kind() != reflect.String || t.Kind() != reflect.Bool {
		return data, nil
	}
	switch strings.ToLower(strings.TrimSpace(data.(string))) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return nil, fmt.Errorf("%q is not a boolean (true or false)", data)
}

// decodeError turns mapstructure's multi-line error into one line that names
// the key.
func decodeError(err error) string {
	var de *mapstructure.DecodeError
	var parts []string
	if errors.As(err, &de) {
		return fmt.Sprintf("key %q: %s", de.Name(), oneLine(de.Unwrap()))
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Validate checks values without touching the system.
func (c *Config) Validate() error {
	if err := c.Dataplane.Validate(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("key \"log.level\": unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("key \"log.format\": unknown format %q (want text or json)", c.Log.Format)
	}
	if err := c.FIB.Validate(); err != nil {
		return err
	}
	if c.API.Socket != "" && !filepath.IsAbs(c.API.Socket) {
		return fmt.Errorf("key \"api.socket\": %q must be an absolute path", c.API.Socket)
	}
	if c.BGP.AS != 0 || len(c.BGP.Neighbors) > 0 || len(c.BGP.Networks) > 0 {
		if err := c.BGP.Validate(); err != nil {
			return bgpError(err)
		}
	}
	if err := c.Flowspec.Validate(); err != nil {
		return err
	}
	if err := checkListen("metrics", c.Metrics.Listen, c.Metrics.AllowRemote); err != nil {
		return err
	}
	if c.API.Group != "" {
		if c.API.Socket == "" {
			return fmt.Errorf("key \"api.group\": %q set but api.socket is off", c.API.Group)
		}
		if _, err := unixsock.LookupGroup(c.API.Group); err != nil {
			return fmt.Errorf("key \"api.group\": %v", err)
		}
	}
	if _, err := c.Runtime.MemoryLimitBytes(); err != nil {
		return fmt.Errorf("key \"runtime.memory_limit\": %q: %v", c.Runtime.MemoryLimit, err)
	}
	if g := c.Runtime.GCPercent; g < -1 || g > 10000 {
		return fmt.Errorf("key \"runtime.gc_percent\": %d out of range (-1 for off, 0 for the default, up to 10000)", g)
	}
	if c.Runtime.GCPercent == -1 && c.Runtime.MemoryLimit == "" {
		return fmt.Errorf("key \"runtime.gc_percent\": -1 (off) needs runtime.memory_limit, or the heap grows without bound")
	}
	return checkListen("debug", c.Debug.PProf, c.Debug.AllowRemote)
}

// listenKeys names the address key of a section with an allow_remote key.
var listenKeys = map[string]string{"metrics": "metrics.listen", "debug": "debug.pprof"}

// checkListen checks an HTTP listener's IP:port: neither endpoint has
// authentication, so an address other than loopback (the unspecified
// address included) needs the section's allow_remote.
func checkListen(section, addr string, allowRemote bool) error {
	if addr == "" {
		return nil
	}
	key := listenKeys[section]
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("key %q: %q is not an IP:port: %v", key, addr, err)
	}
	if !ap.Addr().IsLoopback() && !allowRemote {
		return fmt.Errorf("key %q: %s is not a loopback address and the endpoint has no authentication: bind it to 127.0.0.1 or ::1, or set %s.allow_remote: true", key, ap, section)
	}
	return nil
}

// Warnings lists every control surface the config opens wider than
// root on this host: `config check` prints them and `run` logs them.
func (c *Config) Warnings() []string {
	var w []string
	if c.API.Socket != "" && c.API.Group != "" {
		w = append(w, fmt.Sprintf("api.group: members of group %s may read peers, routes, stats and status through %s", c.API.Group, c.API.Socket))
	}
	if ap, err := netip.ParseAddrPort(c.Metrics.Listen); err == nil {
		if ap.Addr().IsLoopback() {
			w = append(w, fmt.Sprintf("metrics.listen: %s: every local user may read the counters", ap))
		} else {
			w = append(w, fmt.Sprintf("metrics.listen: %s (metrics.allow_remote): whoever reaches the port may read the counters", ap))
		}
	}
	if ap, err := netip.ParseAddrPort(c.Debug.PProf); err == nil {
		who := "every local user"
		if !ap.Addr().IsLoopback() {
			who = "whoever reaches the port (debug.allow_remote)"
		}
		w = append(w, fmt.Sprintf("debug.pprof: %s: %s may take heap profiles, which hold the process's memory (BGP passwords included), and CPU profiles", ap, who))
	}
	if c.BGP.AS != 0 {
		w = append(w, c.BGP.Warnings()...)
	}
	return w
}

// bgpError formats the BGP speaker's validation errors (each "KEY: problem")
// like the rest of the config's: `key "bgp.neighbors[0].families": required`,
// several joined by "; " on one line.
func bgpError(err error) error {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		msg := oneLine(e)
		if k, rest, ok := strings.Cut(msg, ": "); ok && isBGPKey(k) && !strings.ContainsAny(k, " \"") {
			msg = fmt.Sprintf("key %q: %s", k, rest)
		}
		parts = append(parts, msg)
	}
	return errors.New(strings.Join(parts, "; "))
}

// RequireInterfaces checks that the config selects interfaces at all; the
// daemon needs that, the read-only commands do not.
func (c *Config) RequireInterfaces() error {
	if len(c.Dataplane.Interfaces) == 0 && c.Dataplane.InterfacePattern == "" {
		return fmt.Errorf("config %s: key \"dataplane.interfaces\": no interfaces selected: set dataplane.interfaces or dataplane.interface_pattern", c.where())
	}
	return nil
}

func (c *Config) where() string {
	if c.File == "" {
		return "defaults"
	}
	return c.File
}
