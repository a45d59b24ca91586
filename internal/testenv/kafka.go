package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Kafka is a single-node Apache Kafka broker (KRaft: broker and controller
// in one process) on loopback, with its data in the test's temporary
// directory.
type Kafka struct {
	Bootstrap string // "127.0.0.1:port"

	home     string // install: home/libs/*.jar
	dir      string // config, data and log of this broker
	logPath  string
	javaPath string
	extra    kafkaExtra // secured listeners and their settings, if any

	mu   sync.Mutex
	proc *svcProc // nil while stopped
}

// kafkaReadyTimeout is generous: the JVM starts slowly on a loaded machine.
const kafkaReadyTimeout = 3 * time.Minute

// KafkaSaramaConfig returns a sarama configuration for the test broker.
// It sets the protocol version: Kafka 4 removed the oldest request versions
// (KIP-896), which sarama's default (2.8) still sends for some requests.
func KafkaSaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = "pano-test"
	return cfg
}

// StartKafka starts a broker on free loopback ports and returns when it
// answers metadata requests. It is stopped by t.Cleanup and its log is
// printed if the test fails. Topics are never created automatically.
func StartKafka(t testing.TB) *Kafka {
	t.Helper()
	return startKafka(t, nil)
}

// StartKafkaWith is StartKafka with more server.properties lines, which
// override the test defaults: benchmarks use it for a broker sized like a
// real one (the tests' 1 MiB segments make the broker roll and flush a
// segment per MiB, which costs more than the clients being compared).
func StartKafkaWith(t testing.TB, props ...string) *Kafka {
	t.Helper()
	return startKafka(t, func() kafkaExtra { return kafkaExtra{props: props} })
}

// kafkaExtra is what a variant of the broker adds to the plain one's
// configuration.
type kafkaExtra struct {
	listeners  []kafkaListener
	props      []string // more server.properties lines
	formatArgs []string // more arguments to the storage format
}

// kafkaListener is one more listener on loopback.
type kafkaListener struct {
	name, protocol string // listener name and its security protocol
	port           int
}

// startKafka is StartKafka with extra configuration. plan, if not nil, is
// called on every start attempt so that it picks fresh ports.
func startKafka(t testing.TB, plan func() kafkaExtra) *Kafka {
	t.Helper()
	java := RequireProgram(t, "java", "openjdk-17-jre-headless")
	home := kafkaHome(t)
	var lastErr error
	for attempt := 0; attempt < svcStartAttempts; attempt++ {
		k := &Kafka{home: home, javaPath: java, dir: t.TempDir()}
		k.logPath = filepath.Join(k.dir, "kafka.log")
		port, ctrlPort := FreePort(t), FreePort(t)
		k.Bootstrap = net4(port)
		if plan != nil {
			k.extra = plan()
		}
		start := time.Now()
		if err := k.configure(port, ctrlPort); err != nil {
			t.Fatalf("kafka: %v", err)
		}
		formatted := time.Now()
		err := k.run()
		if err == nil {
			t.Logf("kafka %s ready on %s in %v (storage format %v, broker start %v)", filepath.Base(home), k.Bootstrap,
				time.Since(start).Round(time.Millisecond), formatted.Sub(start).Round(time.Millisecond), time.Since(formatted).Round(time.Millisecond))
			svcLogOnFailure(t, "kafka", k.logPath, 300)
			t.Cleanup(func() { k.halt() })
			return k
		}
		lastErr = err
		if !svcPortInUse(k.logPath) {
			t.Logf("--- kafka log (%s):\n%s", k.logPath, svcLogTail(k.logPath, 300))
			break
		}
	}
	t.Fatalf("kafka: %v", lastErr)
	return nil
}

func net4(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

var kafkaVersionRE = regexp.MustCompile(`<kafka\.version>([^<]+)</kafka\.version>`)

// kafkaHome finds the jars that make tools fetched for the version pinned
// in tools/kafka/pom.xml.
func kafkaHome(t testing.TB) string {
	t.Helper()
	pom := filepath.Join(RepoRoot(t), "tools", "kafka", "pom.xml")
	b, err := os.ReadFile(pom)
	if err != nil {
		t.Fatalf("kafka version: %v", err)
	}
	m := kafkaVersionRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("kafka version: no <kafka.version> in %s", pom)
	}
	home := filepath.Join(CacheDir(t), "kafka-"+string(m[1]))
	if _, err := os.Stat(filepath.Join(home, ".complete")); err != nil {
		Missing(t, "Kafka "+string(m[1])+" jars not in "+home+": run make tools")
	}
	return home
}

// configure writes server.properties and log4j2.properties and formats the
// storage directory.
func (k *Kafka) configure(port, ctrlPort int) error {
	listeners := []string{"PLAINTEXT://" + net4(port), "CONTROLLER://" + net4(ctrlPort)}
	advertised := []string{"PLAINTEXT://" + net4(port)}
	protocols := []string{"PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"}
	for _, l := range k.extra.listeners {
		listeners = append(listeners, l.name+"://"+net4(l.port))
		advertised = append(advertised, l.name+"://"+net4(l.port))
		protocols = append(protocols, l.name+":"+l.protocol)
	}
	props := []string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@127.0.0.1:%d", ctrlPort),
		"listeners=" + strings.Join(listeners, ","),
		"advertised.listeners=" + strings.Join(advertised, ","),
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"listener.security.protocol.map=" + strings.Join(protocols, ","),
		"log.dirs=" + filepath.Join(k.dir, "data"),
		// Tests create their topics; a typo must fail, not create one.
		"auto.create.topics.enable=false",
		"num.partitions=1",
		"default.replication.factor=1",
		// One node: every internal topic has one replica, and few
		// partitions so that creating them on first use is quick.
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=1",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"transaction.state.log.num.partitions=1",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		// Consumer groups start at once instead of waiting for more members.
		"group.initial.rebalance.delay.ms=0",
		// Small segments and indexes: little disk per test.
		"log.segment.bytes=1048576",
		"log.index.size.max.bytes=1048576",
	}
	props = append(props, k.extra.props...)
	if err := os.WriteFile(k.path("server.properties"), []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	log4j := strings.Join([]string{
		"appender.out.type=Console",
		"appender.out.name=out",
		"appender.out.layout.type=PatternLayout",
		"appender.out.layout.pattern=[%d] %p %m (%c)%n",
		"rootLogger.level=INFO",
		"rootLogger.appenderRef.out.ref=out",
		// The full configuration dumps are a thousand lines per start.
		"logger.config.name=org.apache.kafka.common.config.AbstractConfig",
		"logger.config.level=WARN",
	}, "\n") + "\n"
	if err := os.WriteFile(k.path("log4j2.properties"), []byte(log4j), 0o644); err != nil {
		return err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	// Clear the top bit so the id never starts with '-' or '_': the storage
	// tool would read a leading '-' as an option.
	id[0] &= 0x7f
	clusterID := base64.RawURLEncoding.EncodeToString(id)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"format", "--cluster-id", clusterID, "--config", k.path("server.properties")}, k.extra.formatArgs...)
	cmd := k.java(ctx, "kafka.tools.StorageTool", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("format storage: %w\n%s", err, out)
	}
	return nil
}

func (k *Kafka) path(name string) string { return filepath.Join(k.dir, name) }

// java builds a JVM command line on the broker's jars.
func (k *Kafka) java(ctx context.Context, mainClass string, args ...string) *exec.Cmd {
	jvm := []string{
		"-Xmx512m", "-Xms128m",
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + k.path("log4j2.properties"),
		"-cp", filepath.Join(k.home, "libs", "*"),
		mainClass,
	}
	return exec.CommandContext(ctx, k.javaPath, append(jvm, args...)...)
}

// run starts the broker and waits until it is ready.
func (k *Kafka) run() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		return errors.New("already running")
	}
	p, err := svcStart("kafka", k.logPath, k.java(context.Background(), "kafka.Kafka", k.path("server.properties")))
	if err != nil {
		return err
	}
	if err := svcWait(p, kafkaReadyTimeout, k.ready); err != nil {
		p.stop(10 * time.Second)
		return err
	}
	k.proc = p
	return nil
}

// ready succeeds once the broker answers a metadata request and lists
// itself: it has registered with the controller and is unfenced.
func (k *Kafka) ready(ctx context.Context) error {
	c, err := sarama.NewClient([]string{k.Bootstrap}, k.saramaConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	if len(c.Brokers()) == 0 {
		return errors.New("metadata lists no broker")
	}
	if _, err := c.Controller(); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return ctx.Err()
}

func (k *Kafka) saramaConfig() *sarama.Config {
	cfg := KafkaSaramaConfig()
	cfg.ClientID = "pano-testenv"
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 0
	cfg.Admin.Timeout = 30 * time.Second
	return cfg
}

// halt stops the broker if it runs.
func (k *Kafka) halt() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		// A controlled shutdown on one node takes a few seconds.
		k.proc.stop(30 * time.Second)
		k.proc = nil
	}
}

// CreateTopic creates a topic (replication factor 1) and waits until every
// partition has a leader that answers for it.
func (k *Kafka) CreateTopic(t testing.TB, name string, partitions int) {
	t.Helper()
	k.CreateTopicConfig(t, name, partitions, nil)
}

// DeleteTopic deletes a topic; the broker removes its files after its
// file.delete.delay.ms.
func (k *Kafka) DeleteTopic(t testing.TB, name string) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{k.Bootstrap}, k.saramaConfig())
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	defer admin.Close()
	if err := admin.DeleteTopic(name); err != nil {
		t.Fatalf("delete topic %q: %v", name, err)
	}
}

// CreateTopicConfig is CreateTopic with topic settings (for example
// max.message.bytes).
func (k *Kafka) CreateTopicConfig(t testing.TB, name string, partitions int, config map[string]string) {
	t.Helper()
	entries := map[string]*string{}
	for key, v := range config {
		entries[key] = &v
	}
	admin, err := sarama.NewClusterAdmin([]string{k.Bootstrap}, k.saramaConfig())
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	defer admin.Close()
	err = admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1, ConfigEntries: entries}, false)
	if err != nil {
		t.Fatalf("create topic %q: %v", name, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := k.topicReady(name, partitions)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %q: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (k *Kafka) topicReady(name string, partitions int) error {
	c, err := sarama.NewClient([]string{k.Bootstrap}, k.saramaConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	ps, err := c.Partitions(name)
	if err != nil {
		return err
	}
	if len(ps) != partitions {
		return fmt.Errorf("%d partitions, want %d", len(ps), partitions)
	}
	for _, p := range ps {
		if _, err := c.Leader(name, p); err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		// Metadata can name the leader a moment before that broker has
		// loaded the partition and answers for it.
		if _, err := c.GetOffset(name, p, sarama.OffsetNewest); err != nil {
			return fmt.Errorf("partition %d offset: %w", p, err)
		}
	}
	return nil
}

// Stop stops the broker (SIGTERM, a controlled shutdown) and waits until
// it has exited. Its port and data stay for Start.
func (k *Kafka) Stop(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	running := k.proc != nil
	k.mu.Unlock()
	if !running {
		t.Fatalf("kafka: Stop while stopped")
	}
	start := time.Now()
	k.halt()
	t.Logf("kafka stopped in %v", time.Since(start).Round(time.Millisecond))
}

// Start starts a stopped broker again on the same port with the same data,
// and returns when it is ready.
func (k *Kafka) Start(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := k.run(); err != nil {
		t.Fatalf("kafka restart: %v", err)
	}
	t.Logf("kafka restarted in %v", time.Since(start).Round(time.Millisecond))
}

// CPU is the CPU time the running broker process has used (0 while it is
// stopped): benchmarks compare what different clients cost the broker.
func (k *Kafka) CPU() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc == nil {
		return 0
	}
	d, err := ProcessCPU(k.proc.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return d
}
