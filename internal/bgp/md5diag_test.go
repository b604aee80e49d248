package bgp

import (
	"strings"
	"testing"
)

func TestReadMD5Counters(t *testing.T) {
	const netstat = `TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted
TcpExt: 0 3 4 5 6
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
`
	c, err := readMD5Counters(strings.NewReader(netstat))
	if err != nil || c != (md5Counters{NotFound: 3, Unexpected: 4, Failure: 5}) {
		t.Fatalf("readMD5Counters = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "TcpExt: A B\nTcpExt: 1 2\n", "TcpExt: TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure\nTcpExt: 1 x 2\n"} {
		if _, err := readMD5Counters(strings.NewReader(bad)); err == nil {
			t.Errorf("readMD5Counters(%q) accepted", bad)
		}
	}
}

func TestMD5Hint(t *testing.T) {
	for _, tc := range []struct {
		d        md5Counters
		password bool
		want     string
	}{
		{md5Counters{Failure: 1}, true, hintMD5Failure},
		{md5Counters{Failure: 1, NotFound: 1}, true, hintMD5Failure},
		{md5Counters{NotFound: 2}, true, hintMD5NotFound},
		{md5Counters{Unexpected: 2}, true, ""},
		{md5Counters{Unexpected: 2}, false, hintMD5Unexpected},
		{md5Counters{Failure: 2, NotFound: 1}, false, ""},
		{md5Counters{}, true, ""},
	} {
		if got := md5Hint(tc.d, tc.password); got != tc.want {
			t.Errorf("md5Hint(%+v, password %v) = %q, want %q", tc.d, tc.password, got, tc.want)
		}
	}
}
