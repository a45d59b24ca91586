package testenv

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// Real tcpdump 4.99 standard error, as Stop reads it.
const tcpdumpStderr = `tcpdump: listening on pnd31806h, link-type EN10MB (Ethernet), snapshot length 262144 bytes
20004 packets captured
20010 packets received by filter
6 packets dropped by kernel
`

func TestParseTcpdumpStats(t *testing.T) {
	s, err := parseTcpdumpStats(tcpdumpStderr)
	if err != nil {
		t.Fatal(err)
	}
	if want := (CaptureStats{Captured: 20004, ReceivedByFilter: 20010, DroppedByKernel: 6}); s != want {
		t.Errorf("%+v, want %+v", s, want)
	}
	s, err = parseTcpdumpStats("tcpdump: listening on x\n1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n")
	if err != nil || s.Captured != 1 || s.ReceivedByFilter != 1 {
		t.Errorf("singular: %+v %v", s, err)
	}
	for _, bad := range []string{"", "tcpdump: listening on x\n", "3 packets captured\n", "99999999999999999999 packets captured\n0 packets dropped by kernel\n"} {
		if _, err := parseTcpdumpStats(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseTcpdumpStats(f *testing.F) {
	f.Add(tcpdumpStderr)
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseTcpdumpStats(s)
		if err == nil && (st.Captured < 0 || st.DroppedByKernel < 0 || st.ReceivedByFilter < 0) {
			t.Fatalf("negative counters %+v", st)
		}
	})
}

func TestParseTcpdumpInfo(t *testing.T) {
	// What tcpdump 4.99 prints on SIGUSR1.
	st, ok := parseTcpdumpInfo("tcpdump: 0 packets captured, 6 packets received by filter, 0 packets dropped by kernel")
	if !ok || st != (CaptureStats{Captured: 0, ReceivedByFilter: 6}) {
		t.Errorf("%+v %v", st, ok)
	}
	st, ok = parseTcpdumpInfo("tcpdump: 1 packet captured, 1 packet received by filter, 2 packets dropped by kernel")
	if !ok || st != (CaptureStats{Captured: 1, ReceivedByFilter: 1, DroppedByKernel: 2}) {
		t.Errorf("%+v %v", st, ok)
	}
	for _, bad := range []string{"", "20004 packets captured", "tcpdump: listening on lo", "tcpdump: x packets captured, 1 packets received by filter, 0 packets dropped by kernel"} {
		if _, ok := parseTcpdumpInfo(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestTcpdumpStopDrains sends a few packets and stops at once: libpcap
// would still hold them in an unretired ring block, and Stop must wait
// for them instead of cutting them off.
func TestTcpdumpStopDrains(t *testing.T) {
	ns := NewNetns(t)
	srv := ns.ListenUDP(t, netip.AddrPortFrom(ns.PeerIP, 0))
	td := StartTcpdump(t, nil, ns.HostIf, fmt.Sprintf("udp dst port %d", srv.LocalAddr().(*net.UDPAddr).Port))
	c, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, stats := td.Stop(t)
	if stats.Captured != 5 || stats.ReceivedByFilter != 5 || stats.DroppedByKernel != 0 {
		t.Errorf("stats %+v, want 5 captured of 5", stats)
	}
}
