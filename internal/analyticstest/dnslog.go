// Package analyticstest checks PANO's analytics half end to end: a dns.log
// (and, in a test of their own, an http.log and an ssl.log) with known
// content goes through the shim, Kafka, flowlogs-pipeline and Prometheus,
// and every query of the Grafana dashboards must return what is computed
// here, independently, from the same records. It also benchmarks the
// flowlogs-pipeline configuration against the original demo's.
//
// This file generates deterministic Zeek dns.log records and tallies them.
package analyticstest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// Record is one Zeek dns.log entry, with the fields PANO's metrics use.
// Pointers are fields Zeek may leave unset.
type Record struct {
	TS        float64
	UID       string
	OrigH     string
	OrigP     int
	RespH     string
	RespP     int
	Proto     string
	TransID   int
	RTT       *float64 // seconds; unset when no response, or (stock Zeek) no answers
	Query     string
	QType     int
	QTypeName string
	RCode     *int // unset when no response was seen
	RCodeName string
	TC        bool
	Rejected  bool
}

// Answered reports whether a response was seen.
func (r Record) Answered() bool { return r.RCode != nil }

// fields returns the record as Zeek's JSON writer names its fields with
// PANO's package (Log::default_scope_sep = "_": id_orig_h), unset fields
// absent.
func (r Record) fields() map[string]any {
	m := map[string]any{
		"ts": r.TS, "uid": r.UID,
		"id_orig_h": r.OrigH, "id_orig_p": r.OrigP, "id_resp_h": r.RespH, "id_resp_p": r.RespP,
		"proto": r.Proto, "trans_id": r.TransID,
		"query": r.Query, "qclass": 1, "qclass_name": "C_INTERNET", "qtype": r.QType, "qtype_name": r.QTypeName,
		"AA": false, "TC": r.TC, "RD": true, "RA": r.Answered(), "Z": 0, "rejected": r.Rejected,
	}
	if r.RTT != nil {
		m["rtt"] = *r.RTT
	}
	if r.RCode != nil {
		m["rcode"] = *r.RCode
		m["rcode_name"] = r.RCodeName
	}
	return m
}

// ZeekJSON is the record as one dns.log line (LogAscii::use_json=T),
// without the trailing newline.
func (r Record) ZeekJSON() []byte {
	b, err := json.Marshal(r.fields())
	if err != nil {
		panic(err) // only plain values above
	}
	return b
}

// KafkaJSON is the record as the shim forwards it: the dns.log line as
// it is.
func (r Record) KafkaJSON() []byte { return r.ZeekJSON() }

// server describes how one generated DNS server behaves.
type server struct {
	addr           string
	rttMin, rttMax float64 // log-uniform response time, seconds
	stockZeek      bool    // NXDOMAIN responses carry no rtt, as stock Zeek logs them
	rcodeWeights   [5]int  // NOERROR, NXDOMAIN, SERVFAIL, REFUSED, unanswered
	// quiet: never truncated, and (by its weights) never unanswered,
	// refused or failing, so that panels whose truth is 0 for it must
	// show 0 rather than no data.
	quiet bool
}

var (
	servers = []server{
		{addr: "198.18.0.1", rttMin: 40e-6, rttMax: 2e-3, rcodeWeights: [5]int{80, 15, 2, 1, 2}},
		{addr: "198.18.0.5", rttMin: 1e-3, rttMax: 60e-3, rcodeWeights: [5]int{60, 15, 15, 5, 5}},
		{addr: "fd00::53", rttMin: 20e-3, rttMax: 2.0, rcodeWeights: [5]int{50, 10, 5, 5, 30}},
		{addr: "198.18.0.9", rttMin: 200e-6, rttMax: 20e-3, stockZeek: true, rcodeWeights: [5]int{60, 35, 2, 1, 2}},
		{addr: QuietServer, rttMin: 100e-6, rttMax: 5e-3, rcodeWeights: [5]int{90, 10, 0, 0, 0}, quiet: true},
	}
	qtypes = []struct {
		code   int
		name   string
		weight int
	}{{1, "A", 50}, {28, "AAAA", 25}, {12, "PTR", 10}, {15, "MX", 5}, {16, "TXT", 5}, {65, "HTTPS", 5}}
	rcodes = []struct {
		code int
		name string
	}{{0, "NOERROR"}, {3, "NXDOMAIN"}, {2, "SERVFAIL"}, {5, "REFUSED"}, {-1, "unanswered"}}
)

// QuietServer is the generated server that never has an unanswered,
// truncated, refused or failed transaction.
const QuietServer = "198.18.0.13"

// NumNames is how many distinct query names the generator uses.
const NumNames = 40

func queryName(i int) string { return fmt.Sprintf("host%02d.pano.test", i) }

// Generator makes deterministic dns.log records.
type Generator struct {
	rng  *rand.Rand
	ts   float64
	next int
}

// NewGenerator returns a generator whose output depends only on seed.
func NewGenerator(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ts: 1.7e9}
}

func pickWeighted(rng *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

func (g *Generator) record(s server, qt, rc int, name string, tc bool) Record {
	g.next++
	g.ts += 0.0005
	r := Record{
		TS:        math.Round(g.ts*1e6) / 1e6,
		UID:       fmt.Sprintf("CPano%07d", g.next),
		OrigH:     "198.18.0.2",
		OrigP:     20000 + g.next%40000,
		RespH:     s.addr,
		RespP:     53,
		Proto:     "udp",
		TransID:   g.next % 65536,
		Query:     name,
		QType:     qtypes[qt].code,
		QTypeName: qtypes[qt].name,
	}
	if rcodes[rc].code < 0 {
		return r // no response: no rcode, no rtt, no flags from a response
	}
	code := rcodes[rc].code
	r.RCode, r.RCodeName = &code, rcodes[rc].name
	r.TC = tc
	r.Rejected = rcodes[rc].name == "REFUSED"
	if !(s.stockZeek && r.RCodeName == "NXDOMAIN") {
		// log-uniform between rttMin and rttMax, to the microsecond as Zeek prints it
		v := s.rttMin * math.Pow(s.rttMax/s.rttMin, g.rng.Float64())
		v = math.Max(1e-6, math.Round(v*1e6)/1e6)
		r.RTT = &v
	}
	return r
}

// Grid returns one record for every server, query type and return code,
// so that every labelled series exists; every query name appears too, and
// every server but the quiet one has one truncated and one rejected
// response. A return code a server never gives is left out.
func (g *Generator) Grid() []Record {
	var out []Record
	i := 0
	for _, s := range servers {
		for qt := range qtypes {
			for rc := range rcodes {
				if s.rcodeWeights[rc] == 0 {
					continue
				}
				tc := !s.quiet && qtypes[qt].name == "TXT" && rcodes[rc].name == "NOERROR"
				out = append(out, g.record(s, qt, rc, queryName(i%NumNames), tc))
				i++
			}
		}
	}
	return out
}

// Random returns n records drawn from the servers' behaviour. Query names
// follow a Zipf-like popularity, so that the top names stand out.
func (g *Generator) Random(n int) []Record {
	nameWeights := make([]int, NumNames)
	for i := range nameWeights {
		nameWeights[i] = 1000 / (i + 1)
	}
	qtWeights := make([]int, len(qtypes))
	for i, q := range qtypes {
		qtWeights[i] = q.weight
	}
	out := make([]Record, 0, n)
	for range n {
		s := servers[g.rng.IntN(len(servers))]
		qt := pickWeighted(g.rng, qtWeights)
		rc := pickWeighted(g.rng, s.rcodeWeights[:])
		tc := !s.quiet && qtypes[qt].name == "TXT" && g.rng.IntN(4) == 0
		out = append(out, g.record(s, qt, rc, queryName(pickWeighted(g.rng, nameWeights)), tc))
	}
	return out
}

// Tally is what a set of records should make the metrics say, computed
// directly from the records.
type Tally struct {
	Total         int
	ByServer      map[string]int
	ByRcode       map[string]int // "unanswered" for no response
	ByQtype       map[string]int
	ByServerRcode map[string]map[string]int
	ByName        map[string]int
	Unanswered    map[string]int // by server
	Truncated     map[string]int // by server
	Rejected      map[string]int // by server
	RTT           Latencies
}

// NewTally counts records.
func NewTally(records []Record) *Tally {
	t := &Tally{
		ByServer: map[string]int{}, ByRcode: map[string]int{}, ByQtype: map[string]int{},
		ByServerRcode: map[string]map[string]int{}, ByName: map[string]int{},
		Unanswered: map[string]int{}, Truncated: map[string]int{}, Rejected: map[string]int{},
		RTT: newLatencies(),
	}
	for _, r := range records {
		rcode := r.RCodeName
		if !r.Answered() {
			rcode = "unanswered"
			t.Unanswered[r.RespH]++
		}
		t.Total++
		t.ByServer[r.RespH]++
		t.ByRcode[rcode]++
		t.ByQtype[r.QTypeName]++
		if t.ByServerRcode[r.RespH] == nil {
			t.ByServerRcode[r.RespH] = map[string]int{}
		}
		t.ByServerRcode[r.RespH][rcode]++
		t.ByName[r.Query]++
		if r.TC {
			t.Truncated[r.RespH]++
		}
		if r.Rejected {
			t.Rejected[r.RespH]++
		}
		if r.RTT != nil {
			t.RTT.add(r.RespH, *r.RTT)
		}
	}
	t.RTT.sort()
	return t
}

// Latencies are the durations a tally observed (response or handshake
// times), as the histograms see them: their sum per server, and the
// values per server and over all servers, each sorted.
type Latencies struct {
	Sum      map[string]float64
	ByServer map[string][]float64
	All      []float64
}

func newLatencies() Latencies {
	return Latencies{Sum: map[string]float64{}, ByServer: map[string][]float64{}}
}

func (l *Latencies) add(server string, v float64) {
	l.Sum[server] += v
	l.ByServer[server] = append(l.ByServer[server], v)
	l.All = append(l.All, v)
}

func (l *Latencies) sort() {
	for _, v := range l.ByServer {
		sort.Float64s(v)
	}
	sort.Float64s(l.All)
}

// Quantile is the q-quantile of sorted values: the smallest value with at
// least q of all values at or below it.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ResponseTimeBuckets are the upper bounds, in seconds, of the response
// time histogram as Prometheus stores it: flowlogs-pipeline's milliseconds
// histogram below 5 ms merged with its seconds histogram (see
// prometheus.yml), then +Inf.
var ResponseTimeBuckets = []float64{
	5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
	.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, math.Inf(1),
}

// BucketIndex returns the index in ResponseTimeBuckets of the bucket
// holding v (upper bounds are inclusive).
func BucketIndex(v float64) int {
	i, _ := slices.BinarySearch(ResponseTimeBuckets, v)
	return i
}
