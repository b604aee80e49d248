package kernel

// Hooks into the hub for the external tests (package kernel_test, which
// imports internal/testbed, itself a user of this package).

// HubFiltered is the route protocol the subscription's socket drops.
func HubFiltered(s *Subscription) uint8 { return s.hub.filtered }

// HubFD is the subscription's socket.
func HubFD(s *Subscription) int { return s.hub.fd }

// SameHub reports whether two subscriptions share one socket.
func SameHub(a, b *Subscription) bool { return a.hub == b.hub }
