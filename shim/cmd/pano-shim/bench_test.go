package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/pano-observability/pano/shim/kafka"
)

// BenchmarkVsKcat sends the same 1M-line dns.log to the same broker with
// kcat (-P -l: one message per line, no parsing, no compression: its
// default) and with the shim (checking each line, keyed by uid, origin
// header, idempotent), and reports the records/s and CPU µs/record of
// each, and the broker's CPU µs/record while each ran. kcat also runs as
// the shim sends (kcat-keyed: the uid as key, one header, idempotence).
// The ratio compares like with like: the shim without compression, as
// kcat; the shim with lz4 (its default) is reported beside it, and again
// on one core (lz4-1cpu: GOMAXPROCS=1, pinned to one CPU with taskset),
// the rate the bar of 150,000 JSON records/s is about. The broker has Kafka's default
// segment sizes and is warmed up by one uncounted turn. Each tool then
// runs PANO_BENCH_REPEAT times (3), in turns whose order rotates so that
// none always goes first, and the medians are reported. Run it
// with -benchtime=1x; the line count can be lowered with
// PANO_BENCH_LINES, the topics' partitions (3) set with
// PANO_BENCH_PARTITIONS; PANO_BENCH_SHIM_ARGS adds flags to the shim runs
// ("{f}" and "{c}" in them stand for the format and the compression).
//
//	go test -run '^$' -bench VsKcat -benchtime=1x ./shim/cmd/pano-shim/
func BenchmarkVsKcat(b *testing.B) {
	kcat := testenv.RequireProgram(b, "kcat", "kcat")
	n := envInt("PANO_BENCH_LINES", 1_000_000)
	parts := envInt("PANO_BENCH_PARTITIONS", 3)
	repeat := envInt("PANO_BENCH_REPEAT", 3)
	// Kafka's default segment and index sizes, as a real broker has them.
	// Each run's topic is deleted after it, its files soon after: their
	// dirty pages are dropped instead of being written back to disk
	// during a later run, whose CPU that would take.
	k := testenv.StartKafkaWith(b, "log.segment.bytes=1073741824", "log.index.size.max.bytes=10485760", "file.delete.delay.ms=500")
	for _, format := range []string{"json", "tsv"} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			log := filepath.Join(dir, "dns.log")
			writeBenchLog(b, log, format, n, false)
			fi, _ := os.Stat(log)
			keyed := filepath.Join(dir, "keyed.log")
			writeBenchLog(b, keyed, format, n, true)
			// One run of each contestant; rate in records/s, cpu (the
			// contestant's) and broker (the broker's) in seconds.
			type sample struct{ rate, cpu, broker float64 }
			runs := map[string][]sample{}
			contestants := []string{"kcat", "kcat-keyed", "none", "lz4", "lz4-1cpu"}
			// Turn -1 warms the broker's JVM up on every path (plain,
			// lz4, idempotent) and is not counted: whoever ran first
			// on a cold broker would pay for its compilation.
			for i := -1; i < b.N*repeat; i++ {
				for j := range contestants {
					who := contestants[(i+1+j)%len(contestants)]
					topic := fmt.Sprintf("%s-%s-%d", who, format, i+1)
					k.CreateTopic(b, topic, parts)
					var d, cpu time.Duration
					broker := k.CPU()
					switch who {
					case "kcat":
						d, cpu = benchKcat(b, kcat, log, k.Bootstrap, topic)
					case "kcat-keyed":
						// As the shim sends: keyed by uid, one header,
						// idempotent (the header is the same on every
						// record, and the line stays as it is).
						d, cpu = benchKcat(b, kcat, keyed, k.Bootstrap, topic, "-K", "\t",
							"-H", kafka.OriginHeader+"=01234567890123456789", "-X", "enable.idempotence=true")
					default:
						d, cpu = benchShim(b, log, k.Bootstrap, topic, n, format, who)
					}
					broker = k.CPU() - broker
					k.DeleteTopic(b, topic)
					time.Sleep(time.Second)
					if i < 0 {
						continue
					}
					b.Logf("%s, %d lines, %d MB, turn %d: %s %v (%.0f records/s, %.2f µs CPU/record, broker %.2f µs CPU/record)", format, n, fi.Size()>>20, i,
						label(who), d.Round(time.Millisecond), float64(n)/d.Seconds(), cpu.Seconds()*1e6/float64(n), broker.Seconds()*1e6/float64(n))
					runs[who] = append(runs[who], sample{float64(n) / d.Seconds(), cpu.Seconds(), broker.Seconds()})
				}
			}
			med := func(who string, f func(sample) float64) float64 {
				v := make([]float64, 0, len(runs[who]))
				for _, s := range runs[who] {
					v = append(v, f(s))
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			rate := func(s sample) float64 { return s.rate }
			cpu := func(s sample) float64 { return s.cpu * 1e6 / float64(n) }
			broker := func(s sample) float64 { return s.broker * 1e6 / float64(n) }
			b.ReportMetric(med("kcat", rate), "kcat_records/s")
			b.ReportMetric(med("none", rate), "shim_records/s")
			b.ReportMetric(med("lz4", rate), "shim_lz4_records/s")
			b.ReportMetric(med("lz4-1cpu", rate), "shim_lz4_1cpu_records/s")
			b.ReportMetric(med("lz4-1cpu", cpu), "shim_lz4_1cpu_cpu_µs/record")
			b.ReportMetric(med("none", rate)/med("kcat", rate), "shim/kcat")
			b.ReportMetric(med("kcat", cpu), "kcat_cpu_µs/record")
			b.ReportMetric(med("none", cpu), "shim_cpu_µs/record")
			b.ReportMetric(med("lz4", cpu), "shim_lz4_cpu_µs/record")
			b.ReportMetric(med("kcat-keyed", rate), "kcat_keyed_records/s")
			b.ReportMetric(med("kcat-keyed", cpu), "kcat_keyed_cpu_µs/record")
			b.ReportMetric(med("kcat", broker), "broker_kcat_cpu_µs/record")
			b.ReportMetric(med("none", broker), "broker_shim_cpu_µs/record")
			b.ReportMetric(med("lz4", broker), "broker_shim_lz4_cpu_µs/record")
		})
	}
}

func label(who string) string {
	if strings.HasPrefix(who, "kcat") {
		return who
	}
	return "shim (" + who + ")"
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchKcat sends log to topic with kcat (and extra flags) and returns
// the time it took and the CPU it used.
func benchKcat(b *testing.B, kcat, log, brokers, topic string, extra ...string) (time.Duration, time.Duration) {
	start := time.Now()
	kc := exec.Command(kcat, append([]string{"-P", "-b", brokers, "-t", topic, "-l", log}, extra...)...)
	out, err := kc.CombinedOutput()
	if err != nil {
		b.Fatalf("kcat: %v\n%s", err, out)
	}
	d := time.Since(start)
	// kcat sends every line, TSV header lines included.
	if got, want := topicEnd(b, brokers, topic), lineCount(b, log); got != want {
		b.Fatalf("kcat: %d records in kafka, want %d", got, want)
	}
	return d, kc.ProcessState.UserTime() + kc.ProcessState.SystemTime()
}

// benchShim runs the shim on log until topic holds n records and returns
// the time it took and the CPU the shim used.
func benchShim(b *testing.B, log, brokers, topic string, n int, format, who string) (time.Duration, time.Duration) {
	compression, oneCPU := strings.CutSuffix(who, "-1cpu")
	var prefix, env []string
	if oneCPU {
		prefix = []string{testenv.RequireProgram(b, "taskset", "util-linux"), "-c", "1"}
		env = []string{"GOMAXPROCS=1"}
	}
	start := time.Now()
	// "{f}" and "{c}" in the extra flags stand for the format and the
	// compression (for example "-cpuprofile /tmp/shim-{f}-{c}.prof").
	extra := strings.NewReplacer("{f}", format, "{c}", compression).Replace(os.Getenv("PANO_BENCH_SHIM_ARGS"))
	args := append([]string{"-shim-topic", topic, "-log-level", "info", "-kafka-compression", compression}, strings.Fields(extra)...)
	p := startShimCmd(b, prefix, env, log, brokers, b.TempDir(), args...)
	waitEnd(b, brokers, topic, int64(n), 5*time.Minute)
	d := time.Since(start)
	p.stop(b)
	if got := topicEnd(b, brokers, topic); got != int64(n) {
		b.Fatalf("shim: %d records in kafka, want %d", got, n)
	}
	return d, p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// writeBenchLog writes n records of format to path. keyed writes them as
// kcat -K reads them (the uid, a tab, the line) and without the TSV
// header.
func writeBenchLog(b *testing.B, path, format string, n int, keyed bool) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if format == "tsv" && !keyed {
		w.WriteString(tsvHeader("2026-11-26-02-00-00"))
	}
	for i := 0; i < n; i++ {
		if keyed {
			fmt.Fprintf(w, "C%09d\t", i)
		}
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		if err == nil && sum >= n {
			return
		}
		// Right after the topic is created the metadata can be stale.
		last = err
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
