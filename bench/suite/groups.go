package suite

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pano-observability/pano/bench/gobench"
	"github.com/pano-observability/pano/bench/results"
)

// Group is what one -only name selects: one benchmark run, several rows.
type Group struct {
	Key   string
	About string
	Run   func(ctx context.Context, r *Runner) ([]results.Row, results.Method)
}

// Groups lists every group in the order they run: the lighter first, so
// that a quick look at the table does not wait for the heavy ones.
func Groups() []Group {
	return []Group{
		benchGroup("pcap", "PCAP-over-TCP server fan-out and stream readers", pcapBench, pcapRows),
		benchGroup("capture", "eBPF agent vs tcpdump on the same DNS traffic (root)", captureBench, captureRows),
		benchGroup("shim", "pano-shim vs kcat, dns.log into Kafka", shimBench, shimRows),
		{Key: "flp", About: "flowlogs-pipeline, PANO's configuration vs the ported original, per count of distinct query names", Run: runFLP},
		{Key: "chain", About: "the whole chain's highest sustained queries/s with nothing lost (root)", Run: runChain},
		benchGroup("http", "the web mix through agent and Zeek: payload budget vs full capture (root, Zeek)", httpBench, httpRows),
		benchGroup("cluster", "three nodes into a Kafka cluster: partition skew and lag with one and two flowlogs-pipeline replicas (root, Zeek)", clusterBench, clusterRows),
	}
}

// http: internal/e2etest/budget_bench_test.go, a ramp of 10 s steps per
// capture (3 s with -quick), with wire-sized and with GSO segments.
func httpBench(quick bool) GoBench {
	g := GoBench{Pkg: "./internal/e2etest/", Bench: "^BenchmarkHTTPBudget$", Benchtime: "1x", Timeout: 30 * time.Minute}
	if quick {
		g.Env = []string{"PANO_BENCH_HTTP_STEP=3s"}
	}
	return g
}

var httpRows = []comparison{httpRow("wire", "segments of one MSS, as on a wire"), httpRow("gso", "the veth's 64 KiB GSO segments, as in a pod")}

// httpRow compares the two captures' ramps over segments as mode sends them.
func httpRow(mode, about string) comparison {
	m := func(metric string) ref { return ref{"BenchmarkHTTPBudget", mode + "-" + metric} }
	return comparison{
		name:   "HTTP mix, " + about + ": highest request rate Zeek logs exactly, payload budget vs full capture",
		ours:   m("budget-exact-req/s"),
		peer:   m("full-exact-req/s"),
		better: "higher",
		show:   "requests/s",
		notes: []note{
			{label: "bytes to Zeek per request: budget", ref: m("budget-B/req"), unitText: "B"},
			{label: "full", ref: m("full-B/req"), unitText: "B"},
			{label: "Zeek CPU per request: budget", ref: m("budget-zeek-cpu-us/req"), unitText: "µs"},
			{label: "full", ref: m("full-zeek-cpu-us/req"), unitText: "µs"},
		},
	}
}

// cluster: internal/e2etest/cluster_test.go, 30 s of load per replica
// count (10 s with -quick).
func clusterBench(quick bool) GoBench {
	g := GoBench{Pkg: "./internal/e2etest/", Bench: "^BenchmarkManyNodes$", Benchtime: "1x", Timeout: 30 * time.Minute}
	if quick {
		g.Env = []string{"PANO_CLUSTER_DURATION=10s"}
	}
	return g
}

var clusterRows = []comparison{
	{
		name:   "3 nodes: lag from dnsperf's query to a Prometheus sample, 2 flowlogs-pipeline replicas vs 1",
		ours:   ref{"BenchmarkManyNodes/replicas=2", "s-lag-mean"},
		peer:   ref{"BenchmarkManyNodes/replicas=1", "s-lag-mean"},
		better: "lower",
		show:   "s",
		notes: []note{
			{label: "max lag: 2 replicas", ref: ref{"BenchmarkManyNodes/replicas=2", "s-lag-max"}, unitText: "s"},
			{label: "1 replica", ref: ref{"BenchmarkManyNodes/replicas=1", "s-lag-max"}, unitText: "s"},
			{label: "partition skew (max/mean of 6)", ref: ref{"BenchmarkManyNodes/replicas=2", "max/mean-partition"}},
		},
	},
}

// ref names one metric: the benchmark that reports it and its unit.
type ref struct{ bench, unit string }

// note is a metric shown in the notes column as "label value".
type note struct {
	label string
	ref
	unitText string // shown after the value; the unit itself when ""
}

// comparison is one row: ours against the peer (no peer: peer.bench "").
type comparison struct {
	name   string
	ours   ref
	peer   ref
	better string // "higher" or "lower"
	notes  []note
	show   string // unit shown after the values; the metric's unit when ""
	extra  string // a fixed note on what is measured
}

func (c comparison) row(rep *gobench.Report, runErr error) results.Row {
	row := results.Row{Name: c.name}
	show := func(v float64, unit string) string {
		if c.show != "" {
			unit = c.show
		}
		return results.Value(v, unit)
	}
	ours, err := rep.Value(c.ours.bench, c.ours.unit)
	if err != nil {
		row.Err = rowErr(err, runErr)
		return row
	}
	row.Ours = show(ours, c.ours.unit)
	notes := []string{c.better + " is better"}
	if c.peer.bench != "" {
		peer, err := rep.Value(c.peer.bench, c.peer.unit)
		if err != nil {
			row.Err = rowErr(err, runErr)
			return row
		}
		row.Peer = show(peer, c.peer.unit)
		row.Ratio = results.Ratio(ours, peer)
	}
	for _, n := range c.notes {
		v, err := rep.Value(n.bench, n.unit)
		unit := n.unit
		if n.unitText != "" {
			unit = n.unitText
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: not reported (%s)", n.label, n.unit))
			continue
		}
		notes = append(notes, n.label+" "+results.Value(v, unit))
	}
	if c.extra != "" {
		notes = append(notes, c.extra)
	}
	row.Notes = strings.Join(notes, "; ")
	return row
}

// rowErr prefers the run's own failure (build error, panic, timeout) when
// the benchmark printed nothing at all.
func rowErr(valueErr, runErr error) error {
	if runErr != nil && errors.Is(valueErr, gobench.ErrNoResult) {
		return runErr
	}
	return valueErr
}

func benchGroup(key, about string, bench func(quick bool) GoBench, rows []comparison) Group {
	return Group{Key: key, About: about, Run: func(ctx context.Context, r *Runner) ([]results.Row, results.Method) {
		g := bench(r.Quick)
		rep, err := r.Run(ctx, g)
		out := make([]results.Row, 0, len(rows))
		for _, c := range rows {
			out = append(out, c.row(rep, err))
		}
		return out, results.Method{Rows: key, Command: g.Command()}
	}}
}

// capture: agent/bench_test.go. Bounded by the benchmark itself (about
// a minute); -quick does not shorten it.
func captureBench(bool) GoBench {
	return GoBench{Pkg: "./agent/", Bench: "^BenchmarkCapture$", Benchtime: "1x", Timeout: 10 * time.Minute}
}

var captureRows = func() []comparison {
	var rows []comparison
	for _, sink := range []struct{ key, text string }{{"file", "a file"}, {"tcp", "a TCP socket"}} {
		rows = append(rows, comparison{
			name:   "capture CPU per packet: agent vs tcpdump writing " + sink.text,
			ours:   ref{"BenchmarkCapture", "agent-cpu-s/Mpkt-" + sink.key},
			peer:   ref{"BenchmarkCapture", "tcpdump-cpu-s/Mpkt-" + sink.key},
			better: "lower",
			show:   "CPU-µs/packet", // CPU seconds per million packets
			extra:  "process CPU only (the eBPF program and the packet socket's kernel copy are not counted)",
			notes: []note{
				{label: "dropped: agent", ref: ref{"BenchmarkCapture", "agent-drops-" + sink.key}, unitText: "packets"},
				{label: "tcpdump", ref: ref{"BenchmarkCapture", "tcpdump-drops-" + sink.key}, unitText: "packets"},
			},
		})
	}
	return append(rows, comparison{
		name:   "capture ceiling: agent alone, UDP flood, under 0.1% lost",
		ours:   ref{"BenchmarkCapture", "agent-ceiling-pkt/s"},
		better: "higher",
		show:   "packets/s",
		notes:  []note{},
	})
}()

// pcap: pcap-over-tcp/bench_test.go.
func pcapBench(quick bool) GoBench {
	g := GoBench{Pkg: "./pcap-over-tcp/", Bench: "^(BenchmarkServer|BenchmarkConsumer)$", Benchtime: "1s", Timeout: 5 * time.Minute}
	if quick {
		g.Benchtime = "50000x"
	}
	return g
}

var pcapRows = []comparison{
	{
		name:   "PCAP-over-TCP fan-out: per client with 4 clients vs with 1",
		ours:   ref{"BenchmarkServer/clients=4", "records/s/client"},
		peer:   ref{"BenchmarkServer/clients=1", "records/s/client"},
		better: "higher",
		show:   "records/s",
		notes: []note{
			{label: "total out: 4 clients", ref: ref{"BenchmarkServer/clients=4", "MB/s-total"}, unitText: "MB/s"},
			{label: "1 client", ref: ref{"BenchmarkServer/clients=1", "MB/s-total"}, unitText: "MB/s"},
		},
	},
	{
		name:   "PCAP-over-TCP stream consumer: our Reader vs tcpdump -r -",
		ours:   ref{"BenchmarkConsumer/reader", "records/s"},
		peer:   ref{"BenchmarkConsumer/tcpdump", "records/s"},
		better: "higher",
	},
	{
		name:   "PCAP-over-TCP stream consumer: our Reader vs gopacket pcapgo",
		ours:   ref{"BenchmarkConsumer/reader", "records/s"},
		peer:   ref{"BenchmarkConsumer/pcapgo", "records/s"},
		better: "higher",
	},
}

// shim: shim/cmd/pano-shim/bench_test.go; 1,000,000 dns.log lines per
// format (100,000 with -quick).
func shimBench(quick bool) GoBench {
	g := GoBench{Pkg: "./shim/cmd/pano-shim/", Bench: "^BenchmarkVsKcat$", Benchtime: "1x", Timeout: 20 * time.Minute}
	if quick {
		g.Env = []string{"PANO_BENCH_LINES=100000"}
		g.Timeout = 8 * time.Minute
	}
	return g
}

var shimRows = func() []comparison {
	var rows []comparison
	for _, f := range []struct{ key, text string }{{"json", "JSON"}, {"tsv", "TSV"}} {
		b := "BenchmarkVsKcat/" + f.key
		rows = append(rows, comparison{
			name:   "shim vs kcat: " + f.text + " dns.log into Kafka, no compression",
			ours:   ref{b, "shim_records/s"},
			peer:   ref{b, "kcat_records/s"},
			better: "higher",
			show:   "records/s",
			notes: []note{
				{label: "CPU per record: shim", ref: ref{b, "shim_cpu_µs/record"}, unitText: "µs"},
				{label: "kcat", ref: ref{b, "kcat_cpu_µs/record"}, unitText: "µs"},
				{label: "broker CPU per record: shim's", ref: ref{b, "broker_shim_cpu_µs/record"}, unitText: "µs"},
				{label: "kcat's", ref: ref{b, "broker_kcat_cpu_µs/record"}, unitText: "µs"},
			},
		}, comparison{
			name:   "shim with lz4 (its default) vs kcat (its default, none): " + f.text + " dns.log into Kafka",
			ours:   ref{b, "shim_lz4_records/s"},
			peer:   ref{b, "kcat_records/s"},
			better: "higher",
			show:   "records/s",
			notes: []note{
				{label: "CPU per record: shim", ref: ref{b, "shim_lz4_cpu_µs/record"}, unitText: "µs"},
				{label: "broker CPU per record: shim's", ref: ref{b, "broker_shim_lz4_cpu_µs/record"}, unitText: "µs"},
			},
		}, comparison{
			name:   "shim on one core (lz4, GOMAXPROCS=1, pinned to one CPU) vs kcat (its default, none, any core): " + f.text + " dns.log into Kafka; the bar is 150,000 JSON records/s",
			ours:   ref{b, "shim_lz4_1cpu_records/s"},
			peer:   ref{b, "kcat_records/s"},
			better: "higher",
			show:   "records/s",
			notes: []note{
				{label: "CPU per record: shim", ref: ref{b, "shim_lz4_1cpu_cpu_µs/record"}, unitText: "µs"},
			},
		}, comparison{
			name:   "shim vs kcat sending as the shim does (uid key, a header, idempotent): " + f.text + " dns.log, no compression",
			ours:   ref{b, "shim_records/s"},
			peer:   ref{b, "kcat_keyed_records/s"},
			better: "higher",
			show:   "records/s",
			notes: []note{
				{label: "CPU per record: kcat", ref: ref{b, "kcat_keyed_cpu_µs/record"}, unitText: "µs"},
			},
		})
	}
	return rows
}()

// flp: internal/analyticstest/bench_test.go. For each count of distinct
// query names in PANO_BENCH_NAMES, 300,000 records through each
// configuration in sub-benchmarks names=N/{pano,original,ingest-floor},
// each reporting records/s, records/CPU-s and records (how many it
// processed: fewer than all when it reached PANO_BENCH_LIMIT, and its
// rates are then over those). One row per count.
const (
	flpPkg     = "./internal/analyticstest/"
	flpBench   = "BenchmarkFlowlogsPipelineConfigs"
	flpRecords = 300_000
)

var (
	// The benchmark's own default (see there): 10,000, 60,000 (where the
	// original runs at about 3,000 records/s on two cores) and 300,000
	// (every query a different name).
	flpNames      = []int{10_000, 60_000, 300_000}
	flpLimit      = 75 * time.Second
	flpQuickNames = []int{10_000, 60_000}
	flpQuickLimit = 30 * time.Second
)

func flpSweep(quick bool) ([]int, time.Duration) {
	if quick {
		return flpQuickNames, flpQuickLimit
	}
	return flpNames, flpLimit
}

func flpGoBench(quick bool) GoBench {
	names, limit := flpSweep(quick)
	return GoBench{
		Pkg: flpPkg, Bench: "^" + flpBench + "$", Benchtime: "1x", Timeout: 20 * time.Minute,
		Env: []string{"PANO_BENCH_NAMES=" + commaList(names), "PANO_BENCH_LIMIT=" + limit.String()},
	}
}

func runFLP(ctx context.Context, r *Runner) ([]results.Row, results.Method) {
	g := flpGoBench(r.Quick)
	rep, err := r.Run(ctx, g)
	names, limit := flpSweep(r.Quick)
	rows := make([]results.Row, 0, len(names))
	for _, n := range names {
		rows = append(rows, flpRow(rep, err, n, limit))
	}
	return rows, results.Method{Rows: "flp", Command: g.Command()}
}

// flpRow is one count of names: records/s of ours against the original's,
// and in the notes the same per CPU-second, the ingest-only floor, and
// which configuration stopped at the limit.
func flpRow(rep *gobench.Report, runErr error, names int, limit time.Duration) results.Row {
	sub := fmt.Sprintf("%s/names=%d/", flpBench, names)
	c := comparison{
		name:   fmt.Sprintf("flowlogs-pipeline, %s distinct query names: PANO's configuration vs the ported original", results.Number(float64(names))),
		ours:   ref{sub + "pano", "records/s"},
		peer:   ref{sub + "original", "records/s"},
		better: "higher",
	}
	row := c.row(rep, runErr)
	if row.Err != nil {
		return row
	}
	notes := []string{row.Notes}
	cpu := map[string]float64{}
	for _, cfg := range []string{"pano", "original", "ingest-floor"} {
		if v, err := rep.Value(sub+cfg, "records/CPU-s"); err == nil && v > 0 {
			cpu[cfg] = v
		}
	}
	if len(cpu) == 3 {
		notes = append(notes, fmt.Sprintf("per CPU-second: ours %s, original %s (%s)",
			results.Value(cpu["pano"], "records/CPU-s"), results.Value(cpu["original"], "records/CPU-s"), results.Ratio(cpu["pano"], cpu["original"])))
	} else {
		notes = append(notes, "per CPU-second: not measured")
	}
	floor := "ingest-only floor: not reported"
	if v, err := rep.Value(sub+"ingest-floor", "records/s"); err == nil {
		floor = "ingest-only floor " + results.Value(v, "records/s")
		if cpu["ingest-floor"] > 0 {
			floor += ", " + results.Value(cpu["ingest-floor"], "records/CPU-s")
		}
	}
	notes = append(notes, floor)
	for _, cfg := range []string{"pano", "original", "ingest-floor"} {
		if n, err := rep.Value(sub+cfg, "records"); err == nil && n < flpRecords {
			notes = append(notes, fmt.Sprintf("%s stopped at the %v limit after %s of %s records: its rates are over those",
				cfg, limit, results.Number(n), results.Number(flpRecords)))
		}
	}
	row.Notes = strings.Join(notes, "; ")
	return row
}

// commaList writes numbers as the benchmarks' environment variables take
// them: "2000,5000".
func commaList(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
