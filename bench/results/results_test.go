package results

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/bench/machine"
)

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{
		451868.4:    "451,868",
		-1234567:    "-1,234,567",
		1000:        "1,000",
		999.6:       "1,000",
		123.4:       "123",
		12.345:      "12.3",
		0.0123456:   "0.0123",
		0:           "0",
		42:          "42",
		math.Inf(1): "+Inf",
	} {
		if got := Number(v); got != want {
			t.Errorf("Number(%v) = %q, want %q", v, got, want)
		}
	}
	if got := Number(math.NaN()); got != "NaN" {
		t.Errorf("Number(NaN) = %q", got)
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(3, 2); got != "1.50x" {
		t.Errorf("Ratio = %q", got)
	}
	if got := Ratio(3, 0); got != "-" {
		t.Errorf("Ratio(3, 0) = %q", got)
	}
}

var rows = []Row{
	{Name: "shim vs kcat", Ours: "100 records/s", Peer: "50 records/s", Ratio: "2.00x", Notes: "higher is better | lz4\nnext"},
	{Name: "chain", Err: errors.New("no broker")},
	{Name: "later", NotMeasured: "no benchmark yet"},
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if !strings.HasPrefix(lines[0], "row ") || !strings.Contains(lines[1], "higher is better | lz4 next") || !strings.Contains(lines[2], "error: no broker") {
		t.Errorf("table:\n%s", b.String())
	}
	// Columns aligned: "ours" starts where the values do.
	if i := strings.Index(lines[0], "ours"); i != strings.Index(lines[1], "100 records/s") {
		t.Errorf("not aligned:\n%s", b.String())
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	d := Document{
		Date:    time.Date(2026, 11, 26, 3, 40, 0, 0, time.UTC),
		Machine: machine.Info{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "Linux 6.1 x86_64"},
		Rows:    rows,
		Methods: []Method{{Rows: "shim", Command: "go test -bench X ./shim/"}},
		Elapsed: 90 * time.Second,
	}
	if err := WriteMarkdown(&b, d); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"- Date: 2026-11-26 03:40 UTC\n",
		"- Machine: 2 CPUs (AMD EPYC), Linux 6.1 x86_64\n",
		"| row | ours | peer | ratio | notes |\n|---|---|---|---|---|\n",
		`| shim vs kcat | 100 records/s | 50 records/s | 2.00x | higher is better \| lz4 next |`,
		"| chain | - | - | - | error: no broker |",
		"| later | - | - | - | not measured: no benchmark yet |",
		"- shim: `go test -bench X ./shim/`",
		"1m30s in all",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
