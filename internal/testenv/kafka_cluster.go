package testenv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaCluster is n Kafka nodes on loopback, each both broker and
// controller: the controller quorum is every node, so it survives the loss
// of a minority. Topics get a replica on every node by default and, from
// three nodes, need two in sync to take a write with acks=all.
type KafkaCluster struct {
	Bootstrap string   // every node's PLAINTEXT address, comma-separated
	Nodes     []*Kafka // node i has node.id i+1
}

// kafkaClusterHeap is each node's -Xmx: three JVMs share the machine.
const kafkaClusterHeap = "384m"

// kafkaClusterProps are the cluster's settings besides the single broker's
// (which configure sizes for the number of nodes).
var kafkaClusterProps = []string{
	// A killed node is fenced, and its partitions led elsewhere, within
	// seconds rather than the default 9.
	"broker.session.timeout.ms=6000",
	"broker.heartbeat.interval.ms=1000",
	// Several JVMs on few cores: fewer threads each.
	"num.network.threads=2",
	"num.io.threads=2",
	"num.replica.fetchers=1",
	"background.threads=2",
}

// StartKafkaCluster starts n nodes (a controller quorum of n) with one
// cluster id, each with its own ports and data, and returns when every
// node serves metadata listing itself. props are more server.properties
// lines for every node; they override the defaults. The nodes are killed
// by t.Cleanup (their data is thrown away, so nothing needs a controlled
// shutdown) and their logs printed if the test fails.
func StartKafkaCluster(t testing.TB, n int, props ...string) *KafkaCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("kafka cluster of %d nodes", n)
	}
	java := RequireProgram(t, "java", "openjdk-17-jre-headless")
	home := kafkaHome(t)
	var lastErr error
	for attempt := 0; attempt < svcStartAttempts; attempt++ {
		c, err := startKafkaCluster(t, java, home, n, props)
		if err == nil {
			return c
		}
		lastErr = err
		inUse := false
		for _, k := range c.Nodes {
			inUse = inUse || svcPortInUse(k.logPath)
		}
		if !inUse {
			for _, k := range c.Nodes {
				t.Logf("--- %s log (%s):\n%s", k.name(), k.logPath, svcLogTail(k.logPath, 100))
			}
			break
		}
	}
	t.Fatalf("kafka cluster: %v", lastErr)
	return nil
}

// startKafkaCluster is one attempt on fresh ports. On failure the nodes
// are stopped and returned for their logs.
func startKafkaCluster(t testing.TB, java, home string, n int, props []string) (*KafkaCluster, error) {
	t.Helper()
	ports := freePorts(t, 2*n)
	clusterID := newKafkaClusterID(t)
	var voters, addrs []string
	for i := range n {
		voters = append(voters, fmt.Sprintf("%d@%s", i+1, net4(ports[2*i+1])))
		addrs = append(addrs, net4(ports[2*i]))
	}
	c := &KafkaCluster{Bootstrap: strings.Join(addrs, ",")}
	extra := kafkaExtra{props: append(append([]string(nil), kafkaClusterProps...), props...)}
	for i := range n {
		node := kafkaNode{id: i + 1, size: n, port: ports[2*i], ctrlPort: ports[2*i+1],
			voters: strings.Join(voters, ","), clusterID: clusterID, heap: kafkaClusterHeap}
		c.Nodes = append(c.Nodes, newKafka(t, home, java, node, extra))
	}

	start := time.Now()
	if err := c.eachNode((*Kafka).configure); err != nil {
		return c, err
	}
	formatted := time.Now()
	// Together: no node is ready before a majority of the quorum runs.
	if err := c.eachNode((*Kafka).run); err != nil {
		for _, k := range c.Nodes {
			k.kill()
		}
		return c, err
	}
	t.Logf("kafka %s cluster of %d nodes ready on %s in %v (storage format %v, brokers start %v)",
		filepath.Base(home), n, c.Bootstrap, time.Since(start).Round(time.Millisecond),
		formatted.Sub(start).Round(time.Millisecond), time.Since(formatted).Round(time.Millisecond))
	for _, k := range c.Nodes {
		svcLogOnFailure(t, k.name(), k.logPath, 200)
	}
	t.Cleanup(func() {
		for _, k := range c.Nodes {
			k.kill()
		}
	})
	return c, nil
}

// eachNode runs f on every node at once and joins their errors.
func (c *KafkaCluster) eachNode(f func(*Kafka) error) error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, k := range c.Nodes {
		wg.Go(func() { errs[i] = f(k) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *KafkaCluster) node(t testing.TB, i int) *Kafka {
	t.Helper()
	if i < 0 || i >= len(c.Nodes) {
		t.Fatalf("kafka cluster: no node %d of %d", i, len(c.Nodes))
	}
	return c.Nodes[i]
}

// Kill kills node i with SIGKILL (see Kafka.Kill).
func (c *KafkaCluster) Kill(t testing.TB, i int) {
	t.Helper()
	c.node(t, i).Kill(t)
}

// Stop stops node i with SIGTERM, a controlled shutdown that first moves
// its leaderships to other nodes, and waits until it has exited.
func (c *KafkaCluster) Stop(t testing.TB, i int) {
	t.Helper()
	c.node(t, i).Stop(t)
}

// Start starts node i again on its ports with its data, and returns when
// it serves metadata listing itself (it has caught up with the cluster's
// metadata; its partitions may still be catching up: see WaitInSync).
func (c *KafkaCluster) Start(t testing.TB, i int) {
	t.Helper()
	c.node(t, i).Start(t)
}

// Client returns a franz-go client seeded with every node; t.Cleanup
// closes it. opts are added to (and override) the defaults.
func (c *KafkaCluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return kafkaClient(t, c.Bootstrap, opts...)
}

// Admin returns an admin client for the cluster; t.Cleanup closes it.
func (c *KafkaCluster) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(kafkaClient(t, c.Bootstrap))
}

// CreateTopic creates a topic with config (nil for the defaults) and
// waits until every partition has a leader that answers for it and all
// its replicas in sync.
func (c *KafkaCluster) CreateTopic(t testing.TB, name string, partitions, replication int, config map[string]string) {
	t.Helper()
	if err := createTopic(c.Bootstrap, name, partitions, replication, config); err != nil {
		t.Fatalf("kafka cluster: %v", err)
	}
}

// WaitInSync waits until every partition of topic has a leader that
// answers for it and all its replicas in sync: after Start, until the
// node has caught up.
func (c *KafkaCluster) WaitInSync(t testing.TB, topic string) {
	t.Helper()
	start := time.Now()
	err := withKafkaAdmin(c.Bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		return waitTopicServed(ctx, adm, topic, 0)
	})
	if err != nil {
		t.Fatalf("kafka cluster: %v", err)
	}
	t.Logf("topic %q in sync after %v", topic, time.Since(start).Round(time.Millisecond))
}

// Leaders returns the index in Nodes of each partition's leader, -1 for a
// partition without one.
func (c *KafkaCluster) Leaders(t testing.TB, topic string) map[int32]int {
	t.Helper()
	leaders := map[int32]int{}
	err := withKafkaAdmin(c.Bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		tds, err := adm.ListTopics(ctx, topic)
		if err == nil {
			err = tds.Error()
		}
		if err != nil {
			return err
		}
		td, ok := tds[topic]
		if !ok {
			return errors.New("not in metadata")
		}
		for p, d := range td.Partitions {
			leaders[p] = -1
			if d.Leader >= 1 {
				leaders[p] = int(d.Leader) - 1
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kafka cluster: leaders of %q: %v", topic, err)
	}
	return leaders
}

// GroupCommitted returns the offset consumer group has committed for each
// partition of topic (-1 for a partition it has not committed yet): how
// far the group's members have read, for lag and for watching a partition
// move to another member.
func GroupCommitted(t testing.TB, bootstrap, group, topic string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	err := withKafkaAdmin(bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		resp, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return err
		}
		for p, o := range resp[topic] {
			out[p] = o.At
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kafka: group %q offsets of %q: %v", group, topic, err)
	}
	return out
}

// GroupCoordinator returns the index in Nodes of the node coordinating
// consumer group: the one whose loss makes the group's members join again.
func (c *KafkaCluster) GroupCoordinator(t testing.TB, group string) int {
	t.Helper()
	node := -1
	err := withKafkaAdmin(c.Bootstrap, func(ctx context.Context, adm *kadm.Client) error {
		r, ok := adm.FindGroupCoordinators(ctx, group)[group]
		if !ok {
			return errors.New("no answer")
		}
		if r.Err != nil {
			return r.Err
		}
		node = int(r.NodeID) - 1
		return nil
	})
	if err != nil {
		t.Fatalf("kafka cluster: coordinator of group %q: %v", group, err)
	}
	return node
}
