package fib

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Lookup is what the kernel FIB does with a destination, as `ip route get`
// shows it.
type Lookup struct {
	Destination netip.Addr `json:"destination"`
	Type        string     `json:"type"`
	Gateway     string     `json:"gateway,omitempty"`
	Interface   string     `json:"interface,omitempty"`
	Source      string     `json:"source,omitempty"`
	Protocol    int        `json:"protocol"`
	Error       string     `json:"error,omitempty"`
}

func (l Lookup) String() string {
	if l.Error != "" {
		return l.Error
	}
	s := l.Type
	if l.Gateway != "" {
		s += " via " + l.Gateway
	}
	if l.Interface != "" {
		s += " dev " + l.Interface
	}
	if l.Source != "" {
		s += " src " + l.Source
	}
	return s
}

// LookupAddr asks the kernel FIB of the calling thread's namespace where a
// packet to dst would go. A destination without a route is not an error;
// the answer says so.
func LookupAddr(dst netip.Addr) (Lookup, error) {
	l := Lookup{Destination: dst}
	rs, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		l.Error = fmt.Sprintf("no route: %v", err)
		return l, nil
	}
	if len(rs) == 0 {
		l.Error = "no route"
		return l, nil
	}
	r := rs[0]
	l.Type = routeType(r.Type)
	l.Protocol = int(r.Protocol)
	if r.Gw != nil {
		l.Gateway = r.Gw.String()
	}
	if r.Src != nil {
		l.Source = r.Src.String()
	}
	if r.LinkIndex > 0 {
		if link, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			l.Interface = link.Attrs().Name
		}
	}
	return l, nil
}

func routeType(t int) string {
	switch t {
	case 1:
		return "unicast"
	case 2:
		return "local"
	case 3:
		return "broadcast"
	case 6:
		return "blackhole"
	case 7:
		return "unreachable"
	case 8:
		return "prohibit"
	}
	return fmt.Sprintf("type %d", t)
}
