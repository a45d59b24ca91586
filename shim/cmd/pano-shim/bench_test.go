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
// kcat (-P -l: one message per line, no parsing, no compression: its
// default) and with the shim (parsing, renaming, keyed by uid, origin
// header, idempotent), and reports the records/s and CPU µs/record of
// each. The ratio compares like with like: the shim without compression,
// as kcat; the shim with lz4 (its default) is reported beside it. Run it
// with -benchtime=1x; the line count can be lowered with PANO_BENCH_LINES,
// the topics' partitions (3) set with PANO_BENCH_PARTITIONS;
// PANO_BENCH_SHIM_ARGS adds flags to the shim runs ("{f}" and "{c}" in
// them stand for the format and the compression).
//
//	go test -run '^$' -bench VsKcat -benchtime=1x ./shim/cmd/pano-shim/
func BenchmarkVsKcat(b *testing.B) {
	kcat := testenv.RequireProgram(b, "kcat", "kcat")
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("PANO_BENCH_LINES")); err == nil && v > 0 {
		n = v
	}
	parts := 3
	if v, err := strconv.Atoi(os.Getenv("PANO_BENCH_PARTITIONS")); err == nil && v > 0 {
		parts = v
	}
	k := testenv.StartKafka(b)
	for _, format := range []string{"json", "tsv"} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			log := filepath.Join(dir, "dns.log")
			writeBenchLog(b, log, format, n)
			fi, _ := os.Stat(log)
			var kcatRate, shimRate, lz4Rate, kcatCPU, shimCPU, lz4CPU float64
			for i := 0; i < b.N; i++ {
				kt := "kcat-" + format + strconv.Itoa(i)
				k.CreateTopic(b, kt, parts)
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
				kcatRate += float64(n) / kd.Seconds()
				kcatCPU += kcpu.Seconds()
				b.Logf("%s, %d lines, %d MB: kcat %v (%.0f records/s, %.2f µs CPU/record)", format, n, fi.Size()>>20,
					kd.Round(time.Millisecond), float64(n)/kd.Seconds(), kcpu.Seconds()*1e6/float64(n))

				for _, compression := range []string{"none", "lz4"} {
					st := "xshim-" + compression + "-" + format + strconv.Itoa(i)
					k.CreateTopic(b, st, parts)
					sd, scpu := benchShim(b, log, k.Bootstrap, st, n, format, compression)
					b.Logf("%s, %d lines: shim (%s) %v (%.0f records/s, %.2f µs CPU/record)", format, n, compression,
						sd.Round(time.Millisecond), float64(n)/sd.Seconds(), scpu.Seconds()*1e6/float64(n))
					if compression == "none" {
						shimRate += float64(n) / sd.Seconds()
						shimCPU += scpu.Seconds()
					} else {
						lz4Rate += float64(n) / sd.Seconds()
						lz4CPU += scpu.Seconds()
					}
				}
			}
			runs := float64(b.N)
			b.ReportMetric(kcatRate/runs, "kcat_records/s")
			b.ReportMetric(shimRate/runs, "shim_records/s")
			b.ReportMetric(lz4Rate/runs, "shim_lz4_records/s")
			b.ReportMetric(shimRate/kcatRate, "shim/kcat")
			b.ReportMetric(kcatCPU*1e6/runs/float64(n), "kcat_cpu_µs/record")
			b.ReportMetric(shimCPU*1e6/runs/float64(n), "shim_cpu_µs/record")
			b.ReportMetric(lz4CPU*1e6/runs/float64(n), "shim_lz4_cpu_µs/record")
		})
	}
}

// benchShim runs the shim on log until topic holds n records and returns
// the time it took and the CPU the shim used.
func benchShim(b *testing.B, log, brokers, topic string, n int, format, compression string) (time.Duration, time.Duration) {
	start := time.Now()
	// "{f}" and "{c}" in the extra flags stand for the format and the
	// compression (for example "-cpuprofile /tmp/shim-{f}-{c}.prof").
	extra := strings.NewReplacer("{f}", format, "{c}", compression).Replace(os.Getenv("PANO_BENCH_SHIM_ARGS"))
	args := append([]string{"-topic", topic, "-log-level", "info", "-compression", compression}, strings.Fields(extra)...)
	p := startShim(b, log, brokers, b.TempDir(), args...)
	waitEnd(b, brokers, topic, int64(n), 5*time.Minute)
	d := time.Since(start)
	p.stop(b)
	if got := topicEnd(b, brokers, topic); got != int64(n) {
		b.Fatalf("shim: %d records in kafka, want %d", got, n)
	}
	return d, p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
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
	var last error
	for time.Now().Before(deadline) {
		var sum int64
		for _, p := range parts {
			off, err := c.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				// Right after the topic is created the metadata can be
				// stale (not the leader): refresh and look again.
				last = err
				_ = c.RefreshMetadata(topic)
				sum = -1
				break
			}
			sum += off
		}
		if sum >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("%s: fewer than %d records after %v (last error: %v)", topic, n, timeout, last)
}

func lineCount(b *testing.B, path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return int64(bytes.Count(data, []byte{'\n'}))
}
