package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pano-observability/pano/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// shimBinary builds the real command once per test run.
func shimBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pano-shim-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pano-shim")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// shimProc is one run of the binary.
type shimProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	metrics string // http://addr/metrics once known
}

func startShim(t testing.TB, logs, brokers, stateDir string, extra ...string) *shimProc {
	t.Helper()
	return startShimEnv(t, nil, logs, brokers, stateDir, extra...)
}

// startShimEnv is startShim with more environment variables
// ("NAME=value"), for settings such as a password that should not be on
// the command line.
func startShimEnv(t testing.TB, env []string, logs, brokers, stateDir string, extra ...string) *shimProc {
	t.Helper()
	return startShimCmd(t, nil, env, logs, brokers, stateDir, extra...)
}

// startShimCmd is startShimEnv run by a wrapper command (prefix, for
// example taskset), if any.
func startShimCmd(t testing.TB, prefix, env []string, logs, brokers, stateDir string, extra ...string) *shimProc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "shim.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-shim-logs", logs, "-kafka-brokers", brokers, "-shim-state-dir", stateDir, "-shim-metrics-addr", "127.0.0.1:0",
		"-shim-poll-interval", "50ms", "-log-level", "debug"}, extra...)
	argv := append(append(append([]string(nil), prefix...), shimBinary(t)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &shimProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("--- shim log %s:\n%s", logPath, b)
		}
	})
	return p
}

func (p *shimProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *shimProc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("shim exited with %v", p.cmd.ProcessState)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("shim did not stop within 60s of SIGTERM")
	}
}

var metricsAddrRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// metric returns the sum of the samples of name from the shim's endpoint.
func (p *shimProc) metric(t testing.TB, name string) float64 {
	t.Helper()
	if p.metrics == "" {
		b, _ := os.ReadFile(p.logPath)
		m := metricsAddrRE.FindSubmatch(b)
		if m == nil {
			return -1
		}
		p.metrics = "http://" + string(m[1]) + "/metrics"
	}
	resp, err := http.Get(p.metrics)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
			found = true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// healthz returns the status and body of the shim's /healthz.
func (p *shimProc) healthz(t testing.TB) (int, string) {
	t.Helper()
	if p.metric(t, "pano_shim_in_flight_records") < 0 {
		t.Fatalf("no metrics endpoint")
	}
	resp, err := http.Get(strings.TrimSuffix(p.metrics, "/metrics") + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// topicEnd returns the number of records in topic (sum of end offsets).
func topicEnd(t testing.TB, brokers, topic string) int64 {
	t.Helper()
	var n int64
	for _, off := range testenv.EndOffsets(t, brokers, topic) {
		n += off
	}
	return n
}

// waitRecords waits until topic holds at least n records.
func waitRecords(t testing.TB, brokers, topic string, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := topicEnd(t, brokers, topic)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d records after %v, want %d", topic, got, timeout, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// consumeAll reads every record of topic.
func consumeAll(t testing.TB, brokers, topic string) []*kgo.Record {
	t.Helper()
	return testenv.ReadTopic(t, brokers, topic)
}

// appendFile appends data to path (creating it) and closes it, as a
// log writer would between flushes.
func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, dst, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
}

// tsvHeader is a dns.log header as Zeek writes it.
func tsvHeader(open string) string {
	return "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n#open\t" + open + "\n" +
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\n" +
		"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool\n"
}

// tsvRecord is record i of a synthetic stream; its uid is unique.
func tsvRecord(i int) string {
	rtt, answers, ttls, rcode := "0.000412", "192.0.2.10", "300.000000", "0\tNOERROR"
	if i%5 == 4 {
		rtt, answers, ttls, rcode = "-", "-", "-", "3\tNXDOMAIN"
	}
	return fmt.Sprintf("%d.%06d\tC%09d\t10.253.0.1\t%d\t10.253.0.2\t53\tudp\t%d\t%s\tname%d.example.test\t1\tC_INTERNET\t1\tA\t%s\tT\tF\tT\tT\t0\t%s\t%s\tF\n",
		1795642521+i/1000, i%1000*1000, i, 1024+i%60000, i%65536, rtt, i, rcode, answers, ttls)
}

// jsonRecord is record i as Zeek's JSON writer would write it.
func jsonRecord(i int) string {
	return fmt.Sprintf(`{"ts":%d.%06d,"uid":"C%09d","id.orig_h":"10.253.0.1","id.orig_p":%d,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":%d,"rtt":0.000412,"query":"name%d.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["192.0.2.10"],"TTLs":[300.0],"rejected":false}`+"\n",
		1795642521+i/1000, i%1000*1000, i, 1024+i%60000, i%65536, i)
}

// exactlyOnce checks that topic holds records 0..n-1 once each, by uid
// and ts.
func exactlyOnce(t testing.TB, brokers, topic string, n int) {
	t.Helper()
	msgs := consumeAll(t, brokers, topic)
	count := map[string]int{}
	for _, m := range msgs {
		var r struct {
			UID string  `json:"uid"`
			TS  float64 `json:"ts"`
		}
		if err := jsonUnmarshal(m.Value, &r); err != nil {
			t.Fatalf("record %s/%d/%d: %v: %s", topic, m.Partition, m.Offset, err, m.Value)
		}
		if string(m.Key) != r.UID {
			t.Fatalf("key %q, uid %q", m.Key, r.UID)
		}
		count[fmt.Sprintf("%s/%.6f", r.UID, r.TS)]++
	}
	var missing, dup []string
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("C%09d/%d.%06d", i, 1795642521+i/1000, i%1000*1000)
		switch c := count[k]; {
		case c == 0:
			missing = append(missing, k)
		case c > 1:
			dup = append(dup, fmt.Sprintf("%s x%d", k, c))
		}
		delete(count, k)
	}
	if len(missing) > 0 || len(dup) > 0 || len(count) > 0 || len(msgs) != n {
		t.Fatalf("%d records for %d written: %d missing (first %v), %d duplicated (first %v), %d unexpected",
			len(msgs), n, len(missing), head(missing), len(dup), head(dup), len(count))
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func writeLines(t testing.TB, path string, lines []string) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
	}
	appendFile(t, path, b.Bytes())
}

// logLines returns the lines of the shim's log that contain substr.
func (p *shimProc) logLines(substr string) []string {
	b, _ := os.ReadFile(p.logPath)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
