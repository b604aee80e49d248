package testbed

import (
	"bytes"
	"fmt"
	"sync"

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

// LockedBuffer collects a child process's output while a test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
