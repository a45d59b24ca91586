package zeekstandin

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// zeekRec is one record of a Zeek dns.log (TSV or JSON), fields by name.
type zeekRec map[string]any

// readZeekTSV reads Zeek's default log format into records with JSON-like
// values (unset fields absent, counts as float64, bools as bool, vectors
// as []any), the way Zeek's JSON writer would write them.
func readZeekTSV(t *testing.T, path string) []zeekRec {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names, types []string
	var out []zeekRec
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if v, ok := strings.CutPrefix(line, "#fields\t"); ok {
			names = strings.Split(v, "\t")
			continue
		}
		if v, ok := strings.CutPrefix(line, "#types\t"); ok {
			types = strings.Split(v, "\t")
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		vals := strings.Split(line, "\t")
		if len(vals) != len(names) {
			t.Fatalf("%s: %d values for %d fields", path, len(vals), len(names))
		}
		r := zeekRec{}
		for i, v := range vals {
			if v == "-" {
				continue
			}
			r[names[i]] = tsvValue(t, types[i], v)
		}
		out = append(out, r)
	}
	return out
}

func tsvValue(t *testing.T, typ, v string) any {
	if elem, ok := strings.CutPrefix(typ, "vector["); ok {
		elem = strings.TrimSuffix(elem, "]")
		var l []any
		if v != "(empty)" {
			for _, e := range strings.Split(v, ",") {
				l = append(l, tsvValue(t, elem, e))
			}
		}
		return l
	}
	switch typ {
	case "time", "interval", "count", "port":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%s %q: %v", typ, v, err)
		}
		return f
	case "bool":
		return v == "T"
	}
	return v
}

func readJSONLines(t *testing.T, r io.Reader) []zeekRec {
	t.Helper()
	var out []zeekRec
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m zeekRec
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func openMaybeGz(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if !strings.HasSuffix(path, ".gz") {
		return f
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func convert(t *testing.T, in io.Reader, opts Options) ([]zeekRec, Stats) {
	t.Helper()
	testenv.RequireProgram(t, "tshark", "tshark")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := Convert(ctx, in, &out, opts)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return readJSONLines(t, &out), st
}

// compared are the fields the metrics use, checked on every record.
var compared = []string{"ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
	"trans_id", "rtt", "query", "qclass", "qtype", "qtype_name", "rcode", "rcode_name",
	"AA", "TC", "RD", "RA", "Z", "rejected", "answers", "TTLs"}

// fixtures says how Zeek's test suite read each trace, and lists the fields
// where the stand-in cannot match Zeek, with the reason. Anything not
// listed must match.
var fixtures = map[string]struct {
	noC  bool              // Zeek ran without -C (checksums verified)
	diff map[string]string // field -> why it cannot match
}{
	// The query's IP header checksum is wrong and Zeek's test reads this
	// trace without -C: Zeek drops the query and logs the response alone
	// (no qtype, no RD, no rtt). The stand-in does the same. The
	// fixture's ts was restored by hand from the dropped query's packet,
	// whereas Zeek stamps the record with the response it did see.
	"multiple-txt-strings": {noC: true, diff: map[string]string{"ts": "fixture ts restored from a packet Zeek dropped"}},
	"spf":                  {noC: true, diff: map[string]string{"ts": "fixture ts restored from a packet Zeek dropped"}},
	"tkey": {diff: map[string]string{
		// The fixture's ts was restored by hand from the first packet of
		// the TCP connection (the SYN); Zeek's own value was masked by its
		// test suite. The stand-in stamps the DNS message, as Zeek does.
		"ts": "fixture ts is the SYN's time, not Zeek's",
	}},
	// Zeek prints LOC's raw size/precision bytes; tshark decodes them.
	"loc": {diff: map[string]string{"answers": "LOC text not rebuilt from tshark's decoded fields"}},
}

func sameValue(field string, want, got any) bool {
	switch field {
	case "rtt", "ts": // within 1 us
		w, ok1 := want.(float64)
		g, ok2 := got.(float64)
		return ok1 && ok2 && math.Abs(w-g) <= 1e-6
	}
	return fmt.Sprint(want) == fmt.Sprint(got)
}

func key(r zeekRec) string {
	return fmt.Sprint(r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"], r["trans_id"])
}

func compareRecords(t *testing.T, name string, want, got []zeekRec, skip map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, Zeek wrote %d", name, len(got), len(want))
	}
	// Transaction IDs repeat on one connection: pair records with the same
	// key in order of ts.
	byTS := func(rs []zeekRec) {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i]["ts"].(float64) < rs[j]["ts"].(float64) })
	}
	byTS(want)
	byTS(got)
	byKey := map[string][]zeekRec{}
	for _, r := range got {
		byKey[key(r)] = append(byKey[key(r)], r)
	}
	bad := 0
	for _, w := range want {
		k := key(w)
		if len(byKey[k]) == 0 {
			t.Errorf("%s: no record for Zeek's %s", name, k)
			bad++
			continue
		}
		g := byKey[k][0]
		byKey[k] = byKey[k][1:]
		for _, f := range compared {
			if _, ok := skip[f]; ok {
				continue
			}
			wv, wok := w[f]
			gv, gok := g[f]
			if wok != gok || (wok && !sameValue(f, wv, gv)) {
				t.Errorf("%s: %s field %s: Zeek %v (set %v), stand-in %v (set %v)", name, k, f, wv, wok, gv, gok)
				bad++
			}
		}
		if bad > 20 {
			t.Fatalf("%s: too many differences", name)
		}
	}
}

// TestMatchesZeekTSV runs every trace of Zeek's own DNS test suite through
// the stand-in and compares with the dns.log Zeek wrote for it.
func TestMatchesZeekTSV(t *testing.T) {
	dirs, err := filepath.Glob("testdata/zeek-dns/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			want := readZeekTSV(t, filepath.Join(dir, "dns.log"))
			fx := fixtures[name]
			got, _ := convert(t, openMaybeGz(t, filepath.Join(dir, "trace.pcap")), Options{RTT: RTTStock, IgnoreChecksums: !fx.noC})
			compareRecords(t, name, want, got, fx.diff)
		})
	}
}

// TestMatchesZeekJSON compares with Zeek 8.0's JSON dns.log of dnsperf
// traffic to unbound (run with -C): every one of the 20,022 records.
func TestMatchesZeekJSON(t *testing.T) {
	dir := "testdata/zeek-dns-json/dnsperf-unbound"
	want := readJSONLines(t, openMaybeGz(t, filepath.Join(dir, "dns.log.gz")))
	got, st := convert(t, openMaybeGz(t, filepath.Join(dir, "trace.pcap.gz")), Options{RTT: RTTStock, IgnoreChecksums: true})
	if len(want) != 20022 {
		t.Fatalf("fixture has %d records", len(want))
	}
	compareRecords(t, "dnsperf-unbound", want, got, nil)
	if st.Unanswered != 44 {
		t.Errorf("unanswered %d, Zeek logged 44 records without rcode", st.Unanswered)
	}
	// Zeek's uids name connections: two records share a uid exactly when
	// they share a connection. Check the stand-in groups the same way.
	zu, su := map[string]string{}, map[string]string{}
	for _, r := range want {
		zu[fmt.Sprint(r["id.orig_h"], r["id.orig_p"])] = r["uid"].(string)
	}
	for _, r := range got {
		c := fmt.Sprint(r["id.orig_h"], r["id.orig_p"])
		if u, ok := su[c]; ok && u != r["uid"] {
			t.Fatalf("connection %s has two uids", c)
		}
		su[c] = r["uid"].(string)
	}
	if len(zu) != len(su) {
		t.Errorf("%d connections, Zeek saw %d", len(su), len(zu))
	}
}

// lateStamped are the queries of the dnsperf trace that follow a packet
// stamped later than themselves (the capture's one time inversion, frame
// 24384, 17 us): network time does not go back, so Zeek and the stand-in
// stamp them with that later time and their rtt is shorter than tshark's
// packet-to-packet dns.time.
var lateStamped = map[float64]string{
	12199: "frame 24384, 17 us out of order",
	12200: "after frame 24384",
	12201: "after frame 24384",
}

// TestEveryResponseRTT checks the zeek-package mode: every answered record
// has an rtt, equal to stock Zeek's where stock has one, and equal to
// tshark's own response time (dns.time) for the others (NXDOMAIN).
func TestEveryResponseRTT(t *testing.T) {
	tshark := testenv.RequireProgram(t, "tshark", "tshark")
	dir := "testdata/zeek-dns-json/dnsperf-unbound"
	stock := readJSONLines(t, openMaybeGz(t, filepath.Join(dir, "dns.log.gz")))
	got, _ := convert(t, openMaybeGz(t, filepath.Join(dir, "trace.pcap.gz")), Options{RTT: RTTEveryResponse, IgnoreChecksums: true})

	// tshark's own matching: response time per (client port, id, response frame time).
	cmd := exec.Command(tshark, "-n", "-r", "-", "-Y", "dns.flags.response==1 && dns.time",
		"-T", "fields", "-e", "udp.dstport", "-e", "dns.id", "-e", "dns.time")
	cmd.Stdin = openMaybeGz(t, filepath.Join(dir, "trace.pcap.gz"))
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	peer := map[string][]float64{}
	for _, l := range strings.Split(strings.TrimSpace(string(outb)), "\n") {
		f := strings.Split(l, "\t")
		id, _ := strconv.ParseUint(f[1], 0, 16)
		v, _ := strconv.ParseFloat(f[2], 64)
		k := fmt.Sprint(f[0], " ", id)
		peer[k] = append(peer[k], v)
	}

	stockRTT := map[string][]float64{}
	for _, r := range stock {
		if v, ok := r["rtt"].(float64); ok {
			stockRTT[key(r)] = append(stockRTT[key(r)], v)
		}
	}
	answered, nx := 0, 0
	for _, r := range got {
		if _, ok := r["rcode"]; !ok {
			if _, has := r["rtt"]; has {
				t.Fatalf("unanswered record with rtt: %v", r)
			}
			continue
		}
		answered++
		rtt, ok := r["rtt"].(float64)
		if !ok || rtt <= 0 {
			t.Fatalf("answered record without rtt: %v", r)
		}
		k := key(r)
		if l := stockRTT[k]; r["rcode_name"] == "NOERROR" && len(l) > 0 {
			if math.Abs(l[0]-rtt) > 1e-6 {
				t.Errorf("%s: rtt %v, stock Zeek %v", k, rtt, l[0])
			}
			stockRTT[k] = l[1:]
		}
		pk := fmt.Sprint(r["id.orig_p"], " ", r["trans_id"])
		if l := peer[pk]; len(l) > 0 {
			if why, ok := lateStamped[r["trans_id"].(float64)]; ok {
				// As Zeek: ts is network time, ahead of these queries' own stamps.
				if rtt >= l[0] {
					t.Errorf("%s (%s): rtt %v not below tshark's %v", k, why, rtt, l[0])
				}
			} else if math.Abs(l[0]-rtt) > 1e-6 {
				t.Errorf("%s: rtt %v, tshark dns.time %v", k, rtt, l[0])
			}
			peer[pk] = l[1:]
		} else {
			t.Errorf("%s: tshark saw no response time", k)
		}
		if r["rcode_name"] == "NXDOMAIN" {
			nx++
		}
	}
	if answered != 20022-44 || nx != 3995 {
		t.Errorf("answered %d (want %d), NXDOMAIN with rtt %d (want 3995)", answered, 20022-44, nx)
	}
}
