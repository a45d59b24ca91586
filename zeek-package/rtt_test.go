package zeekpackage_test

// The Zeek-independent half of scripts/dns-rtt.zeek, checked the way
// Zeek's own tests are: on real traces whose dns.log real Zeek wrote.
//
// Stock Zeek sets dns.log's rtt when it sees the first answer record of a
// response, as network_time() - ts, where ts is the time of the query.
// The script sets the same value at the end of every response to a query
// seen earlier, answers or not. So, for each stock record:
//   - query seen, response seen, no rtt  -> must gain rtt = t(response) - t(query)
//   - rtt already set                     -> unchanged, and equal to that difference
//   - no response (unanswered) or no query (response only) -> unchanged
// The packets are decoded here (gopacket), independently of Zeek; the
// stock values where Zeek set rtt itself prove the model of "t(query)"
// and "t(response)" (packet times as Zeek's doubles, TCP messages timed
// by the segment that completes them).

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pano-observability/pano/internal/testenv"
)

// dnsMsg is one DNS message seen in a trace.
type dnsMsg struct {
	T        float64 // Zeek's network_time() at the packet that completed it
	Src, Dst netip.AddrPort
	Proto    string // "udp" or "tcp"
	ID       uint16
	QR       bool
	Opcode   uint8
}

// zeekTime is how Zeek turns a packet timestamp into network_time():
// seconds plus microseconds / 1e6, in double precision.
func zeekTime(sec int64, usec int64) float64 { return float64(sec) + float64(usec)/1e6 }

type tcpFlow struct {
	next uint32
	init bool
	buf  []byte
}

// traceMessages decodes every DNS message of a trace: UDP payloads as they
// are, TCP streams reassembled per direction and split on the 2-byte
// length prefix.
func traceMessages(t *testing.T, path string) []dnsMsg {
	t.Helper()
	r, err := pcapgo.NewReader(testenv.OpenTestdata(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		ip6     layers.IPv6
		udp     layers.UDP
		tcp     layers.TCP
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &udp, &tcp, &payload)
	parser.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	flows := map[[2]netip.AddrPort]*tcpFlow{}
	var out []dnsMsg
	now := 0.0
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		udp.Payload, tcp.Payload = nil, nil
		if err := parser.DecodeLayers(data, &decoded); err != nil {
			continue
		}
		var src, dst netip.Addr
		var sport, dport uint16
		proto := ""
		for _, l := range decoded {
			switch l {
			case layers.LayerTypeIPv4:
				src, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
				dst, _ = netip.AddrFromSlice(ip4.DstIP.To4())
			case layers.LayerTypeIPv6:
				src, _ = netip.AddrFromSlice(ip6.SrcIP)
				dst, _ = netip.AddrFromSlice(ip6.DstIP)
			case layers.LayerTypeUDP:
				proto, sport, dport = "udp", uint16(udp.SrcPort), uint16(udp.DstPort)
			case layers.LayerTypeTCP:
				proto, sport, dport = "tcp", uint16(tcp.SrcPort), uint16(tcp.DstPort)
			}
		}
		if proto == "" {
			continue
		}
		// network_time() never goes back: a packet stamped earlier than
		// its predecessor (captures from several CPUs) is processed at
		// the predecessor's time. The dnsperf capture has such packets,
		// and stock Zeek's ts values show it.
		if pt := zeekTime(ci.Timestamp.Unix(), int64(ci.Timestamp.Nanosecond()/1000)); pt > now {
			now = pt
		}
		ts := now
		s, d := netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
		emit := func(m []byte) {
			if len(m) < 12 {
				return
			}
			out = append(out, dnsMsg{T: ts, Src: s, Dst: d, Proto: proto,
				ID: binary.BigEndian.Uint16(m), QR: m[2]&0x80 != 0, Opcode: (m[2] >> 3) & 0xf})
		}
		if proto == "udp" {
			emit(udp.Payload)
			continue
		}
		f := flows[[2]netip.AddrPort{s, d}]
		if f == nil {
			f = &tcpFlow{}
			flows[[2]netip.AddrPort{s, d}] = f
		}
		if tcp.SYN {
			f.next, f.init = tcp.Seq+1, true
			continue
		}
		if len(tcp.Payload) == 0 {
			continue
		}
		if !f.init {
			f.next, f.init = tcp.Seq, true
		}
		if tcp.Seq != f.next {
			continue // retransmission or gap: not in these traces
		}
		f.next += uint32(len(tcp.Payload))
		f.buf = append(f.buf, tcp.Payload...)
		for len(f.buf) >= 2 {
			n := int(binary.BigEndian.Uint16(f.buf))
			if len(f.buf) < 2+n {
				break
			}
			emit(f.buf[2 : 2+n])
			f.buf = f.buf[2+n:]
		}
	}
	return out
}

// logRecord is the part of a dns.log record the rule needs.
type logRecord struct {
	TS         float64
	Orig, Resp netip.AddrPort
	Proto      string
	TransID    int // -1 when unset
	HasRTT     bool
	RTT        float64
	RTTText    string // as Zeek wrote it
	HasRcode   bool
}

type rttOutcome struct {
	Gains    bool    // the script must set rtt
	Computed float64 // t(response) - t(query), when both were seen
	Matched  bool    // both seen
}

// predict applies the script's rule to every record, in log order.
func predict(t *testing.T, msgs []dnsMsg, recs []logRecord, tsExact bool) []rttOutcome {
	t.Helper()
	type key struct {
		src, dst netip.AddrPort
		id       uint16
		qr       bool
	}
	idx := map[key][]int{}
	for i, m := range msgs {
		k := key{m.Src, m.Dst, m.ID, m.QR}
		idx[k] = append(idx[k], i)
	}
	claimed := map[int]bool{}
	out := make([]rttOutcome, len(recs))
	// Pair in time order of the queries so that a reused (port, id) pairs
	// first-in first-out, as Zeek's pending queues do.
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return recs[order[a]].TS < recs[order[b]].TS })
	for _, ri := range order {
		r := recs[ri]
		if r.TransID < 0 {
			continue
		}
		id := uint16(r.TransID)
		qi := -1
		for _, i := range idx[key{r.Orig, r.Resp, id, false}] {
			m := msgs[i]
			same := m.T == r.TS
			if !tsExact {
				same = math.Abs(m.T-r.TS) < 5e-7 // TSV ts has 6 decimals
			}
			if same && m.Opcode == 0 {
				qi = i
				break
			}
		}
		if qi < 0 {
			continue // response only: Zeek's ts is the response's own time
		}
		q := msgs[qi]
		for _, i := range idx[key{r.Resp, r.Orig, id, true}] {
			m := msgs[i]
			if claimed[i] || m.T < q.T || m.Opcode != 0 {
				continue
			}
			claimed[i] = true
			rtt := m.T - q.T
			out[ri] = rttOutcome{Matched: true, Computed: rtt, Gains: !r.HasRTT && rtt > 0}
			break
		}
	}
	return out
}

// readTSV parses a Zeek TSV dns.log, returning the field names, the data
// lines (split) and the records.
func readTSV(t *testing.T, path string) ([]string, [][]string, []logRecord) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	var rows [][]string
	var recs []logRecord
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(line, "#fields\t") {
			fields = strings.Split(line, "\t")[1:]
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		row := strings.Split(line, "\t")
		get := func(name string) string {
			for i, f := range fields {
				if f == name {
					return row[i]
				}
			}
			t.Fatalf("%s: no field %s", path, name)
			return ""
		}
		var r logRecord
		r.TS, _ = strconv.ParseFloat(get("ts"), 64)
		op, _ := strconv.Atoi(get("id.orig_p"))
		rp, _ := strconv.Atoi(get("id.resp_p"))
		r.Orig = netip.AddrPortFrom(netip.MustParseAddr(get("id.orig_h")), uint16(op))
		r.Resp = netip.AddrPortFrom(netip.MustParseAddr(get("id.resp_h")), uint16(rp))
		r.Proto = get("proto")
		r.TransID = -1
		if v := get("trans_id"); v != "-" {
			r.TransID, _ = strconv.Atoi(v)
		}
		if v := get("rtt"); v != "-" {
			r.HasRTT, r.RTTText = true, v
			r.RTT, _ = strconv.ParseFloat(v, 64)
		}
		r.HasRcode = get("rcode") != "-"
		rows = append(rows, row)
		recs = append(recs, r)
	}
	return fields, rows, recs
}

// The expected dns.log lines, written down: the records of Zeek's own DNS
// test traces that the script changes, with their new rtt. Every other
// record must stay exactly as stock Zeek wrote it.
var wantChangedTSV = map[string][]string{
	// NODATA (NOERROR, no answer records): stock Zeek leaves rtt unset.
	"nsec": {
		"1533310046.924340\tCHhAvVGS1DHFjwGM9\t35.184.172.191\t57073\t128.175.13.16\t53\tudp\t130\t0.002016\tdla.library.upenn.edu\t1\tC_INTERNET\t28\tAAAA\t0\tNOERROR\tF\tF\tF\tF\t1\t-\t-\tF\t0\tquery\tRRSIG 47 upenn.edu,RRSIG 6 upenn.edu,NSEC dla.library.upenn.edu dlxssvr.library.upenn.edu,assailants.net.isc.upenn.edu\t-",
	},
	// NXDOMAIN.
	"nsec3": {
		"1537560385.602565\tCHhAvVGS1DHFjwGM9\t192.168.1.102\t49324\t192.168.1.1\t53\tudp\t9835\t1.205267\tfoobar.sshfp.net\t1\tC_INTERNET\t1\tA\t3\tNXDOMAIN\tF\tF\tT\tF\t2\t-\t-\tF\t0\tquery\tns0.weberdns.de,RRSIG 6 sshfp.net,NSEC3,RRSIG 50 sshfp.net\t-",
	},
	// DNS over TCP, a TKEY exchange whose query spans three segments: the
	// query's time is the segment that completes it.
	"tkey": {
		"1676937749.533770\tCHhAvVGS1DHFjwGM9\t192.168.1.106\t50138\t192.168.1.108\t53\ttcp\t52640\t0.001401\t1068-ms-7.309-2c6e448.7a9463b8-b109-11ed-26a3-080027f220e5\t1\tC_INTERNET\t249\tTKEY\t0\tNOERROR\tF\tF\tF\tF\t0\t-\t-\tF\t0\tquery",
	},
	// Already have rtt (answers), a response without its query (flip), a
	// query without a response (original_case): unchanged.
	"binds":         nil,
	"wks":           nil,
	"dnskey":        nil,
	"flip":          nil,
	"original_case": nil,
}

func TestRTTScriptOnZeekDNSTraces(t *testing.T) {
	for name, want := range wantChangedTSV {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "zeek-dns", name)
			msgs := traceMessages(t, filepath.Join(dir, "trace.pcap"))
			fields, rows, recs := readTSV(t, filepath.Join(dir, "dns.log"))
			rttCol := -1
			for i, f := range fields {
				if f == "rtt" {
					rttCol = i
				}
			}
			out := predict(t, msgs, recs, false)
			var changed []string
			for i, r := range recs {
				o := out[i]
				if r.HasRTT {
					// Stock Zeek's own rtt proves the model of query and
					// response times, to the printed microsecond.
					if !o.Matched {
						t.Fatalf("record %d has rtt %s but no query/response pair was found", i, r.RTTText)
					}
					if got := fmt.Sprintf("%.6f", o.Computed); got != r.RTTText {
						t.Fatalf("record %d: computed rtt %s, stock Zeek wrote %s", i, got, r.RTTText)
					}
				}
				if !o.Gains {
					continue
				}
				if !r.HasRcode {
					t.Fatalf("record %d gains rtt without a response code", i)
				}
				row := append([]string(nil), rows[i]...)
				row[rttCol] = fmt.Sprintf("%.6f", o.Computed)
				changed = append(changed, strings.Join(row, "\t"))
			}
			if len(changed) != len(want) {
				t.Fatalf("%d records change, want %d:\n%s", len(changed), len(want), strings.Join(changed, "\n"))
			}
			for i := range want {
				if changed[i] != want[i] {
					t.Fatalf("changed record %d:\n got %q\nwant %q", i, changed[i], want[i])
				}
			}
		})
	}
}

// The dnsperf-against-unbound capture and the dns.log Zeek 8.0.10 wrote
// for it in JSON: 20,022 records, of which 15,983 NOERROR with rtt, 3,995
// NXDOMAIN without, and 44 queries whose responses fell outside the cut.
func TestRTTScriptOnDNSPerfCapture(t *testing.T) {
	msgs := traceMessages(t, "testdata/dnsperf-unbound.pcap.gz")
	sc := bufio.NewScanner(testenv.OpenTestdata(t, "testdata/dnsperf-unbound.dns.json.gz"))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines []string
	var recs []logRecord
	var rcodes []string
	for sc.Scan() {
		line := sc.Text()
		var m struct {
			TS        float64  `json:"ts"`
			OrigH     string   `json:"id.orig_h"`
			OrigP     uint16   `json:"id.orig_p"`
			RespH     string   `json:"id.resp_h"`
			RespP     uint16   `json:"id.resp_p"`
			Proto     string   `json:"proto"`
			TransID   *int     `json:"trans_id"`
			RTT       *float64 `json:"rtt"`
			RcodeName *string  `json:"rcode_name"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("dns.log line %d: %v", len(lines)+1, err)
		}
		r := logRecord{TS: m.TS, Proto: m.Proto, TransID: -1,
			Orig: netip.AddrPortFrom(netip.MustParseAddr(m.OrigH), m.OrigP),
			Resp: netip.AddrPortFrom(netip.MustParseAddr(m.RespH), m.RespP)}
		if m.TransID != nil {
			r.TransID = *m.TransID
		}
		if m.RTT != nil {
			r.HasRTT, r.RTT = true, *m.RTT
			r.RTTText = rawField(t, line, "rtt")
		}
		rc := ""
		if m.RcodeName != nil {
			r.HasRcode, rc = true, *m.RcodeName
		}
		lines = append(lines, line)
		recs = append(recs, r)
		rcodes = append(rcodes, rc)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 20022 {
		t.Fatalf("%d records in the fixture, want 20022", len(recs))
	}

	out := predict(t, msgs, recs, true)
	stockRTT, gains, unanswered := 0, map[string]int{}, 0
	newLine := map[int]string{} // index -> line with the new rtt
	for i, r := range recs {
		o := out[i]
		switch {
		case r.HasRTT:
			stockRTT++
			// Exactly Zeek's double: the number Zeek wrote parses back to
			// the very value computed from the packets.
			if !o.Matched || o.Computed != r.RTT {
				t.Fatalf("line %d: stock rtt %s, computed %v (matched %v)", i+1, r.RTTText, o.Computed, o.Matched)
			}
		case o.Gains:
			gains[rcodes[i]]++
			newLine[i] = withRTT(t, lines[i], o.Computed)
		case !r.HasRcode:
			unanswered++
			if o.Matched {
				t.Fatalf("line %d: no rcode in the stock log, yet a response was found", i+1)
			}
		default:
			t.Fatalf("line %d: a response (%s) that gains no rtt", i+1, rcodes[i])
		}
	}
	if stockRTT != 15983 || gains["NXDOMAIN"] != 3995 || len(gains) != 1 || unanswered != 44 {
		t.Fatalf("stock rtt %d, gains %v, unanswered %d; want 15983, NXDOMAIN:3995, 44", stockRTT, gains, unanswered)
	}
	// dns.log lines as the script makes Zeek write them, by line number:
	// the first NXDOMAIN (query at .690670, response at .690773 in the
	// capture), and one whose query packet is stamped before its
	// predecessor (.852218 after .852235): Zeek's ts, hence the rtt,
	// starts at .852235.
	wantLines := map[int]string{
		5:     `{"ts":1795642521.69067,"uid":"CI8ddR33VLCIehSzKd","id.orig_h":"10.253.0.1","id.orig_p":43259,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":4,"rtt":0.000102996826171875,"query":"nope.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":3,"rcode_name":"NXDOMAIN","AA":false,"TC":false,"RD":true,"RA":false,"Z":0,"rejected":true}`,
		12200: `{"ts":1795642521.852235,"uid":"CLnmdAFITvZbYl5i2","id.orig_h":"10.253.0.1","id.orig_p":33506,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":12199,"rtt":0.00023698806762695312,"query":"nope.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":3,"rcode_name":"NXDOMAIN","AA":false,"TC":false,"RD":true,"RA":false,"Z":0,"rejected":true}`,
	}
	for n, w := range wantLines {
		if got := newLine[n-1]; !sameJSONLine(t, got, w) {
			t.Fatalf("dns.log line %d:\n got %s\nwant %s", n, got, w)
		}
	}
}

// sameJSONLine compares two log lines field by field, in order; numbers
// compare as doubles, because Zeek's writer may print the last digit of a
// value exactly between two 17-digit decimals differently from Go (the
// 15,983 stock values above parse back to the exact doubles either way).
func sameJSONLine(t *testing.T, a, b string) bool {
	t.Helper()
	ta, tb := jsonTokens(t, a), jsonTokens(t, b)
	if len(ta) != len(tb) {
		return false
	}
	for i := range ta {
		na, okA := ta[i].(json.Number)
		nb, okB := tb[i].(json.Number)
		if okA && okB {
			fa, _ := na.Float64()
			fb, _ := nb.Float64()
			if fa != fb {
				return false
			}
			continue
		}
		if ta[i] != tb[i] {
			return false
		}
	}
	return true
}

func jsonTokens(t *testing.T, s string) []json.Token {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var out []json.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("bad JSON %s: %v", s, err)
		}
		out = append(out, tok)
	}
}

// rawField returns a JSON number field's text as written.
func rawField(t *testing.T, line, name string) string {
	t.Helper()
	i := strings.Index(line, `"`+name+`":`)
	if i < 0 {
		t.Fatalf("no %s in %s", name, line)
	}
	rest := line[i+len(name)+3:]
	j := strings.IndexAny(rest, ",}")
	return rest[:j]
}

// withRTT inserts rtt where Zeek's writer puts it: after trans_id.
func withRTT(t *testing.T, line string, rtt float64) string {
	t.Helper()
	tid := rawField(t, line, "trans_id")
	anchor := `"trans_id":` + tid + `,`
	if !strings.Contains(line, anchor) {
		t.Fatalf("no trans_id anchor in %s", line)
	}
	return strings.Replace(line, anchor, anchor+`"rtt":`+strconv.FormatFloat(rtt, 'f', -1, 64)+`,`, 1)
}

// The btest baselines (run where Zeek is installed) must say what this
// model says.
func TestBtestBaselinesMatchModel(t *testing.T) {
	cols := []string{"ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "rtt", "query", "qtype_name", "rcode_name"}
	var want strings.Builder
	for _, name := range []string{"nsec", "nsec3", "tkey", "binds", "wks", "flip", "original_case"} {
		dir := filepath.Join("testdata", "zeek-dns", name)
		fields, rows, recs := readTSV(t, filepath.Join(dir, "dns.log"))
		out := predict(t, traceMessages(t, filepath.Join(dir, "trace.pcap")), recs, false)
		for i, row := range rows {
			var vals []string
			for _, c := range cols {
				for j, f := range fields {
					if f == c {
						v := row[j]
						if c == "rtt" && out[i].Gains {
							v = fmt.Sprintf("%.6f", out[i].Computed)
						}
						vals = append(vals, v)
					}
				}
			}
			want.WriteString(strings.Join(vals, "\t") + "\n")
		}
	}
	got, err := os.ReadFile("tests/Baseline/pano.dns-rtt/output")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("tests/Baseline/pano.dns-rtt/output differs from the model:\n got:\n%s\nwant:\n%s", got, want.String())
	}
	got, err = os.ReadFile("tests/Baseline/pano.dns-rtt-dnsperf/output")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "- no-rtt 44\nNOERROR rtt 15983\nNXDOMAIN rtt 3995\n" {
		t.Fatalf("dnsperf baseline: %q", got)
	}
}
