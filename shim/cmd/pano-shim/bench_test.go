package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/pano-observability/pano/internal/testenv"
)

// BenchmarkVsKcat sends the same 1M-line dns.log to the same broker with
// kcat (-P -l: one message per line, no parsing) and with the shim
// (parsing, renaming, keyed by uid, idempotent, lz4), and reports the
// records/s of each and their ratio. Run it with -benchtime=1x; the line
// count can be lowered with PANO_BENCH_LINES; PANO_BENCH_SHIM_ARGS adds
// flags to the shim (e.g. "-compression none").
//
//	go test -run '^$' -bench VsKcat -benchtime=1x ./shim/cmd/pano-shim/
func BenchmarkVsKcat(b *testing.B) {
	kcat := testenv.RequireProgram(b, "kcat", "kcat")
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("PANO_BENCH_LINES")); err == nil && v > 0 {
		n = v
	}
	k := testenv.StartKafka(b)
	for _, format := range []string{"json", "tsv"} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			log := filepath.Join(dir, "dns.log")
			writeBenchLog(b, log, format, n)
			fi, _ := os.Stat(log)
			var kcatRate, shimRate float64
			for i := 0; i < b.N; i++ {
				kt, st := "kcat-"+format+strconv.Itoa(i), "shim-"+format+strconv.Itoa(i)
				k.CreateTopic(b, kt, 3)
				k.CreateTopic(b, "x"+st, 3)

				start := time.Now()
				kc := exec.Command(kcat, "-P", "-b", k.Bootstrap, "-t", kt, "-l", log)
				out, err := kc.CombinedOutput()
				if err != nil {
					b.Fatalf("kcat: %v\n%s", err, out)
				}
				kd := time.Since(start)
				kcpu := kc.ProcessState.UserTime() + kc.ProcessState.SystemTime()
				// kcat sends every line, TSV header lines included.
				if got, want := topicEnd(b, k.Bootstrap, kt), lineCount(b, log); got != want {
					b.Fatalf("kcat: %d records in kafka, want %d", got, want)
				}

				start = time.Now()
				args := append([]string{"-topic", "x" + st, "-log-level", "info"}, strings.Fields(os.Getenv("PANO_BENCH_SHIM_ARGS"))...)
				p := startShim(b, log, k.Bootstrap, b.TempDir(), args...)
				waitEnd(b, k.Bootstrap, "x"+st, int64(n), 5*time.Minute)
				sd := time.Since(start)
				p.stop(b)
				scpu := p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
				if got := topicEnd(b, k.Bootstrap, "x"+st); got != int64(n) {
					b.Fatalf("shim: %d records in kafka, want %d", got, n)
				}
				kcatRate += float64(n) / kd.Seconds()
				shimRate += float64(n) / sd.Seconds()
				b.Logf("%s, %d lines, %d MB: kcat %v (%.0f records/s, %v CPU), shim %v (%.0f records/s, %v CPU)", format, n, fi.Size()>>20,
					kd.Round(time.Millisecond), float64(n)/kd.Seconds(), kcpu.Round(time.Millisecond),
					sd.Round(time.Millisecond), float64(n)/sd.Seconds(), scpu.Round(time.Millisecond))
			}
			b.ReportMetric(kcatRate/float64(b.N), "kcat_records/s")
			b.ReportMetric(shimRate/float64(b.N), "shim_records/s")
			b.ReportMetric(shimRate/kcatRate, "shim/kcat")
		})
	}
}

func writeBenchLog(b *testing.B, path, format string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if format == "tsv" {
		w.WriteString(tsvHeader("2026-11-26-02-00-00"))
	}
	for i := 0; i < n; i++ {
		if format == "tsv" {
			w.WriteString(tsvRecord(i))
		} else {
			w.WriteString(jsonRecord(i))
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// waitEnd polls the end offsets of topic with one client until they add
// up to n.
func waitEnd(b *testing.B, brokers, topic string, n int64, timeout time.Duration) {
	c, err := sarama.NewClient([]string{brokers}, testenv.KafkaSaramaConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var sum int64
		for _, p := range parts {
			off, err := c.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				b.Fatal(err)
			}
			sum += off
		}
		if sum >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("%s: fewer than %d records after %v", topic, n, timeout)
}

func lineCount(b *testing.B, path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return int64(bytes.Count(data, []byte{'\n'}))
}
