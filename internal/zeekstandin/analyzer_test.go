package zeekstandin

import (
	"net/netip"
	"testing"
)

func msg(t float64, qr bool, id uint16, rcode uint16, answers int) Message {
	c := netip.MustParseAddrPort("198.18.0.1:40000")
	s := netip.MustParseAddrPort("198.18.0.2:53")
	m := Message{Time: t, Proto: "udp", Src: c, Dst: s, ID: id, Flags: 0x0100, QDCount: 1,
		HasQuestion: true, QName: "WWW.Pano.Test", QType: 1, QClass: 1}
	if qr {
		m.Src, m.Dst = s, c
		m.Flags = 0x8580 | rcode
		m.ANCount = answers
		for range answers {
			m.Answers = append(m.Answers, Answer{Name: "www.pano.test", Type: 1, TTL: 300, Text: "192.0.2.1"})
		}
	}
	return m
}

// TestPairing exercises Zeek's matching rules without tshark.
func TestPairing(t *testing.T) {
	for _, mode := range []RTTMode{RTTStock, RTTEveryResponse} {
		var got []*Record
		a := newAnalyzer(mode, 5, func(r *Record) { got = append(got, r) })
		steps := []Message{
			msg(10.0, false, 7, 0, 0),  // A: answered with answers
			msg(10.1, false, 7, 0, 0),  // B: same id on the same connection, queued
			msg(10.2, false, 8, 0, 0),  // C: NXDOMAIN
			msg(10.3, true, 7, 0, 1),   // answers A (first in, first out)
			msg(10.5, true, 7, 0, 1),   // answers B
			msg(10.6, true, 8, 3, 0),   // answers C, no answer records
			msg(11.0, false, 9, 0, 0),  // D: never answered
			msg(12.0, true, 10, 0, 1),  // E: response without query
			msg(12.5, false, 10, 0, 0), // its query, late: Zeek pairs them (rtt 0 -> unset)
			msg(17.0, false, 11, 0, 0), // F: moves network time past D's timeout
			msg(17.0005, true, 11, 0, 1) /* answers F */}
		for i := range steps {
			a.process(&steps[i])
			a.expire(a.now)
		}
		a.flush()
		if len(got) != 6 {
			t.Fatalf("mode %d: %d records, want 6", mode, len(got))
		}
		want := []struct {
			id    uint16
			ts    float64
			rtt   float64 // 0: unset
			rcode int     // -1: unset
			query string
		}{
			{7, 10.0, 0.3, 0, "www.pano.test"},
			{7, 10.1, 0.4, 0, "www.pano.test"},
			{8, 10.2, map[RTTMode]float64{RTTStock: 0, RTTEveryResponse: 0.4}[mode], 3, "www.pano.test"},
			{10, 12.0, 0, 0, "www.pano.test"},
			{9, 11.0, 0, -1, "www.pano.test"},
			{11, 17.0, 0.0005, 0, "www.pano.test"},
		}
		for i, w := range want {
			r := got[i]
			if r.TransID != w.id || r.TS != w.ts {
				t.Fatalf("mode %d record %d: id %d ts %v, want %d %v", mode, i, r.TransID, r.TS, w.id, w.ts)
			}
			if (r.RTT == nil) != (w.rtt == 0) || (r.RTT != nil && abs(*r.RTT-w.rtt) > 1e-9) {
				t.Errorf("mode %d record %d: rtt %v, want %v", mode, i, r.RTT, w.rtt)
			}
			if (r.RCode == nil) != (w.rcode < 0) || (r.RCode != nil && *r.RCode != w.rcode) {
				t.Errorf("mode %d record %d: rcode %v, want %d", mode, i, r.RCode, w.rcode)
			}
			if r.Query == nil || *r.Query != w.query {
				t.Errorf("mode %d record %d: query %v", mode, i, r.Query)
			}
			if r.OrigH != "198.18.0.1" || r.RespP != 53 || r.UID != got[0].UID {
				t.Errorf("mode %d record %d: endpoints %s %d uid %s", mode, i, r.OrigH, r.RespP, r.UID)
			}
		}
		// C: NXDOMAIN without records: AA/RA stay unset (no answer handled)
		// and Zeek marks it rejected.
		if c := got[2]; c.AA || c.RA || !c.Rejected || *c.RCodeName != "NXDOMAIN" {
			t.Errorf("mode %d NXDOMAIN record: AA %v RA %v rejected %v", mode, c.AA, c.RA, c.Rejected)
		}
		if a := got[0]; !a.AA || !a.RA || !a.RD || a.Rejected || len(a.Answers) != 1 || a.TTLs[0] != 300 {
			t.Errorf("mode %d answered record: %+v", mode, a)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
