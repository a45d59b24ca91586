package suite

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/pano-observability/pano/bench/gobench"
	"github.com/pano-observability/pano/bench/results"
)

// The whole chain's ramp. The benchmark in internal/e2etest runs, for
// each Zeek worker count in PANO_BENCH_WORKERS, the chain once with real
// Zeek (sub-benchmark "workers=W") and, for each total rate in
// PANO_BENCH_RATES (queries/s across its dnsperf instances), loads it for
// PANO_BENCH_STEP in a sub-benchmark named "rate=N" that reports
// "queries/s" (completed by dnsperf), "lost" (queries dnsperf sent that
// did not come out in Prometheus as answered or unanswered as dnsperf saw
// them) and STAGE-cpu-us/txn for each stage of chainStages. It may stop
// after the first rate that loses anything.
const (
	chainPkg   = "./internal/e2etest/"
	chainBench = "BenchmarkChain"
)

var (
	chainRates      = []int{5000, 10000, 15000, 20000, 25000}
	chainStep       = 10 * time.Second
	chainQuickRates = []int{2000, 5000, 10000}
	chainQuickStep  = 5 * time.Second
	chainWorkers    = []int{1, 2}
)

// chainStages are the stages whose CPU per DNS transaction the benchmark
// reports (its metric STAGE-cpu-us/txn), with the names the notes show.
var chainStages = []struct{ key, name string }{
	{"agent", "agent"}, {"zeek", "Zeek"}, {"shim", "shim"}, {"kafka", "Kafka"},
	{"flp", "flowlogs-pipeline"}, {"prometheus", "Prometheus"},
}

func chainGoBench(quick bool) GoBench {
	rates, step := chainRates, chainStep
	if quick {
		rates, step = chainQuickRates, chainQuickStep
	}
	return GoBench{
		Pkg: chainPkg, Bench: "^" + chainBench + "$", Benchtime: "1x", Timeout: 20 * time.Minute,
		Env: []string{"PANO_BENCH_RATES=" + commaList(rates), "PANO_BENCH_STEP=" + step.String(), "PANO_BENCH_WORKERS=" + commaList(chainWorkers)},
	}
}

// Step is one rate of the ramp.
type Step struct {
	Rate     int     // offered, queries/s
	Achieved float64 // completed, queries/s
	Lost     float64
	CPU      []float64 // CPU-µs per query of each of chainStages; nil if not reported
	Err      error     // the rate was not measured
}

// Ceiling reads the ramp: the highest rate reached with nothing lost at
// it and every rate below, and the first that lost something (nil if
// none did).
func Ceiling(steps []Step) (best *Step, firstLoss *Step, err error) {
	for i := range steps {
		s := &steps[i]
		if s.Err != nil {
			if best == nil {
				return nil, nil, fmt.Errorf("at %d queries/s: %w", s.Rate, s.Err)
			}
			return best, nil, nil // the ramp stopped: what it reached stands
		}
		if s.Lost > 0 {
			return best, s, nil
		}
		best = s
	}
	if best == nil {
		return nil, nil, fmt.Errorf("no rate measured")
	}
	return best, nil, nil
}

func chainSteps(rep *gobench.Report, workers int, rates []int) []Step {
	steps := make([]Step, len(rates))
	for i, rate := range rates {
		name := fmt.Sprintf("%s/workers=%d/rate=%d", chainBench, workers, rate)
		steps[i].Rate = rate
		var err error
		if steps[i].Achieved, err = rep.Value(name, "queries/s"); err != nil {
			steps[i].Err = err
			continue
		}
		if steps[i].Lost, err = rep.Value(name, "lost"); err != nil {
			steps[i].Err = err
			continue
		}
		cpu := make([]float64, len(chainStages))
		for j, st := range chainStages {
			if cpu[j], err = rep.Value(name, st.key+"-cpu-us/txn"); err != nil {
				cpu = nil
				break
			}
		}
		steps[i].CPU = cpu
	}
	return steps
}

func chainRowName(workers int) string {
	w := "1 Zeek worker"
	if workers != 1 {
		w = fmt.Sprintf("%d Zeek workers", workers)
	}
	return "whole chain, " + w + ": highest sustained queries/s with nothing lost"
}

func chainRow(workers int, steps []Step, step time.Duration, runErr error) results.Row {
	row := results.Row{Name: chainRowName(workers)}
	best, loss, err := Ceiling(steps)
	if err != nil {
		row.Err = rowErr(err, runErr)
		return row
	}
	var ramp []string
	for _, s := range steps {
		ramp = append(ramp, results.Number(float64(s.Rate)))
	}
	row.Ours = results.Value(best.Achieved, "queries/s")
	notes := []string{"higher is better", fmt.Sprintf("ramp %s queries/s, %v each, dnsperf -> eBPF agent (PCA_STREAMS=%d) -> Zeek (ZEEK_WORKERS=%d) -> ... -> Prometheus", strings.Join(ramp, "/"), step, workers, workers)}
	if loss != nil {
		notes = append(notes, fmt.Sprintf("first loss at %s queries/s: %s lost", results.Number(float64(loss.Rate)), results.Number(loss.Lost)))
	} else if best == &steps[len(steps)-1] {
		notes = append(notes, "nothing lost at the top of the ramp: the ceiling is higher")
	} else {
		notes = append(notes, "the ramp stopped early: "+firstErr(steps).Error())
	}
	if best.CPU != nil {
		var cpu []string
		for j, st := range chainStages {
			cpu = append(cpu, fmt.Sprintf("%s %.1f", st.name, best.CPU[j]))
		}
		notes = append(notes, fmt.Sprintf("CPU-µs per query at %s queries/s: %s", results.Number(float64(best.Rate)), strings.Join(cpu, ", ")))
	}
	row.Notes = strings.Join(notes, "; ")
	return row
}

func firstErr(steps []Step) error {
	for _, s := range steps {
		if s.Err != nil {
			return s.Err
		}
	}
	return fmt.Errorf("unknown")
}

func runChain(ctx context.Context, r *Runner) ([]results.Row, results.Method) {
	g := chainGoBench(r.Quick)
	method := results.Method{Rows: "chain", Command: g.Command()}
	if ok, err := r.hasBenchmark(ctx, g.Pkg, chainBench); err != nil || !ok {
		reason := fmt.Sprintf("%s has no %s (sub-benchmarks workers=W/rate=N reporting queries/s and lost)", strings.Trim(g.Pkg, "./"), chainBench)
		if err != nil {
			reason = err.Error()
		}
		r.Log.Warn("chain not measured", "reason", reason)
		var rows []results.Row
		for _, w := range chainWorkers {
			rows = append(rows, results.Row{Name: chainRowName(w), NotMeasured: reason})
		}
		return rows, method
	}
	rep, err := r.Run(ctx, g)
	rates, step := chainRates, chainStep
	if r.Quick {
		rates, step = chainQuickRates, chainQuickStep
	}
	var rows []results.Row
	for _, w := range chainWorkers {
		rows = append(rows, chainRow(w, chainSteps(rep, w, rates), step, err))
	}
	return rows, method
}

// hasBenchmark asks go test whether pkg defines the benchmark.
func (r *Runner) hasBenchmark(ctx context.Context, pkg, name string) (bool, error) {
	cmd := exec.CommandContext(ctx, r.Go, "test", "-list", "^"+name+"$", pkg)
	cmd.Dir = r.Root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("go test -list %s: %w%s", pkg, err, lastLines(out.String(), 2))
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.TrimSpace(l) == name {
			return true, nil
		}
	}
	return false, nil
}
