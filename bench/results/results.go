// Package results holds the benchmark table (one row per comparison:
// ours, the peer's, their ratio) and writes it as aligned text for a
// terminal and as Markdown for the results file.
package results

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pano-observability/pano/bench/machine"
)

// Row is one comparison. When Err is set the row failed and Err says
// why; when NotMeasured is set it was not run, for that reason.
type Row struct {
	Name        string
	Ours        string
	Peer        string
	Ratio       string
	Notes       string
	Err         error
	NotMeasured string
}

func (r Row) cells() []string {
	if r.NotMeasured != "" {
		return []string{r.Name, "-", "-", "-", "not measured: " + r.NotMeasured}
	}
	if r.Err != nil {
		return []string{r.Name, "-", "-", "-", "error: " + r.Err.Error()}
	}
	return []string{r.Name, dash(r.Ours), dash(r.Peer), dash(r.Ratio), r.Notes}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var header = []string{"row", "ours", "peer", "ratio", "notes"}

// WriteText writes the rows as columns aligned with spaces.
func WriteText(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		c := r.cells()
		for i := range c {
			c[i] = oneLine(c[i])
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	return tw.Flush()
}

// Method says how a row group was measured: the command that reproduces it.
type Method struct {
	Rows    string
	Command string
}

// Document is the results file.
type Document struct {
	Date    time.Time
	Machine machine.Info
	Quick   bool
	Rows    []Row
	Methods []Method
	Elapsed time.Duration
}

// WriteMarkdown writes the document.
func WriteMarkdown(w io.Writer, d Document) error {
	var b strings.Builder
	b.WriteString("# Benchmark results\n\n")
	b.WriteString("Written by `make bench` (`go run ./bench/cmd/panobench`); do not edit by hand.\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", d.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", d.Machine)
	mode := "full"
	if d.Quick {
		mode = "quick (-quick: smaller inputs, shorter runs; indicative only)"
	}
	fmt.Fprintf(&b, "- Mode: %s; rows run one after another, never in parallel; %s in all\n\n", mode, d.Elapsed.Round(time.Second))
	b.WriteString("Each row runs ours and its peer in the same run on the same input. ")
	b.WriteString("The ratio is ours divided by the peer's; the notes say whether higher or lower is better. ")
	b.WriteString("The machine may have been shared with other work while it ran.\n\n")
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range d.Rows {
		c := r.cells()
		for i := range c {
			c[i] = mdCell(c[i])
		}
		b.WriteString("| " + strings.Join(c, " | ") + " |\n")
	}
	if len(d.Methods) > 0 {
		b.WriteString("\n## How each row is measured\n\n")
		for _, m := range d.Methods {
			fmt.Fprintf(&b, "- %s: `%s`\n", m.Rows, m.Command)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func mdCell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

// Value formats a measurement with its unit: whole numbers with
// thousands separated from 100 up, three significant digits below.
func Value(v float64, unit string) string {
	return Number(v) + " " + unit
}

// Number formats v as Value does, without a unit.
func Number(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case math.Abs(v) >= 100:
		return thousands(int64(math.Round(v)))
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// Ratio formats ours/peer as "1.23x"; "-" when it is not a number.
func Ratio(ours, peer float64) string {
	r := ours / peer
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
