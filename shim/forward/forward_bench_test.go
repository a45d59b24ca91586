package forward

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/pano-observability/pano/shim/kafka"
)

// BenchmarkForwardJSON and BenchmarkForwardTSV run the forwarder
// in-process on b.N lines against a real broker, for profiling
// (-cpuprofile). The end-to-end comparison with kcat is in
// shim/cmd/pano-shim.
func BenchmarkForwardJSON(b *testing.B) { benchForward(b, false) }

func BenchmarkForwardTSV(b *testing.B) { benchForward(b, true) }

func benchForward(b *testing.B, tsv bool) {
	k := testenv.StartKafka(b)
	k.CreateTopic(b, "dns", 3)
	dir := b.TempDir()
	log := filepath.Join(dir, "dns.log")
	f, _ := os.Create(log)
	w := bufio.NewWriter(f)
	if tsv {
		w.WriteString("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n" +
			"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\n" +
			"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool\n")
	}
	for i := 0; i < b.N; i++ {
		if tsv {
			fmt.Fprintf(w, "1795642521.%06d\tC%09d\t10.253.0.1\t%d\t10.253.0.2\t53\tudp\t%d\t0.000412\tname%d.example.test\t1\tC_INTERNET\t1\tA\t0\tNOERROR\tT\tF\tT\tT\t0\t192.0.2.10\t300.000000\tF\n", i%1000000, i, i%60000, i%65536, i)
			continue
		}
		fmt.Fprintf(w, `{"ts":1795642521.%06d,"uid":"C%09d","id.orig_h":"10.253.0.1","id.orig_p":%d,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":%d,"rtt":0.000412,"query":"name%d.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["192.0.2.10"],"TTLs":[300.0],"rejected":false}`+"\n", i%1000000, i, i%60000, i%65536, i)
	}
	w.Flush()
	f.Close()
	reg := prometheus.NewRegistry()
	fw, err := New(Config{Logs: []string{log}, StateDir: b.TempDir(), Registerer: reg, PollInterval: 200 * time.Millisecond,
		CheckpointInterval: time.Second, MaxLineBytes: 1 << 20,
		Kafka: kafka.Config{Brokers: []string{k.Bootstrap}, Compression: "lz4", Linger: 5 * time.Millisecond, BatchBytes: 512 << 10, MaxBuffered: 50000}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	b.ResetTimer()
	go func() { done <- fw.Run(ctx) }()
	for counterValue(fw.metrics.RecordsProduced.WithLabelValues(log, "dns")) < float64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	cancel()
	<-done
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
