package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka is a single-node Apache Kafka broker (KRaft: broker and controller
// in one process) on loopback, with its data in the test's temporary
// directory. It is also what each node of a KafkaCluster is.
type Kafka struct {
	Bootstrap string // "127.0.0.1:port"

	home     string // install: home/libs/*.jar
	dir      string // config, data and log of this broker
	logPath  string
	javaPath string
	node     kafkaNode  // its place in its cluster, the same on every start
	extra    kafkaExtra // secured listeners and their settings, if any

	mu   sync.Mutex
	proc *svcProc // nil while stopped
}

// kafkaNode is what places a broker in its cluster; a lone broker is node
// 1 of 1.
type kafkaNode struct {
	id, size       int    // node.id, and how many nodes the cluster has
	port, ctrlPort int    // PLAINTEXT and CONTROLLER listeners
	voters         string // controller.quorum.voters: every node's id@host:port
	clusterID      string
	heap           string // the JVM's -Xmx
}

const (
	// kafkaReadyTimeout is generous: the JVM starts slowly on a loaded
	// machine.
	kafkaReadyTimeout = 3 * time.Minute
	// kafkaTopicTimeout bounds creating a topic and waiting until its
	// partitions are served, and any one admin request.
	kafkaTopicTimeout = 2 * time.Minute
	// kafkaReadTimeout bounds ReadTopic.
	kafkaReadTimeout = 2 * time.Minute
)

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
		ports := freePorts(t, 2)
		node := kafkaNode{id: 1, size: 1, port: ports[0], ctrlPort: ports[1], heap: "512m",
			voters: "1@" + net4(ports[1]), clusterID: newKafkaClusterID(t)}
		var extra kafkaExtra
		if plan != nil {
			extra = plan()
		}
		k := newKafka(t, home, java, node, extra)
		start := time.Now()
		if err := k.configure(); err != nil {
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

func newKafka(t testing.TB, home, java string, node kafkaNode, extra kafkaExtra) *Kafka {
	k := &Kafka{Bootstrap: net4(node.port), home: home, javaPath: java, dir: t.TempDir(), node: node, extra: extra}
	k.logPath = filepath.Join(k.dir, "kafka.log")
	return k
}

// freePorts is n distinct FreePorts.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range 10 * n {
		if p := FreePort(t); !slices.Contains(ports, p) {
			if ports = append(ports, p); len(ports) == n {
				return ports
			}
		}
	}
	t.Fatalf("no %d distinct free ports: got %v", n, ports)
	return nil
}

func net4(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// newKafkaClusterID is a random cluster id for the storage format.
func newKafkaClusterID(t testing.TB) string {
	t.Helper()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		t.Fatalf("kafka cluster id: %v", err)
	}
	// Clear the top bit so the id never starts with '-' or '_': the storage
	// tool would read a leading '-' as an option.
	id[0] &= 0x7f
	return base64.RawURLEncoding.EncodeToString(id)
}

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

// name is how logs and errors call this broker.
func (k *Kafka) name() string {
	if k.node.size == 1 {
		return "kafka"
	}
	// By its index in KafkaCluster.Nodes, which the cluster's methods take.
	return fmt.Sprintf("kafka Nodes[%d]", k.node.id-1)
}

// configure writes server.properties and log4j2.properties and formats the
// storage directory.
func (k *Kafka) configure() error {
	n := k.node
	listeners := []string{"PLAINTEXT://" + net4(n.port), "CONTROLLER://" + net4(n.ctrlPort)}
	advertised := []string{"PLAINTEXT://" + net4(n.port)}
	protocols := []string{"PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"}
	for _, l := range k.extra.listeners {
		listeners = append(listeners, l.name+"://"+net4(l.port))
		advertised = append(advertised, l.name+"://"+net4(l.port))
		protocols = append(protocols, l.name+":"+l.protocol)
	}
	// Acknowledged writes survive one lost node once there are three.
	minISR := 1
	if n.size >= 3 {
		minISR = 2
	}
	props := []string{
		"process.roles=broker,controller",
		"node.id=" + strconv.Itoa(n.id),
		"controller.quorum.voters=" + n.voters,
		"listeners=" + strings.Join(listeners, ","),
		"advertised.listeners=" + strings.Join(advertised, ","),
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"listener.security.protocol.map=" + strings.Join(protocols, ","),
		"log.dirs=" + filepath.Join(k.dir, "data"),
		// Tests create their topics; a typo must fail, not create one.
		"auto.create.topics.enable=false",
		"num.partitions=1",
		// Every node holds a replica of everything; internal topics have
		// few partitions so that creating them on first use is quick.
		"default.replication.factor=" + strconv.Itoa(n.size),
		"min.insync.replicas=" + strconv.Itoa(minISR),
		"unclean.leader.election.enable=false",
		"offsets.topic.replication.factor=" + strconv.Itoa(n.size),
		"offsets.topic.num.partitions=1",
		"transaction.state.log.replication.factor=" + strconv.Itoa(n.size),
		"transaction.state.log.min.isr=" + strconv.Itoa(minISR),
		"transaction.state.log.num.partitions=1",
		"share.coordinator.state.topic.replication.factor=" + strconv.Itoa(n.size),
		"share.coordinator.state.topic.min.isr=" + strconv.Itoa(minISR),
		// Consumer groups start at once instead of waiting for more members.
		"group.initial.rebalance.delay.ms=0",
		// Small segments and indexes: little disk per test.
		"log.segment.bytes=1048576",
		"log.index.size.max.bytes=1048576",
	}
	props = append(props, k.extra.props...)
	if err := os.WriteFile(k.path("server.properties"), []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("%s: %w", k.name(), err)
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
		return fmt.Errorf("%s: %w", k.name(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"format", "--cluster-id", n.clusterID, "--config", k.path("server.properties")}, k.extra.formatArgs...)
	cmd := k.java(ctx, "kafka.tools.StorageTool", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: format storage: %w\n%s", k.name(), err, out)
	}
	return nil
}

func (k *Kafka) path(name string) string { return filepath.Join(k.dir, name) }

// java builds a JVM command line on the broker's jars.
func (k *Kafka) java(ctx context.Context, mainClass string, args ...string) *exec.Cmd {
	jvm := []string{
		"-Xmx" + k.node.heap, "-Xms128m",
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + k.path("log4j2.properties"),
		"-cp", filepath.Join(k.home, "libs", "*"),
	}
	if mainClass != kafkaBrokerClass {
		// A tool runs for a second or two: the optimizing compiler and
		// the concurrent collector would cost more than they save.
		jvm = append(jvm, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
	}
	jvm = append(jvm, mainClass)
	return exec.CommandContext(ctx, k.javaPath, append(jvm, args...)...)
}

const kafkaBrokerClass = "kafka.Kafka"

// run starts the broker and waits until it is ready.
func (k *Kafka) run() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		return fmt.Errorf("%s: already running", k.name())
	}
	p, err := svcStart(k.name(), k.logPath, k.java(context.Background(), kafkaBrokerClass, k.path("server.properties")))
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
// itself: it has registered with the controller, caught up with the
// cluster's metadata and is unfenced.
func (k *Kafka) ready(ctx context.Context) error {
	cl, err := newKafkaClient(k.Bootstrap, kgo.ClientID("pano-testenv"), kgo.DialTimeout(3*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	// A fresh client knows only its seed, so this asks this very broker.
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(m.Brokers.NodeIDs(), int32(k.node.id)) {
		return fmt.Errorf("metadata lists brokers %v, not yet node %d", m.Brokers.NodeIDs(), k.node.id)
	}
	return nil
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

// kill ends the broker at once with SIGKILL, and reports whether it ran.
func (k *Kafka) kill() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc == nil {
		return false
	}
	// The whole process group: svcStart made the JVM its leader.
	k.proc.kill()
	k.proc = nil
	return true
}

func (k *Kafka) running() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.proc != nil
}

// Stop stops the broker (SIGTERM, a controlled shutdown) and waits until
// it has exited. Its port and data stay for Start.
func (k *Kafka) Stop(t testing.TB) {
	t.Helper()
	if !k.running() {
		t.Fatalf("%s: Stop while stopped", k.name())
	}
	start := time.Now()
	k.halt()
	t.Logf("%s stopped in %v", k.name(), time.Since(start).Round(time.Millisecond))
}

// Kill kills the broker with SIGKILL, like a crash or a lost machine: no
// controlled shutdown, and what the OS had not written of its files is
// kept (the page cache survives a process). Its port and data stay for
// Start, which then recovers the logs.
func (k *Kafka) Kill(t testing.TB) {
	t.Helper()
	if !k.kill() {
		t.Fatalf("%s: Kill while stopped", k.name())
	}
	t.Logf("%s killed", k.name())
}

// Start starts a stopped broker again on the same port with the same data,
// and returns when it is ready.
func (k *Kafka) Start(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := k.run(); err != nil {
		t.Fatalf("%s restart: %v", k.name(), err)
	}
	t.Logf("%s restarted in %v", k.name(), time.Since(start).Round(time.Millisecond))
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

// Client returns a franz-go client seeded with this broker, with opts
// added to (and overriding) the client ID "pano-test". t.Cleanup closes it.
func (k *Kafka) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return kafkaClient(t, k.Bootstrap, opts...)
}

// Admin returns an admin client for this broker; t.Cleanup closes it.
func (k *Kafka) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(kafkaClient(t, k.Bootstrap))
}

// CreateTopic creates a topic (replication factor 1) and waits until every
// partition has a leader that answers for it.
func (k *Kafka) CreateTopic(t testing.TB, name string, partitions int) {
	t.Helper()
	k.CreateTopicConfig(t, name, partitions, nil)
}

// CreateTopicConfig is CreateTopic with topic settings (for example
// max.message.bytes).
func (k *Kafka) CreateTopicConfig(t testing.TB, name string, partitions int, config map[string]string) {
	t.Helper()
	if err := createTopic(k.Bootstrap, name, partitions, 1, config); err != nil {
		t.Fatalf("kafka: %v", err)
	}
}

// DeleteTopic deletes a topic; the broker removes its files after its
// file.delete.delay.ms.
func (k *Kafka) DeleteTopic(t testing.TB, name string) {
	t.Helper()
	err := withKafkaAdmin(k.Bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.DeleteTopic(ctx, name)
		if err == nil && resp.Err != nil {
			err = fmt.Errorf("%w %s", resp.Err, resp.ErrMessage)
		}
		return err
	})
	if err != nil {
		t.Fatalf("kafka: delete topic %q: %v", name, err)
	}
}

// kafkaClient is newKafkaClient closed by t.Cleanup.
func kafkaClient(t testing.TB, bootstrap string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := newKafkaClient(bootstrap, opts...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newKafkaClient is a client seeded with bootstrap, a comma-separated list
// of host:port; opts come after the defaults and so override them.
func newKafkaClient(bootstrap string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{kgo.SeedBrokers(strings.Split(bootstrap, ",")...), kgo.ClientID("pano-test")}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", bootstrap, err)
	}
	return cl, nil
}

// withKafkaAdmin runs f with an admin client for bootstrap, closed after,
// and a deadline of kafkaTopicTimeout.
func withKafkaAdmin(bootstrap string, f func(context.Context, *kadm.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaTopicTimeout)
	defer cancel()
	cl, err := newKafkaClient(bootstrap)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(ctx, kadm.NewClient(cl))
}

// createTopic creates a topic and waits until it is served: see
// topicServed.
func createTopic(bootstrap, name string, partitions, replication int, config map[string]string) error {
	return withKafkaAdmin(bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		configs := map[string]*string{}
		for key, v := range config {
			configs[key] = &v
		}
		resp, err := adm.CreateTopic(ctx, int32(partitions), int16(replication), configs, name)
		if err == nil && resp.Err != nil {
			err = fmt.Errorf("%w %s", resp.Err, resp.ErrMessage)
		}
		if err != nil {
			return fmt.Errorf("create topic %q: %w", name, err)
		}
		return waitTopicServed(ctx, adm, name, partitions)
	})
}

// waitTopicServed polls topicServed until it succeeds or ctx ends.
func waitTopicServed(ctx context.Context, adm *kadm.Client, name string, partitions int) error {
	start := time.Now()
	for {
		err := topicServed(ctx, adm, name, partitions)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q not served after %v: %w", name, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicServed succeeds once the topic has its partitions (any number when
// partitions is 0), each with a leader that answers for it and every
// replica in sync.
func topicServed(ctx context.Context, adm *kadm.Client, name string, partitions int) error {
	tds, err := adm.ListTopics(ctx, name)
	if err != nil {
		return err
	}
	td, ok := tds[name]
	if !ok {
		return errors.New("not in metadata")
	}
	if td.Err != nil {
		return td.Err
	}
	if partitions > 0 && len(td.Partitions) != partitions {
		return fmt.Errorf("%d partitions, want %d", len(td.Partitions), partitions)
	}
	for _, p := range td.Partitions.Sorted() {
		switch {
		case p.Err != nil:
			return fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		case p.Leader < 0:
			return fmt.Errorf("partition %d: no leader", p.Partition)
		case len(p.ISR) < len(p.Replicas):
			return fmt.Errorf("partition %d: in-sync replicas %v of %v", p.Partition, p.ISR, p.Replicas)
		}
	}
	// Metadata can name the leader a moment before that broker has loaded
	// the partition and answers for it.
	ends, err := adm.ListEndOffsets(ctx, name)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	if len(ends[name]) != len(td.Partitions) {
		return fmt.Errorf("end offsets of %d partitions of %d", len(ends[name]), len(td.Partitions))
	}
	return nil
}

// EndOffsets returns the end offset (the high watermark: the offset the
// next record will get) of every partition of topic.
func EndOffsets(t testing.TB, bootstrap, topic string) map[int32]int64 {
	t.Helper()
	var ends map[int32]int64
	err := withKafkaAdmin(bootstrap, func(ctx context.Context, adm *kadm.Client) (err error) {
		ends, err = topicOffsets(ctx, adm, topic, (*kadm.Client).ListEndOffsets)
		return err
	})
	if err != nil {
		t.Fatalf("kafka: %v", err)
	}
	return ends
}

// topicOffsets is list's answer for each partition of topic.
// A partition whose leader just changed answers with a retriable error
// (OFFSET_NOT_AVAILABLE until its high watermark catches up, NOT_LEADER):
// asked again until ctx ends.
func topicOffsets(ctx context.Context, adm *kadm.Client, topic string,
	list func(*kadm.Client, context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	var lo kadm.ListedOffsets
	var err error
	for {
		lo, err = list(adm, ctx, topic)
		if err == nil {
			err = lo.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("topic %q offsets: %w", topic, err)
	}
	out := map[int32]int64{}
	for p, o := range lo[topic] {
		out[p] = o.Offset
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %q offsets: no partitions listed", topic)
	}
	return out, nil
}

// ReadTopic returns every record of every partition of topic, from the
// partition's start offset to its end offset as they are when it is
// called, ordered by partition and by offset within one; records produced
// meanwhile are left out. opts are added to the clients' (TLS or SASL, for
// example). It fails the test if the records are not all read within two
// minutes. A partition written in transactions ends with a marker that is
// never returned as a record, so its end would never be reached: ReadTopic
// is for topics written without them.
func ReadTopic(t testing.TB, bootstrap, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaReadTimeout)
	defer cancel()
	admCl, err := newKafkaClient(bootstrap, opts...)
	if err != nil {
		t.Fatalf("read topic: %v", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	starts, err := topicOffsets(ctx, adm, topic, (*kadm.Client).ListStartOffsets)
	if err != nil {
		t.Fatalf("read topic: %v", err)
	}
	ends, err := topicOffsets(ctx, adm, topic, (*kadm.Client).ListEndOffsets)
	if err != nil {
		t.Fatalf("read topic: %v", err)
	}

	from := map[int32]kgo.Offset{}
	next := map[int32]int64{} // the offset after the last record read, per partition not yet read to its end
	for p, end := range ends {
		if end > starts[p] {
			from[p] = kgo.NewOffset().At(starts[p])
			next[p] = starts[p]
		}
	}
	got := map[int32][]*kgo.Record{}
	if len(from) > 0 {
		cl, err := newKafkaClient(bootstrap, slices.Concat(opts, []kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from})})...)
		if err != nil {
			t.Fatalf("read topic: %v", err)
		}
		defer cl.Close()
		for len(next) > 0 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				var left []string
				for _, p := range slices.Sorted(maps.Keys(next)) {
					left = append(left, fmt.Sprintf("partition %d at offset %d of [%d, %d)", p, next[p], starts[p], ends[p]))
				}
				t.Fatalf("read topic %q: not read to its end in %v: %s", topic, kafkaReadTimeout, strings.Join(left, ", "))
			}
			if errs := fs.Errors(); len(errs) > 0 {
				t.Fatalf("read topic %q: partition %d: %v", topic, errs[0].Partition, errs[0].Err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if _, reading := next[r.Partition]; !reading || r.Offset >= ends[r.Partition] {
					return
				}
				got[r.Partition] = append(got[r.Partition], r)
				if next[r.Partition] = r.Offset + 1; next[r.Partition] >= ends[r.Partition] {
					delete(next, r.Partition)
				}
			})
		}
	}
	var out []*kgo.Record
	for _, p := range slices.Sorted(maps.Keys(got)) {
		out = append(out, got[p]...)
	}
	t.Logf("read %d records of %d partitions of %q in %v", len(out), len(ends), topic, time.Since(begin).Round(time.Millisecond))
	return out
}
