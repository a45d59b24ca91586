package suite

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/bench/gobench"
)

func parse(t *testing.T, out string) *gobench.Report {
	t.Helper()
	rep, err := gobench.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestComparisonRow(t *testing.T) {
	rep := parse(t, `BenchmarkVsKcat/json-2 1 200000 shim_records/s 100000 kcat_records/s 2.5 shim_cpu_µs/record 1.25 kcat_cpu_µs/record
BenchmarkVsKcat/tsv-2 1 200000 shim_recs/s 100000 kcat_records/s
`)
	rows := shimRows
	got := rows[0].row(rep, nil)
	if got.Err != nil || got.Ours != "200,000 records/s" || got.Peer != "100,000 records/s" || got.Ratio != "2.00x" {
		t.Fatalf("json row = %+v", got)
	}
	want := "higher is better; CPU per record: shim 2.5 µs; kcat 1.25 µs; broker CPU per record: shim's: not reported (broker_shim_cpu_µs/record); kcat's: not reported (broker_kcat_cpu_µs/record)"
	if got.Notes != want {
		t.Errorf("notes = %q, want %q", got.Notes, want)
	}
	// The lz4 row needs its own metric.
	if got = rows[1].row(rep, nil); got.Err == nil || !strings.Contains(got.Err.Error(), `no "shim_lz4_records/s" metric`) {
		t.Errorf("json lz4 row = %+v", got)
	}
	// A renamed metric: the row's error names the one it looked for.
	got = rows[4].row(rep, nil)
	if got.Err == nil || !strings.Contains(got.Err.Error(), `no "shim_records/s" metric`) || !strings.Contains(got.Err.Error(), "shim_recs/s") {
		t.Errorf("tsv row = %+v", got)
	}
}

func TestRowPrefersRunError(t *testing.T) {
	runErr := errors.New("go test ./agent/: exit status 1: undefined: foo")
	got := captureRows[0].row(parse(t, "FAIL\n"), runErr)
	if !errors.Is(got.Err, runErr) {
		t.Errorf("nothing printed: err = %v, want the run's", got.Err)
	}
	got = captureRows[0].row(parse(t, "--- SKIP: BenchmarkCapture\n    bench_test.go:3: needs root\n"), nil)
	if got.Err == nil || !strings.Contains(got.Err.Error(), "skipped: bench_test.go:3: needs root") {
		t.Errorf("skipped: err = %v", got.Err)
	}
}

func TestCeiling(t *testing.T) {
	clean := func(rate int) Step { return Step{Rate: rate, Achieved: float64(rate) * 0.99} }
	lossy := Step{Rate: 10000, Achieved: 9000, Lost: 12}
	for _, c := range []struct {
		name      string
		steps     []Step
		best      int
		firstLoss int
		err       bool
	}{
		{"loss at the third", []Step{clean(2000), clean(5000), lossy, clean(20000)}, 5000, 10000, false},
		{"no loss", []Step{clean(2000), clean(5000)}, 5000, 0, false},
		{"loss at once", []Step{{Rate: 2000, Lost: 1}}, 0, 2000, false},
		{"stopped", []Step{clean(2000), {Rate: 5000, Err: errors.New("not run")}}, 2000, 0, false},
		{"nothing ran", []Step{{Rate: 2000, Err: errors.New("not run")}}, 0, 0, true},
		{"empty", nil, 0, 0, true},
	} {
		best, loss, err := Ceiling(c.steps)
		if (err != nil) != c.err {
			t.Errorf("%s: err = %v", c.name, err)
			continue
		}
		if got := rateOf(best); got != c.best {
			t.Errorf("%s: best = %d, want %d", c.name, got, c.best)
		}
		if got := rateOf(loss); got != c.firstLoss {
			t.Errorf("%s: first loss = %d, want %d", c.name, got, c.firstLoss)
		}
	}
}

func rateOf(s *Step) int {
	if s == nil {
		return 0
	}
	return s.Rate
}

func TestChainRow(t *testing.T) {
	rep := parse(t, `BenchmarkChain/workers=1/rate=5000-2 1 4998 queries/s 0 lost 3 agent-cpu-us/txn 30 zeek-cpu-us/txn 2 shim-cpu-us/txn 4 kafka-cpu-us/txn 5 flp-cpu-us/txn 0.5 prometheus-cpu-us/txn
BenchmarkChain/workers=1/rate=10000-2 1 8000 queries/s 37 lost
BenchmarkChain/workers=2/rate=5000-2 1 4990 queries/s 0 lost
`)
	row := chainRow(1, chainSteps(rep, 1, chainRates), 10*time.Second, nil)
	if row.Err != nil || row.Ours != "4,998 queries/s" || !strings.Contains(row.Notes, "first loss at 10,000 queries/s: 37 lost") ||
		!strings.Contains(row.Notes, "CPU-µs per query at 5,000 queries/s: agent 3.0, Zeek 30.0, shim 2.0, Kafka 4.0, flowlogs-pipeline 5.0, Prometheus 0.5") ||
		!strings.Contains(row.Name, "1 Zeek worker:") {
		t.Errorf("row = %+v", row)
	}
	row = chainRow(2, chainSteps(rep, 2, chainRates), 10*time.Second, nil)
	if row.Err != nil || row.Ours != "4,990 queries/s" || strings.Contains(row.Notes, "CPU") || !strings.Contains(row.Name, "2 Zeek workers") {
		t.Errorf("row without CPU = %+v", row)
	}
	row = chainRow(1, chainSteps(parse(t, "BenchmarkChain/workers=1/rate=5000-2 1 1998 queries/s\n"), 1, chainRates), time.Second, nil)
	if row.Err == nil || !strings.Contains(row.Err.Error(), `no "lost" metric`) {
		t.Errorf("row without lost = %+v", row)
	}
}

func TestCommand(t *testing.T) {
	g := shimBench(true)
	want := "PANO_BENCH_LINES=100000 go test -run '^$' -bench '^BenchmarkVsKcat$' -benchtime 1x -count 1 -timeout 8m0s -v ./shim/cmd/pano-shim/"
	if got := g.Command(); got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
}

func TestLastLines(t *testing.T) {
	if got := lastLines("a\nb\n\nc\nFAIL\texample.com/x\t1s\nFAIL\n", 2); got != ": b / c" {
		t.Errorf("lastLines = %q", got)
	}
	if got := lastLines("x\npanic: test timed out after 10m0s\n\ngoroutine 1 [running]:\nmain()\n", 2); got != ": panic: test timed out after 10m0s" {
		t.Errorf("lastLines after a panic = %q", got)
	}
	if got := lastLines("\n", 2); got != "" {
		t.Errorf("lastLines of nothing = %q", got)
	}
}

func TestGroupKeys(t *testing.T) {
	seen := map[string]bool{}
	for _, g := range Groups() {
		if g.Key == "" || seen[g.Key] || g.Run == nil {
			t.Errorf("group %+v", g)
		}
		seen[g.Key] = true
	}
}

func TestFLPRows(t *testing.T) {
	rep := parse(t, `BenchmarkFlowlogsPipelineConfigs/names=10000/pano-2 1 13366222459 ns/op 300000 records 40000 records/CPU-s 60000 records/s
BenchmarkFlowlogsPipelineConfigs/names=10000/original-2 1 19879193438 ns/op 300000 records 10000 records/CPU-s 15000 records/s
BenchmarkFlowlogsPipelineConfigs/names=10000/ingest-floor-2 1 5663407757 ns/op 300000 records 50000 records/CPU-s 55000 records/s
BenchmarkFlowlogsPipelineConfigs/names=10000/ratios-2 1 2234 ns/op 1.09 pano/floor 0.8 pano/floor-CPU 4 pano/original 4 pano/original-CPU
BenchmarkFlowlogsPipelineConfigs/names=300000/pano-2 1 1 ns/op 300000 records 40000 records/CPU-s 60000 records/s
BenchmarkFlowlogsPipelineConfigs/names=300000/original-2 1 1 ns/op 144281 records 1000 records/CPU-s 1200 records/s
`)
	row := flpRow(rep, nil, 10000, 90*time.Second)
	want := "higher is better; per CPU-second: ours 40,000 records/CPU-s, original 10,000 records/CPU-s (4.00x); ingest-only floor 55,000 records/s, 50,000 records/CPU-s"
	if row.Err != nil || row.Name != "flowlogs-pipeline, 10,000 distinct query names: PANO's configuration vs the ported original" ||
		row.Ours != "60,000 records/s" || row.Peer != "15,000 records/s" || row.Ratio != "4.00x" || row.Notes != want {
		t.Errorf("10,000 names: %+v", row)
	}
	// No floor in the run, and the original stopped at the limit.
	row = flpRow(rep, nil, 300000, 90*time.Second)
	if row.Err != nil || row.Ratio != "50.00x" ||
		!strings.Contains(row.Notes, "per CPU-second: not measured") ||
		!strings.Contains(row.Notes, "ingest-only floor: not reported") ||
		!strings.Contains(row.Notes, "original stopped at the 1m30s limit after 144,281 of 300,000 records: its rates are over those") ||
		strings.Contains(row.Notes, "pano stopped") {
		t.Errorf("300,000 names: %+v", row)
	}
	// A count that did not run: the row says what is missing.
	row = flpRow(rep, nil, 40000, 90*time.Second)
	if row.Err == nil || !strings.Contains(row.Err.Error(), "names=40000/pano") {
		t.Errorf("40,000 names: %+v", row)
	}
	runErr := errors.New("go test ./internal/analyticstest/: exit status 1")
	if row = flpRow(rep, runErr, 40000, 90*time.Second); !errors.Is(row.Err, runErr) {
		t.Errorf("40,000 names, the run failed: %+v", row)
	}
	g := flpGoBench(false)
	if want := "PANO_BENCH_NAMES=10000,60000,300000 PANO_BENCH_LIMIT=1m15s go test -run '^$' -bench '^BenchmarkFlowlogsPipelineConfigs$' -benchtime 1x -count 1 -timeout 20m0s -v ./internal/analyticstest/"; g.Command() != want {
		t.Errorf("Command = %q, want %q", g.Command(), want)
	}
}
