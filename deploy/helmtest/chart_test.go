package helmtest

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"

	"github.com/pano-observability/pano/internal/testenv"
)

// valueSet is one way of installing the chart, and what it must render.
type valueSet struct {
	name  string
	vals  map[string]any
	kinds map[string]int // kind -> count wanted
	check func(t *testing.T, r *rendered)
}

func existingKafka() map[string]any {
	return map[string]any{"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092"}
}

var valueSets = []valueSet{
	{
		name:  "defaults",
		vals:  map[string]any{"kafka": existingKafka()},
		kinds: map[string]int{"DaemonSet": 1, "Deployment": 1, "ConfigMap": 5},
		check: func(t *testing.T, r *rendered) {
			ann := r.daemonSets[0].Spec.Template.Annotations
			if ann["prometheus.io/scrape"] != "true" || r.deployments[0].Spec.Template.Annotations["prometheus.io/scrape"] != "true" {
				t.Errorf("without the operator the pods carry no scrape annotations: %v", ann)
			}
			if !strings.Contains(r.notes, "kafka-0.kafka:9092") || !strings.Contains(r.notes, "must exist before flowlogs-pipeline") {
				t.Errorf("NOTES.txt does not name the brokers and the topics to create:\n%s", r.notes)
			}
		},
	},
	{
		name: "strimzi",
		vals: map[string]any{"kafka": map[string]any{"strimzi": map[string]any{"enabled": true,
			"storage": map[string]any{"type": "persistent-claim", "size": "20Gi"}}}},
		kinds: map[string]int{"Kafka": 1, "KafkaNodePool": 1, "KafkaTopic": 3},
		check: func(t *testing.T, r *rendered) {
			if s := r.nodePools[0].Spec.Storage; s.Type != "persistent-claim" || s.Size != "20Gi" {
				t.Errorf("node pool storage %+v", s)
			}
		},
	},
	{
		name: "prometheus operator",
		vals: map[string]any{"kafka": existingKafka(), "prometheus": map[string]any{"operator": map[string]any{
			"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}}}},
		kinds: map[string]int{"PodMonitor": 2, "PrometheusRule": 1},
		check: func(t *testing.T, r *rendered) {
			if _, ok := r.daemonSets[0].Spec.Template.Annotations["prometheus.io/scrape"]; ok {
				t.Error("scrape annotations beside PodMonitors: the pods would be scraped twice")
			}
			for _, pm := range r.podMonitors {
				if pm.Labels["release"] != "kube-prometheus-stack" {
					t.Errorf("PodMonitor %s lacks the operator's selector label", pm.Name)
				}
			}
			if r.rules[0].Labels["release"] != "kube-prometheus-stack" {
				t.Error("PrometheusRule lacks the operator's selector label")
			}
		},
	},
	{
		name: "scaled out",
		vals: map[string]any{"kafka": map[string]any{"strimzi": map[string]any{"enabled": true, "replicas": 3,
			"topic": map[string]any{"partitions": 6, "replicas": 3}}},
			"zeek": map[string]any{"workers": 4}, "flowlogsPipeline": map[string]any{"replicas": 3},
			"shim": map[string]any{"topicPrefix": "pano-"}, "agent": map[string]any{"metricsPort": 19103, "pcapPort": 47000},
			"prometheus": map[string]any{"operator": map[string]any{"enabled": true}}},
		check: func(t *testing.T, r *rendered) {
			if got := mustEnv(container(&r.daemonSets[0].Spec.Template.Spec, "zeek"), "ZEEK_WORKERS"); got != "4" {
				t.Errorf("ZEEK_WORKERS=%s, want 4", got)
			}
			if got := *r.deployments[0].Spec.Replicas; got != 3 {
				t.Errorf("flowlogs-pipeline replicas %d, want 3", got)
			}
			if r.topics[0].Spec.TopicName[:5] != "pano-" {
				t.Errorf("topic %s lacks the prefix", r.topics[0].Spec.TopicName)
			}
			if !strings.Contains(r.notes, "47000..47003") {
				t.Errorf("NOTES.txt does not list the four stream ports:\n%s", r.notes)
			}
		},
	},
	{
		name: "scheduling and storage",
		vals: map[string]any{"kafka": existingKafka(),
			"images": map[string]any{"registry": "registry.example.com/pano/"},
			"capture": map[string]any{
				"nodeSelector": map[string]any{"kubernetes.io/os": "linux", "pano/capture": "true"},
				"tolerations":  []any{map[string]any{"operator": "Exists", "effect": "NoSchedule"}},
				"storage":      map[string]any{"type": "hostPath", "hostPath": "/var/lib/pano"},
			},
			"flowlogsPipeline": map[string]any{"tolerations": []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "obs", "effect": "NoExecute"}}},
			"agent":            map[string]any{"resources": map[string]any{"limits": map[string]any{"cpu": "2", "memory": "1Gi"}}},
		},
		check: func(t *testing.T, r *rendered) {
			spec := r.daemonSets[0].Spec.Template.Spec
			if spec.NodeSelector["pano/capture"] != "true" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != "Exists" {
				t.Errorf("node selector %v, tolerations %v", spec.NodeSelector, spec.Tolerations)
			}
			if len(r.deployments[0].Spec.Template.Spec.Tolerations) != 1 {
				t.Error("flowlogs-pipeline tolerations not applied")
			}
			if len(spec.InitContainers) != 1 || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != "/var/lib/pano" {
				t.Errorf("hostPath storage: init containers %d, volume %+v", len(spec.InitContainers), spec.Volumes[0])
			}
			if img := container(&spec, "agent").Image; img != "registry.example.com/pano/pano-agent:local" {
				t.Errorf("agent image %s", img)
			}
			if q := container(&spec, "agent").Resources.Limits.Cpu().String(); q != "2" {
				t.Errorf("agent cpu limit %s", q)
			}
		},
	},
}

// Every value set renders, decodes strictly into the Kubernetes and
// operator types, holds the objects it should, and agrees with the rest
// of the repository.
func TestRenderedChartWiring(t *testing.T) {
	f := repoFacts(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			r := mustRender(t, vs.vals)
			count := map[string]int{}
			for _, k := range r.kinds {
				kind := strings.Fields(k[strings.LastIndex(k, "/")+1:])[0]
				count[kind]++
			}
			for kind, n := range vs.kinds {
				if count[kind] != n {
					t.Errorf("%d %s, want %d (rendered: %v)", count[kind], kind, n, r.kinds)
				}
			}
			if p := checkAll(r, f); len(p) > 0 {
				t.Errorf("wiring:\n%s", strings.Join(p, "\n"))
			}
			if vs.check != nil {
				vs.check(t, r)
			}
		})
	}
}

// Values the schema or the templates refuse fail the install with a
// message naming the value, instead of rendering something broken.
func TestRejectedValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"no kafka", nil, "kafka.bootstrapServers"},
		{"zero workers", map[string]any{"kafka": existingKafka(), "zeek": map[string]any{"workers": 0}}, "workers"},
		{"misspelt value", map[string]any{"kafka": existingKafka(), "agent": map[string]any{"metricPort": 9}}, "metricPort"},
		{"port as text", map[string]any{"kafka": existingKafka(), "shim": map[string]any{"metricsPort": "9104"}}, "metricsPort"},
		{"brokers without port", map[string]any{"kafka": map[string]any{"bootstrapServers": "kafka"}}, "bootstrapServers"},
		{"unknown storage", map[string]any{"kafka": existingKafka(), "capture": map[string]any{"storage": map[string]any{"type": "pvc"}}}, "storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := render(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// `helm lint --strict` through the SDK: no warning, no error.
func TestChartLints(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range valueSets {
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = namespace
		lint.KubeVersion = kv
		res := lint.Run([]string{chartPath(t)}, vs.vals)
		for _, m := range res.Messages {
			t.Logf("%s: %s", vs.name, m)
		}
		if len(res.Errors) > 0 {
			t.Errorf("%s: helm lint --strict: %v", vs.name, res.Errors)
		}
	}
}

// The chart's copies of the rules, dashboards and configuration are the
// repository's, byte for byte.
func TestChartCopiesAreCurrent(t *testing.T) {
	diff, err := Diff(testenv.RepoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("run `go generate ./deploy/helmtest`:\n%s", strings.Join(diff, "\n"))
	}
}
