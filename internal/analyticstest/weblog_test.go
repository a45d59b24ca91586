package analyticstest

// Deterministic Zeek http.log and ssl.log records, in the field contract
// of PANO's Zeek package (stock fields with "_" as scope separator, plus
// response_time on http.log and handshake_time and the server
// certificate's fields on ssl.log), and their tallies.

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
)

// HTTPRecord is one http.log entry. Pointers are fields Zeek leaves unset.
type HTTPRecord struct {
	TS           float64
	UID          string
	OrigH        string
	OrigP        int
	RespH        string
	RespP        int
	TransDepth   int
	Method       string
	Host         string // "" when the request had no Host header
	URI          string
	Version      string
	UserAgent    string
	ReqBodyLen   int
	RespBodyLen  int
	StatusCode   *int     // unset when no reply was seen
	ResponseTime *float64 // seconds; unset with StatusCode
}

// Status is the status_code label the record counts under.
func (r HTTPRecord) Status() string {
	if r.StatusCode == nil {
		return "none"
	}
	return fmt.Sprint(*r.StatusCode)
}

var statusMsgs = map[int]string{
	200: "OK", 201: "Created", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
	500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

// ZeekJSON is the record as one http.log line.
func (r HTTPRecord) ZeekJSON() []byte {
	m := map[string]any{
		"ts": r.TS, "uid": r.UID,
		"id_orig_h": r.OrigH, "id_orig_p": r.OrigP, "id_resp_h": r.RespH, "id_resp_p": r.RespP,
		"trans_depth": r.TransDepth, "method": r.Method, "uri": r.URI, "version": r.Version,
		"user_agent": r.UserAgent, "request_body_len": r.ReqBodyLen, "response_body_len": r.RespBodyLen,
		"tags": []string{},
	}
	if r.Host != "" {
		m["host"] = r.Host
	}
	if r.StatusCode != nil {
		m["status_code"], m["status_msg"] = *r.StatusCode, statusMsgs[*r.StatusCode]
		m["response_time"] = *r.ResponseTime
		if r.RespBodyLen > 0 {
			m["resp_mime_types"] = []string{"text/html"}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only plain values above
	}
	return b
}

// weighted is a value picked with a weight.
type weighted[T any] struct {
	v T
	w int
}

func pick[T any](rng *rand.Rand, ws []weighted[T]) T {
	weights := make([]int, len(ws))
	for i, x := range ws {
		weights[i] = x.w
	}
	return ws[pickWeighted(rng, weights)].v
}

// httpServer describes how one generated HTTP server behaves. Status 0 is
// no reply.
type httpServer struct {
	addr         string
	port         int
	rtMin, rtMax float64 // log-uniform response time, seconds
	methods      []weighted[string]
	statuses     []weighted[int]
	hosts        []string // Zipf-like popularity, first the most requested
	noHost       bool     // one request in 20 is HTTP/1.0 without a Host header
}

// QuietHTTPServer only ever answers 200.
const QuietHTTPServer = "198.18.1.9"

func hostNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d.pano.test", prefix, i)
	}
	return out
}

var httpServers = []httpServer{
	{addr: "198.18.1.1", port: 80, rtMin: 150e-6, rtMax: 4e-3,
		methods:  []weighted[string]{{"GET", 85}, {"HEAD", 15}},
		statuses: []weighted[int]{{200, 70}, {304, 15}, {404, 15}},
		hosts:    hostNames("www", 12), noHost: true},
	// 5xx about 20%: far above PanoHTTP5xxRatioHigh's 5%.
	{addr: "198.18.1.2", port: 8080, rtMin: 5e-3, rtMax: 0.6,
		methods:  []weighted[string]{{"GET", 50}, {"POST", 30}, {"PUT", 10}, {"DELETE", 10}},
		statuses: []weighted[int]{{200, 55}, {201, 10}, {400, 10}, {500, 15}, {503, 5}, {0, 5}},
		hosts:    hostNames("api", 6)},
	{addr: "198.18.1.3", port: 80, rtMin: 50e-3, rtMax: 8,
		methods:  []weighted[string]{{"GET", 100}},
		statuses: []weighted[int]{{200, 45}, {502, 25}, {504, 15}, {0, 15}},
		hosts:    hostNames("flaky", 4)},
	{addr: QuietHTTPServer, port: 80, rtMin: 1e-3, rtMax: 10e-3,
		methods:  []weighted[string]{{"GET", 100}},
		statuses: []weighted[int]{{200, 100}},
		hosts:    []string{"quiet.pano.test"}},
}

// HTTPGenerator makes deterministic http.log records.
type HTTPGenerator struct {
	rng  *rand.Rand
	ts   float64
	next int
}

func NewHTTPGenerator(seed uint64) *HTTPGenerator {
	return &HTTPGenerator{rng: rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909)), ts: 1.7e9}
}

func (g *HTTPGenerator) record(s httpServer, method string, status int, host string) HTTPRecord {
	g.next++
	g.ts += 0.0005
	r := HTTPRecord{
		TS: math.Round(g.ts*1e6) / 1e6, UID: fmt.Sprintf("CHttp%07d", g.next),
		OrigH: "198.18.0.2", OrigP: 20000 + g.next%40000, RespH: s.addr, RespP: s.port,
		TransDepth: 1 + g.next%3, Method: method, Host: host, URI: fmt.Sprintf("/item/%d", g.next%97),
		Version: "1.1", UserAgent: "h2load nghttp2/1.64.0",
	}
	if host == "" {
		r.Version = "1.0"
	}
	if method == "POST" || method == "PUT" {
		r.ReqBodyLen = 100 + g.rng.IntN(4900)
	}
	if status == 0 {
		return r // no reply: no status, no response time, no body
	}
	code := status
	r.StatusCode = &code
	// log-uniform, to the microsecond as Zeek prints intervals
	v := s.rtMin * math.Pow(s.rtMax/s.rtMin, g.rng.Float64())
	v = math.Max(1e-6, math.Round(v*1e6)/1e6)
	r.ResponseTime = &v
	if method != "HEAD" && status != 304 {
		r.RespBodyLen = 200 + g.rng.IntN(49800)
	}
	return r
}

// Grid returns one record for every server, method and status, and enough
// more that every host of every server appears: every labelled series
// exists afterwards.
func (g *HTTPGenerator) Grid() []HTTPRecord {
	var out []HTTPRecord
	for _, s := range httpServers {
		var combos [][2]int
		for m := range s.methods {
			for st := range s.statuses {
				combos = append(combos, [2]int{m, st})
			}
		}
		for i := range max(len(combos), len(s.hosts)) {
			c := combos[i%len(combos)]
			out = append(out, g.record(s, s.methods[c[0]].v, s.statuses[c[1]].v, s.hosts[i%len(s.hosts)]))
		}
	}
	return out
}

// Random returns n records drawn from the servers' behaviour.
func (g *HTTPGenerator) Random(n int) []HTTPRecord {
	out := make([]HTTPRecord, 0, n)
	for range n {
		s := httpServers[g.rng.IntN(len(httpServers))]
		hw := make([]int, len(s.hosts))
		for i := range hw {
			hw[i] = 1000 / (i + 1)
		}
		host := s.hosts[pickWeighted(g.rng, hw)]
		if s.noHost && g.rng.IntN(20) == 0 {
			host = ""
		}
		out = append(out, g.record(s, pick(g.rng, s.methods), pick(g.rng, s.statuses), host))
	}
	return out
}

// HTTPTally is what a set of http.log records should make the metrics say.
type HTTPTally struct {
	Total       int
	ByServer    map[string]int
	ByStatus    map[string]int // "none" for no reply
	ByClass     map[string]int // "2xx" .. "5xx", "none"
	ByMethod    map[string]int
	ByHost      map[string]int // requests with a Host header only
	WithHost    int
	BySeries    map[string]int // "server method status"
	ServerClass map[string]int // "server class"
	FiveXX      map[string]int // by server
	NoReply     map[string]int // by server
	ReqBytes    map[string]float64
	RespBytes   map[string]float64
	RT          Latencies
}

func statusClass(status string) string {
	if status == "none" {
		return status
	}
	return status[:1] + "xx"
}

func NewHTTPTally(records []HTTPRecord) *HTTPTally {
	t := &HTTPTally{
		ByServer: map[string]int{}, ByStatus: map[string]int{}, ByClass: map[string]int{}, ByMethod: map[string]int{},
		ByHost: map[string]int{}, BySeries: map[string]int{}, ServerClass: map[string]int{},
		FiveXX: map[string]int{}, NoReply: map[string]int{}, ReqBytes: map[string]float64{}, RespBytes: map[string]float64{},
		RT: newLatencies(),
	}
	for _, r := range records {
		st := r.Status()
		t.Total++
		t.ByServer[r.RespH]++
		t.ByStatus[st]++
		t.ByClass[statusClass(st)]++
		t.ByMethod[r.Method]++
		t.BySeries[r.RespH+" "+r.Method+" "+st]++
		t.ServerClass[r.RespH+" "+statusClass(st)]++
		if r.Host != "" {
			t.ByHost[r.Host]++
			t.WithHost++
		}
		if st[0] == '5' {
			t.FiveXX[r.RespH]++
		}
		if st == "none" {
			t.NoReply[r.RespH]++
		}
		t.ReqBytes[r.RespH] += float64(r.ReqBodyLen)
		t.RespBytes[r.RespH] += float64(r.RespBodyLen)
		if r.ResponseTime != nil {
			t.RT.add(r.RespH, *r.ResponseTime)
		}
	}
	t.RT.sort()
	return t
}

// SSLRecord is one ssl.log entry. Version and cipher are "" when the server
// never answered the ClientHello.
type SSLRecord struct {
	TS            float64
	UID           string
	OrigH         string
	OrigP         int
	RespH         string
	Version       string
	Cipher        string
	Curve         string
	ServerName    string
	Resumed       bool
	Established   bool
	History       string
	LastAlert     string
	HandshakeTime *float64
	CertNotAfter  *float64 // Unix seconds; unset in TLS 1.3 and resumed sessions
}

// Labels are the version and cipher labels the record counts under.
func (r SSLRecord) Labels() (version, cipher string) {
	version, cipher = r.Version, r.Cipher
	if version == "" {
		version = "none"
	}
	if cipher == "" {
		cipher = "none"
	}
	return version, cipher
}

// Outcome is the outcome label.
func (r SSLRecord) Outcome() string {
	if r.Established {
		return "established"
	}
	return "failed"
}

// ZeekJSON is the record as one ssl.log line.
func (r SSLRecord) ZeekJSON() []byte {
	m := map[string]any{
		"ts": r.TS, "uid": r.UID,
		"id_orig_h": r.OrigH, "id_orig_p": r.OrigP, "id_resp_h": r.RespH, "id_resp_p": 443,
		"server_name": r.ServerName, "resumed": r.Resumed, "established": r.Established,
		"ssl_history": r.History, "sni_matches_cert": r.CertNotAfter != nil,
	}
	if r.Version != "" {
		m["version"], m["cipher"] = r.Version, r.Cipher
	}
	if r.Curve != "" {
		m["curve"] = r.Curve
	}
	if r.LastAlert != "" {
		m["last_alert"] = r.LastAlert
	}
	if r.HandshakeTime != nil {
		m["handshake_time"] = *r.HandshakeTime
	}
	if r.CertNotAfter != nil {
		m["server_cert_not_valid_after"] = *r.CertNotAfter
		m["server_cert_subject"] = "CN=" + r.ServerName + ",O=PANO test"
		m["server_cert_san_dns"] = []string{r.ServerName, "alt." + r.ServerName}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

type tlsOutcome int

const (
	tlsOK       tlsOutcome = iota
	tlsFailPost            // an alert after the ServerHello
	tlsFailPre             // no ServerHello at all
)

// tlsServer describes how one generated TLS server behaves.
type tlsServer struct {
	addr, name   string
	notAfter     float64 // certificate expiry, Unix seconds (set per test)
	htMin, htMax float64 // log-uniform handshake time, seconds
	suites       []weighted[[2]string]
	outcomes     []weighted[tlsOutcome]
	resumed      int // one TLS 1.2 handshake in resumed is a resumption (0: none)
}

// QuietTLSServer speaks TLS 1.3 only and never fails.
const QuietTLSServer = "198.18.2.9"

// tlsServers returns the generated TLS servers, whose certificates expire
// relative to now: in 400 days, in 5 days and 2 days ago.
func tlsServers(now float64) []tlsServer {
	day := 86400.0
	return []tlsServer{
		{addr: "198.18.2.1", name: "www.pano.test", notAfter: now + 400*day, htMin: 500e-6, htMax: 20e-3,
			suites: []weighted[[2]string]{
				{[2]string{"TLSv13", "TLS_AES_128_GCM_SHA256"}, 45}, {[2]string{"TLSv13", "TLS_AES_256_GCM_SHA384"}, 25},
				{[2]string{"TLSv12", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, 20}, {[2]string{"TLSv12", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}, 10}},
			outcomes: []weighted[tlsOutcome]{{tlsOK, 97}, {tlsFailPost, 2}, {tlsFailPre, 1}},
			resumed:  5},
		{addr: "198.18.2.2", name: "legacy.pano.test", notAfter: now + 5*day, htMin: 1e-3, htMax: 50e-3,
			suites: []weighted[[2]string]{
				{[2]string{"TLSv10", "TLS_RSA_WITH_AES_128_CBC_SHA"}, 40}, {[2]string{"TLSv11", "TLS_RSA_WITH_AES_256_CBC_SHA"}, 20},
				{[2]string{"TLSv12", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"}, 40}},
			outcomes: []weighted[tlsOutcome]{{tlsOK, 100}}},
		// Fails 60% of its handshakes: far above PanoTLSHandshakeFailureRatioHigh's 10%.
		{addr: "198.18.2.3", name: "broken.pano.test", notAfter: now - 2*day, htMin: 2e-3, htMax: 3,
			suites:   []weighted[[2]string]{{[2]string{"TLSv12", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, 100}},
			outcomes: []weighted[tlsOutcome]{{tlsOK, 40}, {tlsFailPost, 35}, {tlsFailPre, 25}}},
		{addr: QuietTLSServer, name: "quiet.pano.test", htMin: 300e-6, htMax: 2e-3,
			suites:   []weighted[[2]string]{{[2]string{"TLSv13", "TLS_AES_128_GCM_SHA256"}, 100}},
			outcomes: []weighted[tlsOutcome]{{tlsOK, 100}}},
	}
}

// SSLGenerator makes deterministic ssl.log records.
type SSLGenerator struct {
	rng     *rand.Rand
	servers []tlsServer
	ts      float64
	next    int
}

func NewSSLGenerator(seed uint64, now float64) *SSLGenerator {
	return &SSLGenerator{rng: rand.New(rand.NewPCG(seed, seed^0xbb67ae8584caa73b)), servers: tlsServers(now), ts: 1.7e9}
}

func (g *SSLGenerator) record(s tlsServer, suite [2]string, o tlsOutcome) SSLRecord {
	g.next++
	g.ts += 0.0005
	r := SSLRecord{
		TS: math.Round(g.ts*1e6) / 1e6, UID: fmt.Sprintf("CTls%07d", g.next),
		OrigH: "198.18.0.2", OrigP: 20000 + g.next%40000, RespH: s.addr, ServerName: s.name,
	}
	if o == tlsFailPre {
		r.History = "C" // the server never answered: nothing negotiated, nothing to time
		return r
	}
	r.Version, r.Cipher, r.Curve = suite[0], suite[1], "x25519"
	v := s.htMin * math.Pow(s.htMax/s.htMin, g.rng.Float64())
	v = math.Max(1e-6, math.Round(v*1e6)/1e6)
	r.HandshakeTime = &v
	r.Resumed = o == tlsOK && r.Version == "TLSv12" && s.resumed > 0 && g.rng.IntN(s.resumed) == 0
	// TLS 1.3 encrypts the certificate; a resumed session sends none.
	if r.Version != "TLSv13" && !r.Resumed && s.notAfter != 0 {
		na := s.notAfter
		r.CertNotAfter = &na
	}
	switch {
	case o == tlsFailPost:
		r.History, r.LastAlert = "CsxkA", "bad_certificate"
	case r.Version == "TLSv13":
		r.Established, r.History = true, "CsiI"
	default:
		r.Established, r.History = true, "CsxknGIi"
	}
	return r
}

// Grid returns one record for every server, suite and outcome, so that
// every labelled series exists afterwards.
func (g *SSLGenerator) Grid() []SSLRecord {
	var out []SSLRecord
	for _, s := range g.servers {
		for _, o := range s.outcomes {
			if o.v == tlsFailPre {
				out = append(out, g.record(s, [2]string{}, tlsFailPre))
				continue
			}
			for _, su := range s.suites {
				out = append(out, g.record(s, su.v, o.v))
			}
		}
	}
	return out
}

// Random returns n records drawn from the servers' behaviour.
func (g *SSLGenerator) Random(n int) []SSLRecord {
	out := make([]SSLRecord, 0, n)
	for range n {
		s := g.servers[g.rng.IntN(len(g.servers))]
		out = append(out, g.record(s, pick(g.rng, s.suites), pick(g.rng, s.outcomes)))
	}
	return out
}

// legacyVersions are the versions PanoTLSLegacyVersionSeen reports.
var legacyVersions = map[string]bool{"SSLv2": true, "SSLv3": true, "TLSv10": true, "TLSv11": true, "DTLSv10": true}

// SSLTally is what a set of ssl.log records should make the metrics say.
type SSLTally struct {
	Total     int
	ByServer  map[string]int
	ByVersion map[string]int // "none" when nothing was negotiated
	ByOutcome map[string]int
	ByCipher  map[string]int
	BySeries  map[string]int // "server version cipher outcome"
	Failed    map[string]int // by server
	Legacy    map[string]int // by server
	Certs     map[string]float64
	HT        Latencies
}

func NewSSLTally(records []SSLRecord) *SSLTally {
	t := &SSLTally{
		ByServer: map[string]int{}, ByVersion: map[string]int{}, ByOutcome: map[string]int{}, ByCipher: map[string]int{},
		BySeries: map[string]int{}, Failed: map[string]int{}, Legacy: map[string]int{}, Certs: map[string]float64{},
		HT: newLatencies(),
	}
	for _, r := range records {
		v, c := r.Labels()
		t.Total++
		t.ByServer[r.RespH]++
		t.ByVersion[v]++
		t.ByOutcome[r.Outcome()]++
		t.ByCipher[c]++
		t.BySeries[r.RespH+" "+v+" "+c+" "+r.Outcome()]++
		if !r.Established {
			t.Failed[r.RespH]++
		}
		if legacyVersions[v] {
			t.Legacy[r.RespH]++
		}
		// The gauge keeps the last certificate seen per server and name.
		if r.CertNotAfter != nil {
			t.Certs[r.RespH+" "+r.ServerName] = *r.CertNotAfter
		}
		if r.HandshakeTime != nil {
			t.HT.add(r.RespH, *r.HandshakeTime)
		}
	}
	t.HT.sort()
	return t
}

// MergedBucketCounts returns, for each bound of ResponseTimeBuckets, how
// many of values Prometheus' merged histogram counts at or below it.
// Bounds under 5 ms come from flowlogs-pipeline's milliseconds twin, which
// compares each value divided by 0.001 (its valueScale) with the bound in
// milliseconds; the rest compare seconds with seconds.
func MergedBucketCounts(values []float64) []int {
	out := make([]int, len(ResponseTimeBuckets))
	for i, le := range ResponseTimeBuckets {
		for _, v := range values {
			in := v <= le
			if le < 0.005 {
				in = v/0.001 <= msBounds[i]
			}
			if in {
				out[i]++
			}
		}
	}
	return out
}

// msBounds are the client library's default bounds as the milliseconds
// twin uses them, aligned with ResponseTimeBuckets' first nine.
var msBounds = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5}
