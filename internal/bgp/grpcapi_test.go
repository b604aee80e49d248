package bgp

import (
	"strings"
	"testing"
)

// TestGRPCAccessRules checks which API settings are refused and which are
// warned about: nothing wider than root passes silently, and a remote TCP
// address never passes without TLS.
func TestGRPCAccessRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addr    string
		group   string
		tls     GRPCTLS
		wantErr string // substring; "" = valid
		warn    string // substring of a warning; "" = none
	}{
		{name: "default socket", addr: DefaultGRPCAddress},
		{name: "socket shared with a group", addr: DefaultGRPCAddress, group: "xrouter", warn: "members of group xrouter"},
		{name: "relative socket path", addr: "unix://run/gobgp.sock", wantErr: "want unix:///ABSOLUTE/PATH"},
		{name: "loopback TCP", addr: "127.0.0.1:50051", warn: "every local user"},
		{name: "remote TCP without TLS", addr: "192.0.2.1:50051", wantErr: "not a loopback address: refused without TLS"},
		{name: "remote TCP with TLS", addr: "192.0.2.1:50051", tls: GRPCTLS{CertFile: "c.pem", KeyFile: "k.pem"}, warn: "no bgp.grpc_tls.client_ca_file"},
		{name: "remote TCP with mutual TLS", addr: "[2001:db8::1]:50051", tls: GRPCTLS{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}},
		{name: "cert without key", addr: "192.0.2.1:50051", tls: GRPCTLS{CertFile: "c.pem"}, wantErr: "cert_file and key_file go together"},
		{name: "group on TCP", addr: "127.0.0.1:50051", group: "xrouter", wantErr: "only for a Unix socket"},
		{name: "TLS on a socket", addr: DefaultGRPCAddress, tls: GRPCTLS{CertFile: "c.pem", KeyFile: "k.pem"}, wantErr: "only for a TCP address"},
		{name: "garbage", addr: "localhost", wantErr: "neither unix:///PATH nor IP:port"},
		{name: "off", addr: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.GRPCAddress, c.GRPCGroup, c.GRPCTLS = tc.addr, tc.group, tc.tls
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if tc.wantErr != "" {
				return
			}
			w := strings.Join(c.Warnings(), "\n")
			if tc.warn == "" && w != "" {
				t.Errorf("unexpected warning: %s", w)
			}
			if tc.warn != "" && !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want one containing %q", w, tc.warn)
			}
		})
	}
}
