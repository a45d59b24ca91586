package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestKafkaInitCreatesEveryTopic runs kafka-init's command as compose
// hands it to bash, with a stand-in for the image's kafka-topics.sh that
// records its arguments: one create per topic of PANO_TOPICS, each with
// the broker and settings the service names; a failing create fails the
// service instead of being skipped.
func TestKafkaInitCreatesEveryTopic(t *testing.T) {
	bash := testenv.RequireProgram(t, "bash", "bash")
	p := mustLoad(t, testenv.RepoRoot(t))
	s := p.Services["kafka-init"]
	if len(s.Entrypoint) != 2 || s.Entrypoint[0] != "bash" || s.Entrypoint[1] != "-c" || len(s.Command) != 1 {
		t.Fatalf("kafka-init: entrypoint %q command %q, want bash -c and one script", s.Entrypoint, s.Command)
	}
	const tool = "/opt/kafka/bin/kafka-topics.sh"
	if !strings.Contains(s.Command[0], tool) {
		t.Fatalf("kafka-init does not run %s: %q", tool, s.Command[0])
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	stub := filepath.Join(dir, "kafka-topics.sh")
	run := func(exitCode string) (string, error) {
		t.Helper()
		os.Remove(calls)
		script := "#!/bin/bash\nprintf '%s\\n' \"$*\" >> " + calls + "\nexit " + exitCode + "\n"
		if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bash, "-c", strings.ReplaceAll(s.Command[0], tool, stub))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PANO_TOPICS=" + envOf(t, p, "kafka-init", "PANO_TOPICS")}
		out, err := cmd.CombinedOutput()
		b, _ := os.ReadFile(calls)
		t.Logf("kafka-init with a stand-in exiting %s: err=%v %s; calls:\n%s", exitCode, err, out, b)
		return string(b), err
	}
	got, err := run("0")
	if err != nil {
		t.Fatalf("kafka-init failed: %v", err)
	}
	init := kafkaInit(t, p)
	var want []string
	for _, topic := range init.topics {
		want = append(want, "--bootstrap-server="+init.bootstrap+" --create --if-not-exists --topic="+topic+" --partitions=1 --replication-factor=1")
	}
	if strings.TrimSpace(got) != strings.Join(want, "\n") {
		t.Fatalf("kafka-topics.sh calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	got, err = run("1")
	if err == nil {
		t.Fatal("kafka-init succeeded although creating a topic failed")
	}
	if n := strings.Count(got, "--create"); n != 1 {
		t.Fatalf("after a failed create kafka-init went on: %d creates", n)
	}
}
