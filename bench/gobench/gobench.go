// Package gobench reads the text that `go test -bench` prints and looks
// up the metrics each benchmark reported, by benchmark name and unit.
//
// It accepts the output with or without -v and with the benchmarks' own
// prints mixed in: without -v, testing prints a benchmark's name before
// running it and its results after, so whatever the benchmark printed
// to stdout sits between the two; the parser remembers the name until
// the results arrive.
package gobench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Metric is one value a benchmark reported, such as 1234 records/s.
type Metric struct {
	Value float64
	Unit  string
}

// Result is one result line: a benchmark run of Iterations iterations.
type Result struct {
	// Name is the full name without the GOMAXPROCS suffix, e.g.
	// "BenchmarkServer/clients=4".
	Name string
	// Procs is the GOMAXPROCS suffix (0 when testing printed none).
	Procs      int
	Iterations int64
	Metrics    []Metric
}

// Outcome is a benchmark that did not produce results: testing's
// "--- FAIL:" or "--- SKIP:" line and the indented log under it.
type Outcome struct {
	Name    string
	Status  string // "FAIL" or "SKIP"
	Message string
}

// Report is everything Parse understood.
type Report struct {
	// Config holds the "key: value" header lines (goos, goarch, pkg, cpu).
	Config   map[string]string
	Results  []Result
	Outcomes []Outcome
}

// maxLine bounds one line; benchmarks can print long lines of their own.
const maxLine = 1 << 20

// Parse reads go test output. It fails only when r fails or a line is
// longer than 1 MiB; lines it does not recognise are ignored.
func Parse(r io.Reader) (*Report, error) {
	rep := &Report{Config: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var pending string // a benchmark name printed before its results
	var open *Outcome  // the FAIL/SKIP whose indented log follows
	for sc.Scan() {
		line := sc.Text()
		if open != nil {
			if strings.HasPrefix(line, "    ") {
				msg := strings.TrimSpace(line)
				if open.Message != "" {
					open.Message += "\n"
				}
				open.Message += msg
				continue
			}
			open = nil
		}
		if o, ok := parseOutcome(line); ok {
			if o.Status == "FAIL" || o.Status == "SKIP" {
				rep.Outcomes = append(rep.Outcomes, o)
				open = &rep.Outcomes[len(rep.Outcomes)-1]
			}
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if isBenchName(fields[0]) {
			if res, ok := parseResult(fields[0], fields[1:]); ok {
				rep.Results = append(rep.Results, res)
				pending = ""
				continue
			}
			// The name alone (the results come later) or the name
			// followed by the benchmark's own output.
			pending = fields[0]
			continue
		}
		if pending != "" {
			if res, ok := parseResult(pending, fields); ok {
				rep.Results = append(rep.Results, res)
				pending = ""
				continue
			}
		}
		if k, v, ok := parseConfig(line); ok {
			rep.Config[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return rep, fmt.Errorf("read benchmark output: a line is longer than %d bytes: %w", maxLine, err)
		}
		return rep, fmt.Errorf("read benchmark output: %w", err)
	}
	return rep, nil
}

func isBenchName(s string) bool {
	return strings.HasPrefix(s, "Benchmark") && (len(s) == len("Benchmark") || s[len("Benchmark")] != '_')
}

// parseOutcome recognises "--- FAIL: Name (0.00s)", "--- SKIP: Name" and
// "--- BENCH: Name" (the log of a benchmark that passed, with -v).
func parseOutcome(line string) (Outcome, bool) {
	// Without -v the line can start with the benchmark's name, printed
	// before it ran.
	i := strings.Index(line, "--- ")
	if i < 0 {
		return Outcome{}, false
	}
	if before := strings.TrimSpace(line[:i]); before != "" && !isBenchName(before) {
		return Outcome{}, false
	}
	rest := line[i+len("--- "):]
	status, name, ok := strings.Cut(rest, ": ")
	if !ok || (status != "FAIL" && status != "SKIP" && status != "BENCH" && status != "PASS") {
		return Outcome{}, false
	}
	name, _, _ = strings.Cut(strings.TrimSpace(name), " ")
	if !isBenchName(name) {
		return Outcome{}, false
	}
	n, _ := splitProcs(name)
	return Outcome{Name: n, Status: status}, true
}

// parseResult reads "Iterations value unit value unit ..." for name.
func parseResult(name string, f []string) (Result, bool) {
	if len(f) < 3 || len(f)%2 != 1 {
		return Result{}, false
	}
	iters, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || iters < 0 {
		return Result{}, false
	}
	res := Result{Iterations: iters}
	res.Name, res.Procs = splitProcs(name)
	for i := 1; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		unit := f[i+1]
		if _, err := strconv.ParseFloat(unit, 64); err == nil {
			return Result{}, false // a number where a unit should be: not a result line
		}
		res.Metrics = append(res.Metrics, Metric{Value: v, Unit: unit})
	}
	return res, true
}

// splitProcs separates testing's "-N" GOMAXPROCS suffix from a name.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return name, 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 || strings.ContainsAny(name[i+1:], "+-") {
		return name, 0
	}
	return name[:i], n
}

// parseConfig recognises the header lines testing prints (benchmarks'
// own "key: value" prints are not configuration).
func parseConfig(line string) (string, string, bool) {
	k, v, ok := strings.Cut(line, ": ")
	switch {
	case !ok:
		return "", "", false
	case k == "goos", k == "goarch", k == "pkg", k == "cpu":
		return k, strings.TrimSpace(v), true
	}
	return "", "", false
}

// Errors Value wraps, to tell a benchmark that did not run (or whose run
// printed nothing) from one that ran but reported other metrics.
var (
	ErrNoResult = errors.New("no result")
	ErrNoMetric = errors.New("metric not reported")
)

// Value returns the mean of unit over every result line of the benchmark
// named name (several with -count > 1). The error says what is missing:
// the benchmark (with its FAIL/SKIP message if testing printed one) or
// the metric (with the units the benchmark did report).
func (r *Report) Value(name, unit string) (float64, error) {
	var sum float64
	var n int
	var units []string
	found := false
	for _, res := range r.Results {
		if res.Name != name {
			continue
		}
		found = true
		for _, m := range res.Metrics {
			if m.Unit == unit {
				sum += m.Value
				n++
			}
			units = appendNew(units, m.Unit)
		}
	}
	if n > 0 {
		return sum / float64(n), nil
	}
	if found {
		return math.NaN(), fmt.Errorf("%s reported no %q metric (it reported %s): %w", name, unit, strings.Join(units, ", "), ErrNoMetric)
	}
	for _, o := range r.Outcomes {
		if o.Name == name || strings.HasPrefix(name, o.Name+"/") {
			msg := o.Message
			if msg == "" {
				msg = "no message"
			}
			verb := "failed"
			if o.Status == "SKIP" {
				verb = "skipped"
			}
			return math.NaN(), fmt.Errorf("%s: %s: %s", o.Name, verb, firstLines(msg, 3))
		}
	}
	return math.NaN(), fmt.Errorf("%w for %s in the output (results for: %s)", ErrNoResult, name, strings.Join(r.Names(), ", "))
}

// Names lists the benchmarks with results, sorted.
func (r *Report) Names() []string {
	var names []string
	for _, res := range r.Results {
		names = appendNew(names, res.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " / ")
}

// Format writes the results as testing prints them, one line each.
func (r *Report) Format(w io.Writer) error {
	for _, res := range r.Results {
		name := res.Name
		if res.Procs > 0 {
			name += "-" + strconv.Itoa(res.Procs)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s\t%d", name, res.Iterations)
		for _, m := range res.Metrics {
			fmt.Fprintf(&b, "\t%s %s", strconv.FormatFloat(m.Value, 'g', -1, 64), m.Unit)
		}
		if _, err := fmt.Fprintln(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}
