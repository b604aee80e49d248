package dataplane

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestOutcomesMirrorBPF checks that Outcome mirrors enum xr_outcome in
// bpf/xrouter.h: same names in the same order (XR_PASS_NOT_IP is not_ip),
// and the same count as the enum bpf2go generated from the compiled object,
// so that a stale generated file is caught as well as a stale outcome.go.
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

	if fwdXrOutcomeXR_OUTCOME_MAX != fwdXrOutcome(NumOutcomes) {
		t.Errorf("generated XR_OUTCOME_MAX = %d, NumOutcomes = %d: regenerate with `go generate`", fwdXrOutcomeXR_OUTCOME_MAX, NumOutcomes)
	}
	// The generated constants come from the compiled object's BTF: a spot
	// check per outcome that the object and outcome.go agree.
	for gen, o := range map[fwdXrOutcome]Outcome{
		fwdXrOutcomeXR_FORWARDED:            Forwarded,
		fwdXrOutcomeXR_PASS_NOT_IP:          PassNotIP,
		fwdXrOutcomeXR_PASS_MALFORMED:       PassMalformed,
		fwdXrOutcomeXR_PASS_IP_OPTIONS:      PassIPOptions,
		fwdXrOutcomeXR_PASS_FRAGMENT:        PassFragment,
		fwdXrOutcomeXR_PASS_TTL_EXCEEDED:    PassTTLExceeded,
		fwdXrOutcomeXR_PASS_L2NOT_FOR_US:    PassL2NotForUs,
		fwdXrOutcomeXR_PASS_MARTIAN:         PassMartian,
		fwdXrOutcomeXR_PASS_ICMP_SPECIAL:    PassICMPSpecial,
		fwdXrOutcomeXR_PASS_NOT_FWDED:       PassNotFwded,
		fwdXrOutcomeXR_PASS_FWD_DISABLED:    PassFwdDisabled,
		fwdXrOutcomeXR_PASS_BLACKHOLE:       PassBlackhole,
		fwdXrOutcomeXR_PASS_UNREACHABLE:     PassUnreachable,
		fwdXrOutcomeXR_PASS_PROHIBIT:        PassProhibit,
		fwdXrOutcomeXR_PASS_UNSUPP_LWT:      PassUnsuppLWT,
		fwdXrOutcomeXR_PASS_NO_NEIGH:        PassNoNeigh,
		fwdXrOutcomeXR_PASS_FRAG_NEEDED:     PassFragNeeded,
		fwdXrOutcomeXR_PASS_LOOKUP_OTHER:    PassLookupOther,
		fwdXrOutcomeXR_PASS_NOT_IN_DEVMAP:   PassNotInDevmap,
		fwdXrOutcomeXR_PASS_HAIRPIN:         PassHairpin,
		fwdXrOutcomeXR_PASS_INGRESS_UNKNOWN: PassIngressUnknown,
		fwdXrOutcomeXR_PASS_NETFILTER:       PassNetfilter,
		fwdXrOutcomeXR_PASS_IPV6DISABLED:    PassIPv6Disabled,
		fwdXrOutcomeXR_PASS_TC_INGRESS:      PassTCIngress,
		fwdXrOutcomeXR_PASS_TC_EGRESS:       PassTCEgress,
		fwdXrOutcomeXR_PASS_NO_XDP_XMIT:     PassNoXDPXmit,
		fwdXrOutcomeXR_PASS_ROUTE_MTU:       PassRouteMTU,
		fwdXrOutcomeXR_PASS_ECMP_HASH:       PassECMPHash,
	} {
		if Outcome(gen) != o {
			t.Errorf("generated constant %d mirrors Go outcome %d (%s)", gen, o, o)
		}
	}
}
