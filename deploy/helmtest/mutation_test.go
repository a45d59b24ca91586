package helmtest

import (
	"strings"
	"testing"
)

// everything renders every optional part (Strimzi, the operator's
// objects, hostPath storage, two workers): the mutations have something to
// break in each.
var everything = map[string]any{
	"kafka":      map[string]any{"strimzi": map[string]any{"enabled": true}},
	"prometheus": map[string]any{"operator": map[string]any{"enabled": true}},
	"zeek":       map[string]any{"workers": 2},
	"capture":    map[string]any{"storage": map[string]any{"type": "hostPath"}},
}

// The wiring checks pass on the rendered chart and fail, naming the
// disagreement, when one edit to the rendered objects breaks a port, a
// variable, a topic, a rule or a security setting.
func TestWiringDetectsDisagreements(t *testing.T) {
	f := repoFacts(t)
	manifest, _, err := render(t, everything)
	if err != nil {
		t.Fatal(err)
	}
	base, err := decodeManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if p := checkAll(base, f); len(p) > 0 {
		t.Fatalf("the unchanged rendering fails:\n%s", strings.Join(p, "\n"))
	}

	for _, m := range []struct{ name, old, new, check, want string }{
		{"agent metrics port", `"$(POD_IP):9103"`, `"$(POD_IP):9113"`, "Metrics", "METRICS_ADDR listens on port 9113"},
		{"agent metrics on loopback", `"$(POD_IP):9103"`, `"127.0.0.1:9103"`, "Metrics", "which Prometheus cannot reach"},
		{"misspelt shim variable", "name: SHIM_METRICS_ADDR", "name: SHIM_METRIC_ADDR", "Env", "sets SHIM_METRIC_ADDR, which pano-shim --help does not document"},
		{"misspelt agent variable", "name: EXCLUDE_INTERFACES", "name: EXCLUDED_INTERFACES", "Env", "pano-agent --help does not document"},
		{"zeek variable nobody reads", "name: ZEEK_ROTATION_INTERVAL", "name: ZEEK_ROTATE_INTERVAL", "Env", "entrypoint.sh or scripts does not document"},
		{"zeek node variable misspelt", "name: PANO_NODE", "name: PANO_NODE_NAME", "Env", "sets PANO_NODE_NAME"},
		{"reference before definition", "- name: POD_IP\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP\n            - name: SHIM_LOGS", "- name: SHIM_LOGS", "Env", "refers to $(POD_IP)"},
		{"zeek dials another port", "name: PCA_SERVER_PORT\n              value: \"57012\"\n            - name: ZEEK_LOG_DIR", "name: PCA_SERVER_PORT\n              value: \"57013\"\n            - name: ZEEK_LOG_DIR", "Capture", "zeek dials port 57013"},
		{"streams and workers differ", "name: PCA_STREAMS\n              value: \"2\"", "name: PCA_STREAMS\n              value: \"1\"", "Capture", "each worker reads one stream"},
		{"zeek probe port", ":DEB4 01", ":DEB5 01", "Capture", "readiness probe"},
		{"pod DNS on the host", "dnsPolicy: ClusterFirstWithHostNet", "dnsPolicy: ClusterFirst", "Capture", "cannot resolve"},
		{"shim reads elsewhere", "/data/logs/worker-*/http.log", "/var/log/zeek/worker-*/http.log", "Capture", "outside Zeek's log folder"},
		{"positions off the volume", "value: /data/shim", "value: /var/lib/pano-shim", "Capture", "not on the logs' volume"},
		{"flowlogs-pipeline reads another topic", "topic: dns\n", "topic: dns-records\n", "Kafka", "flowlogs-pipeline reads topics"},
		{"flowlogs-pipeline other brokers", "- pano-kafka-bootstrap:9092\n", "- kafka:9092\n", "Kafka", "from brokers [kafka:9092]"},
		{"flowlogs-pipeline config drifts", "startOffset: FirstOffset", "startOffset: LastOffset", "Kafka", "is not fl-pipeline-config/flowlogs-pipeline.yaml"},
		{"strimzi listener port", "port: 9092\n        type: internal", "port: 9094\n        type: internal", "Kafka", "plain listener is pano-kafka-bootstrap:9094"},
		{"topic not created", "topicName: ssl", "topicName: tls", "Kafka", "no KafkaTopic creates topic ssl"},
		{"topic in another cluster", "strimzi.io/cluster: pano\nspec:\n  topicName: dns", "strimzi.io/cluster: other\nspec:\n  topicName: dns", "Kafka", "belongs to cluster \"other\""},
		{"flowlogs-pipeline metrics port", "port: 9102\n", "port: 9112\n", "Metrics", "flowlogs-pipeline serves metrics on port 9112"},
		{"podmonitor port name", "- port: shim-metrics", "- port: shim-metric", "Metrics", "scrapes port shim-metric"},
		{"podmonitor selects nothing", "app.kubernetes.io/component: flowlogs-pipeline\n  podMetricsEndpoints", "app.kubernetes.io/component: flp\n  podMetricsEndpoints", "Metrics", "selects no pod"},
		{"relabeling dropped", "action: drop\n", "action: keep\n", "Metrics", "metricRelabelings are not prometheus.yml's"},
		{"capture series without node", "targetLabel: node", "targetLabel: host", "Metrics", "does not set node from __meta_kubernetes_pod_node_name"},
		{"rule changed", "> 0.05\n", "> 0.5\n", "Rules", "differs from prometheus/rules"},
		{"rule reads a metric nobody exports", "rate(pano_tls_handshakes_total[1m])", "rate(pano_tls_handshake_total[1m])", "Rules", "reads pano_tls_handshake_total"},
		{"dashboard edited", `"uid": "pano-dns"`, `"uid": "pano-dns2"`, "Dashboards", "is not grafana/dashboards/pano-dns.json"},
		{"datasource uid", "uid: pano-prometheus", "uid: prometheus", "Dashboards", "datasource uid pano-prometheus"},
		{"agent image", "image: pano-agent:local", "image: pano-agent:0.1", "Images", "docker-compose.yml's agent runs pano-agent:local"},
		{"kafka version", `version: "4.3.1"`, `version: "4.0.0"`, "Images", "Strimzi Kafka runs version 4.0.0"},
		{"agent gains a capability", "add: [BPF, NET_ADMIN, PERFMON]", "add: [BPF, NET_ADMIN, PERFMON, SYS_ADMIN]", "Security", "adds capabilities"},
		{"shim as root", "runAsUser: 65532\n            runAsGroup", "runAsUser: 0\n            runAsGroup", "Security", "shim: may run as root"},
		{"agent privileged", "privileged: false\n            readOnlyRootFilesystem: true\n            runAsUser: 0\n            capabilities:\n              drop: [ALL]\n              add: [BPF", "privileged: true\n            readOnlyRootFilesystem: true\n            runAsUser: 0\n            capabilities:\n              drop: [ALL]\n              add: [BPF", "Security", "agent: privileged"},
	} {
		t.Run(m.name, func(t *testing.T) {
			if !strings.Contains(manifest, m.old) {
				t.Fatalf("the rendering no longer contains %q: update this mutation", m.old)
			}
			r, err := decodeManifest(strings.Replace(manifest, m.old, m.new, 1))
			if err != nil {
				t.Fatalf("the mutated rendering does not decode: %v", err)
			}
			var p problems
			wiringChecks[m.check](r, f, &p)
			if !strings.Contains(strings.Join(p, "\n"), m.want) {
				t.Errorf("check %s missed it: want a problem containing %q, got:\n%s", m.check, m.want, strings.Join(p, "\n"))
			}
		})
	}
}

// Strict decoding is what catches a field in the wrong place or of the
// wrong type, which the wiring checks would never see.
func TestStrictDecodingRejects(t *testing.T) {
	manifest, _, err := render(t, everything)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ name, old, new, want string }{
		{"unknown pod field", "hostNetwork: true", "hostNetwork: true\n      hostNetworking: true", "unknown field \"hostNetworking\""},
		{"port as text", "containerPort: 9104", "containerPort: \"9104\"", "containerPort"},
		{"unknown PodMonitor field", "podMetricsEndpoints:", "podMetricEndpoints: []\n  podMetricsEndpoints:", "unknown field \"podMetricEndpoints\""},
		{"unknown Strimzi field", "topicName: dns", "topicName: dns\n  partition: 3", "unknown field \"partition\""},
		{"duplicate key", "hostNetwork: true", "hostNetwork: true\n      hostNetwork: false", "already set"},
		{"unknown kind", "kind: KafkaNodePool", "kind: KafkaNodePools", "no type known"},
	} {
		t.Run(m.name, func(t *testing.T) {
			if !strings.Contains(manifest, m.old) {
				t.Fatalf("the rendering no longer contains %q", m.old)
			}
			_, err := decodeManifest(strings.Replace(manifest, m.old, m.new, 1))
			if err == nil || !strings.Contains(err.Error(), m.want) {
				t.Errorf("got %v, want an error containing %q", err, m.want)
			}
		})
	}
}
