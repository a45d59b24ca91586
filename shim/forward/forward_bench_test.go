package forward

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/pano-observability/pano/shim/produce"
)

// BenchmarkForwardJSON runs the forwarder in-process on b.N JSON lines
// against a real broker, for profiling (-cpuprofile).
func BenchmarkForwardJSON(b *testing.B) {
	k := testenv.StartKafka(b)
	k.CreateTopic(b, "dns", 3)
	dir := b.TempDir()
	log := filepath.Join(dir, "dns.log")
	f, _ := os.Create(log)
	w := bufio.NewWriter(f)
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(w, `{"ts":1795642521.%06d,"uid":"C%09d","id.orig_h":"10.253.0.1","id.orig_p":%d,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":%d,"rtt":0.000412,"query":"name%d.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["192.0.2.10"],"TTLs":[300.0],"rejected":false}`+"\n", i%1000000, i, i%60000, i%65536, i)
	}
	w.Flush()
	f.Close()
	reg := prometheus.NewRegistry()
	fw, err := New(Config{Logs: []string{log}, StateDir: b.TempDir(), Registerer: reg,
		Kafka: produce.Config{Brokers: []string{k.Bootstrap}, Compression: "lz4", FlushLinger: 5 * time.Millisecond, MaxInFlight: 50000}})
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
	_ = sarama.OffsetNewest
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
