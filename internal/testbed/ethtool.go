package testbed

import (
	"fmt"

	"github.com/xrouter/xrouter/internal/ethtool"
)

// ethtool "set value" commands, for SetEthtool.
const (
	EthtoolSTxCsum = ethtool.SetTxCsum // TX checksum offload
	EthtoolSGRO    = ethtool.SetGRO    // generic receive offload
)

// SetEthtool sets an on/off ethtool feature of dev in the namespace (as
// `ethtool -K dev ... on|off`).
func (n *Netns) SetEthtool(dev string, cmd uint32, on bool) error {
	if err := n.Do(func() error { return ethtool.Set(dev, cmd, on) }); err != nil {
		return fmt.Errorf("netns %s: %w", n.name, err)
	}
	return nil
}
