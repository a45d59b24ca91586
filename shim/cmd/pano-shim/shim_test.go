package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

var jsonUnmarshal = json.Unmarshal

// TestFixturesToKafka: every record of the real Zeek logs (TSV fixtures
// and the JSON fixture) reaches Kafka once, equal field for field to an
// independent reading of the same file.
func TestFixturesToKafka(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "fx-dns", 3)
	dir := t.TempDir()
	var want []string
	tsvs, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "zeek-dns", "*.dns.log"))
	if len(tsvs) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range tsvs {
		sub := filepath.Join(dir, strings.TrimSuffix(filepath.Base(f), ".dns.log"))
		os.Mkdir(sub, 0o755)
		copyFile(t, filepath.Join(sub, "dns.log"), f)
		want = append(want, expectTSV(t, f)...)
	}
	sub := filepath.Join(dir, "dnsperf-json")
	os.Mkdir(sub, 0o755)
	jsonLines := expectJSON(t, filepath.Join("..", "..", "testdata", "dnsperf-unbound.dns.json.log.gz"), filepath.Join(sub, "dns.log"))
	unchanged := map[string]int{}
	for _, l := range jsonLines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		want = append(want, canonical(t, v))
		unchanged[l]++
	}

	state := t.TempDir()
	p := startShim(t, filepath.Join(dir, "*", "dns.log"), k.Bootstrap, state, "-shim-topic-prefix", "fx-")
	waitRecords(t, k.Bootstrap, "fx-dns", int64(len(want)), 3*time.Minute)
	p.stop(t)

	var got []string
	for _, m := range consumeAll(t, k.Bootstrap, "fx-dns") {
		// JSON lines are forwarded byte for byte.
		if n := unchanged[string(m.Value)]; n > 0 {
			unchanged[string(m.Value)] = n - 1
		}
		var v map[string]any
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatalf("not JSON: %s", m.Value)
		}
		if v["uid"] != string(m.Key) {
			t.Fatalf("key %q for uid %v", m.Key, v["uid"])
		}
		got = append(got, canonical(t, v))
	}
	for l, n := range unchanged {
		if n > 0 {
			t.Fatalf("JSON line not in kafka as it is (%d times): %s", n, l)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("%d records in kafka, %d in the logs", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record differs:\n got %s\nwant %s", got[i], want[i])
		}
	}
	t.Logf("%d records (%d TSV fixtures + JSON fixture) in kafka once each, equal to the logs", len(got), len(tsvs))
}

// canonical re-encodes a decoded object with sorted keys.
func canonical(t testing.TB, v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expectTSV reads a Zeek TSV log on its own, without the shim's parser:
// split on tabs, convert by the #types line, unset fields absent.
func expectTSV(t testing.TB, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields, types []string
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		cols := strings.Split(line, "\t")
		switch {
		case cols[0] == "#fields":
			fields = cols[1:]
		case cols[0] == "#types":
			types = cols[1:]
		case strings.HasPrefix(line, "#"):
		default:
			rec := map[string]any{}
			for i, v := range cols {
				if v == "-" {
					continue
				}
				name := fields[i] // as the header gives it
				typ := types[i]
				if strings.HasPrefix(typ, "vector[") || strings.HasPrefix(typ, "set[") {
					elem := typ[strings.Index(typ, "[")+1 : len(typ)-1]
					arr := []any{}
					if v != "(empty)" {
						for _, e := range strings.Split(v, ",") {
							arr = append(arr, scalar(t, elem, e))
						}
					}
					rec[name] = arr
				} else {
					rec[name] = scalar(t, typ, v)
				}
			}
			out = append(out, canonical(t, rec))
		}
	}
	return out
}

func scalar(t testing.TB, typ, v string) any {
	switch typ {
	case "time", "interval", "double", "count", "port", "int":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%s %q: %v", typ, v, err)
		}
		return f
	case "bool":
		return v == "T"
	default:
		return v
	}
}

// expectJSON unpacks the JSON fixture to dst and returns its lines.
func expectJSON(t testing.TB, gz, dst string) []string {
	f, err := os.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var lines []string
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		out.Write(sc.Bytes())
		out.Write([]byte{'\n'})
		lines = append(lines, sc.Text())
	}
	return lines
}

// TestKillRestart: records written while the shim is killed (SIGKILL)
// and restarted several times arrive exactly once.
func TestKillRestart(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "kr-dns", 4)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "dns.log")
	const n = 60000
	appendFile(t, log, []byte(tsvHeader("2026-11-26-02-00-00")))

	done := make(chan struct{})
	go func() {
		defer close(done)
		// About 12 s of writing, so that every kill lands mid-stream.
		for i := 0; i < n; i += 100 {
			lines := make([]string, 0, 100)
			for j := i; j < i+100 && j < n; j++ {
				lines = append(lines, tsvRecord(j))
			}
			writeLines(t, log, lines)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	p := startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "kr-")
	kills := 0
	for {
		time.Sleep(time.Duration(700+rng.IntN(1500)) * time.Millisecond)
		select {
		case <-done:
		default:
			p.kill()
			kills++
			for _, l := range p.logLines("level=") {
				if strings.Contains(l, "resuming") || strings.Contains(l, "ERROR") || strings.Contains(l, "WARN") {
					t.Log(l)
				}
			}
			t.Logf("killed shim (SIGKILL) with %d records in kafka", topicEnd(t, k.Bootstrap, "kr-dns"))
			p = startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "kr-")
			continue
		}
		break
	}
	if kills < 3 {
		t.Fatalf("only %d kills during the writing", kills)
	}
	<-done
	waitRecords(t, k.Bootstrap, "kr-dns", n, 3*time.Minute)
	if d := p.metric(t, "pano_shim_duplicates_skipped_total"); d >= 0 {
		t.Logf("last run skipped %v lines already in kafka", d)
	}
	p.stop(t)
	exactlyOnce(t, k.Bootstrap, "kr-dns", n)
}

// TestBrokerOutage: the broker stops for 20 s in the middle of a stream;
// afterwards every record arrives, none twice, and the shim never exits.
func TestBrokerOutage(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "bo-dns", 3)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "dns.log")
	const n = 40000
	writeN := func(from, to int) {
		for i := from; i < to; i += 400 {
			lines := make([]string, 0, 400)
			for j := i; j < i+400 && j < to; j++ {
				lines = append(lines, jsonRecord(j))
			}
			writeLines(t, log, lines)
			time.Sleep(20 * time.Millisecond)
		}
	}
	p := startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "bo-", "-shim-max-in-flight", "5000", "-shim-health-timeout", "5s")
	writeN(0, n/4)
	waitRecords(t, k.Bootstrap, "bo-dns", n/4, time.Minute)
	if code, body := p.healthz(t); code != 200 {
		t.Fatalf("healthz %d before the outage: %s", code, body)
	}
	k.Stop(t)
	stopped := time.Now()
	writeN(n/4, n/2) // written while the broker is away
	// Waiting, not hoarding: the records held for Kafka stay under the
	// cap while the file grows.
	maxInFlight := 0.0
	for time.Since(stopped) < 19*time.Second {
		maxInFlight = max(maxInFlight, p.metric(t, "pano_shim_in_flight_records"))
		time.Sleep(250 * time.Millisecond)
	}
	// The cap bounds the records buffered; the one Produce waits with
	// is counted too.
	if maxInFlight > 5000+1 {
		t.Fatalf("%v records in flight during the outage, cap 5000", maxInFlight)
	}
	if behind := p.metric(t, "pano_shim_bytes_behind"); behind <= 0 {
		t.Fatalf("bytes_behind %v during the outage", behind)
	}
	t.Logf("during the outage: at most %v records in flight (cap 5000)", maxInFlight)
	// Health means progress: records have waited more than the 5 s
	// health timeout.
	code, body := p.healthz(t)
	if code != 503 || !strings.Contains(body, "SHIM_HEALTH_TIMEOUT") {
		t.Fatalf("healthz during the outage: %d %s, want 503 naming SHIM_HEALTH_TIMEOUT", code, body)
	}
	t.Logf("healthz during the outage: %d %s", code, strings.TrimSpace(body))
	time.Sleep(20*time.Second - time.Since(stopped))
	k.Start(t)
	writeN(n/2, n)
	waitRecords(t, k.Bootstrap, "bo-dns", n, 3*time.Minute)
	select {
	case <-p.done:
		t.Fatalf("shim exited during the outage")
	default:
	}
	if code, body := p.healthz(t); code != 200 {
		t.Fatalf("healthz %d after the outage: %s", code, body)
	}
	p.stop(t)
	exactlyOnce(t, k.Bootstrap, "bo-dns", n)
}

// TestRotationTruncation: the log is rotated (renamed, new file) and
// truncated in place while records are being written; nothing is lost or
// duplicated.
func TestRotationTruncation(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "rt-dns", 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "dns.log")
	p := startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "rt-")
	next := 0
	write := func(count int) {
		for end := next + count; next < end; {
			lines := []string{}
			for j := 0; j < 200 && next < end; j++ {
				lines = append(lines, tsvRecord(next))
				next++
			}
			writeLines(t, log, lines)
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The log does not exist yet when the shim starts.
	time.Sleep(300 * time.Millisecond)
	appendFile(t, log, []byte(tsvHeader("2026-11-26-02-00-00")))
	write(3000)
	// A file renamed before the shim ever opened it is not its to
	// follow: wait until it has read from this one (the start of a Kafka
	// session, which opens the logs, can take a while on a busy machine).
	waitMetric(t, p, "pano_shim_lines_read_total", 1, time.Minute)
	// Rotation as Zeek does it: rename, then a new file with a new
	// header, written at once.
	if err := os.Rename(log, filepath.Join(dir, "dns.2026-11-26-02-00-00.log")); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(tsvHeader("2026-11-26-02-00-01")))
	write(3000)
	// Truncation (copytruncate style): only what the shim has read can
	// survive a truncation, so wait until Kafka has it all, then truncate
	// and keep writing: the new content soon outgrows the old offset.
	waitRecords(t, k.Bootstrap, "rt-dns", int64(next), time.Minute)
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(tsvHeader("2026-11-26-02-00-02")))
	write(5000)
	// A second rotation, then a restart of the shim on the new file.
	if err := os.Rename(log, filepath.Join(dir, "dns.2026-11-26-02-00-03.log")); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, []byte(tsvHeader("2026-11-26-02-00-04")))
	write(2000)
	// SIGTERM while lines are still in flight: they are flushed and the
	// position saved.
	p.stop(t)
	p = startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "rt-")
	write(2000)
	waitRecords(t, k.Bootstrap, "rt-dns", int64(next), 2*time.Minute)
	// SIGTERM saved the final position: the new run had nothing to
	// read back.
	if l := p.logLines("read_back_records="); len(l) != 1 || !strings.Contains(l[0], "read_back_records=0 ") {
		t.Fatalf("after SIGTERM the position was not final: %v", l)
	}
	p.stop(t)
	exactlyOnce(t, k.Bootstrap, "rt-dns", next)
}

// TestMalformedLines: bad lines are skipped and counted by kind; the good
// ones around them all arrive.
func TestMalformedLines(t *testing.T) {
	k := testenv.StartKafka(t)
	// A topic that takes batches of 3000 bytes at most: a record larger
	// than that is refused alone and counted (Kafka would refuse it on
	// every attempt), and the others go in batches small enough.
	k.CreateTopicConfig(t, "ml-dns", 1, map[string]string{"max.message.bytes": "3000"})
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "dns.log")
	lines := []string{jsonRecord(0), "{\"broken\":\n", jsonRecord(1), "[1,2]\n", jsonRecord(2),
		"{\"long\":\"" + strings.Repeat("x", 5000) + "\"}\n", jsonRecord(3),
		"{\"uid\":\"Cbig\",\"answers\":\"" + strings.Repeat("y", 3500) + "\"}\n"}
	const records = 24
	for i := 4; i < records; i++ {
		lines = append(lines, jsonRecord(i))
	}
	writeLines(t, log, lines)
	p := startShim(t, log, k.Bootstrap, state, "-shim-topic-prefix", "ml-", "-shim-max-line-bytes", "4096")
	waitRecords(t, k.Bootstrap, "ml-dns", records, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for p.metric(t, "pano_shim_errors_total")+p.metric(t, "pano_shim_records_refused_total") < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if e, r := p.metric(t, "pano_shim_errors_total"), p.metric(t, "pano_shim_records_refused_total"); e != 3 || r != 1 {
		t.Fatalf("errors_total = %v, records_refused_total = %v, want 3 malformed and 1 refused", e, r)
	}
	if l := p.logLines("reason=record_too_large"); len(l) != 1 || !strings.Contains(l[0], "max.message.bytes") {
		t.Fatalf("the refusal is not logged once with its fix: %v", l)
	}
	if lr := p.metric(t, "pano_shim_lines_read_total"); lr != float64(len(lines)) {
		t.Fatalf("lines_read_total = %v, want %d", lr, len(lines))
	}
	p.stop(t)
	exactlyOnce(t, k.Bootstrap, "ml-dns", records)
	b, _ := os.ReadFile(p.logPath)
	for _, kind := range []string{"json_syntax", "json_not_object", "line_too_long"} {
		if !strings.Contains(string(b), "kind="+kind) {
			t.Errorf("no log line for kind %s", kind)
		}
	}
}

// waitMetric waits until the shim's metric reaches at least min.
func waitMetric(t *testing.T, p *shimProc, name string, min float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.metric(t, name) < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s below %v after %v", name, min, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdleLogReadBackBounded: two logs share one topic; one stays quiet
// while the other fills the topic. After a SIGKILL the quiet log reads
// back only what came after its last quiet checkpoint, not the whole
// topic, and nothing is lost or doubled.
func TestIdleLogReadBackBounded(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "shared", 3)
	dir, state := t.TempDir(), t.TempDir()
	quiet, busy := filepath.Join(dir, "quiet", "dns.log"), filepath.Join(dir, "busy", "dns.log")
	for _, d := range []string{filepath.Dir(quiet), filepath.Dir(busy)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const few, many = 10, 40000
	lines := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, jsonRecord(i))
		}
		return out
	}
	writeLines(t, quiet, lines(0, few))
	args := []string{"-shim-topic", "shared", "-shim-checkpoint-interval", "200ms"}
	p := startShim(t, quiet+","+busy, k.Bootstrap, state, args...)
	waitRecords(t, k.Bootstrap, "shared", few, time.Minute)
	for i := few; i < few+many; i += 2000 {
		writeLines(t, busy, lines(i, i+2000))
	}
	waitRecords(t, k.Bootstrap, "shared", few+many, 2*time.Minute)
	time.Sleep(time.Second) // a few checkpoints: the quiet log moves its offsets up
	p.kill()
	p = startShim(t, quiet+","+busy, k.Bootstrap, state, args...)
	deadline := time.Now().Add(time.Minute)
	var resumed []string
	for len(resumed) < 2 && time.Now().Before(deadline) {
		resumed = p.logLines("read_back_records=")
		time.Sleep(100 * time.Millisecond)
	}
	if len(resumed) != 2 {
		t.Fatalf("resuming lines: %v", resumed)
	}
	for _, l := range resumed {
		m := regexp.MustCompile(`read_back_records=(\d+)`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("no read_back_records in %q", l)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s", l)
		if strings.Contains(l, quiet) && n > 0 {
			t.Errorf("the quiet log read back %d records of the %d in the topic, want none", n, few+many)
		}
	}
	writeLines(t, quiet, lines(few+many, few+many+few))
	waitRecords(t, k.Bootstrap, "shared", few+many+few, time.Minute)
	p.stop(t)
	exactlyOnce(t, k.Bootstrap, "shared", few+many+few)
}
