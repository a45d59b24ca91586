package helmtest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// problems collects what disagrees, one line each: the mutation test
// reads them back.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// wiringChecks each compare one part of a rendered chart with the
// repository; names are what the mutation test selects.
var wiringChecks = map[string]func(*rendered, *facts, *problems){
	"Env":        checkEnv,
	"Capture":    checkCapture,
	"Kafka":      checkKafka,
	"Metrics":    checkMetrics,
	"Rules":      checkRules,
	"Dashboards": checkDashboards,
	"Images":     checkImages,
	"Security":   checkSecurity,
}

func checkAll(r *rendered, f *facts) problems {
	var p problems
	for _, name := range slices.Sorted(maps.Keys(wiringChecks)) {
		wiringChecks[name](r, f, &p)
	}
	return p
}

// capturePod is the DaemonSet's pod and its three containers.
func (r *rendered) capturePod(p *problems) (spec *corev1.PodSpec, agent, zeek, shim *corev1.Container) {
	if len(r.daemonSets) != 1 {
		p.add("want one DaemonSet, got %d", len(r.daemonSets))
		return nil, nil, nil, nil
	}
	spec = &r.daemonSets[0].Spec.Template.Spec
	agent, zeek, shim = container(spec, "agent"), container(spec, "zeek"), container(spec, "shim")
	if agent == nil || zeek == nil || shim == nil {
		p.add("the capture pod lacks the agent, zeek or shim container")
		return nil, nil, nil, nil
	}
	return spec, agent, zeek, shim
}

func (r *rendered) flpPod(p *problems) (*corev1.PodSpec, *corev1.Container) {
	if len(r.deployments) != 1 {
		p.add("want one Deployment (flowlogs-pipeline), got %d", len(r.deployments))
		return nil, nil
	}
	spec := &r.deployments[0].Spec.Template.Spec
	c := container(spec, "flowlogs-pipeline")
	if c == nil {
		p.add("the flowlogs-pipeline Deployment has no flowlogs-pipeline container")
	}
	return spec, c
}

// --- environment -----------------------------------------------------------

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// Every variable a container sets is one its program reads: a typo would
// silently leave the default in place. A variable only referenced by
// another's $(NAME) (the pod's address) is Kubernetes', and must come
// earlier in the list, or Kubernetes leaves the reference as text.
func checkEnv(r *rendered, f *facts, p *problems) {
	_, agent, zeek, shim := r.capturePod(p)
	if agent == nil {
		return
	}
	for _, c := range []struct {
		ctr   *corev1.Container
		known func(string) bool
		what  string
	}{
		{agent, func(v string) bool { _, ok := f.agentVars[v]; return ok }, "pano-agent --help"},
		{shim, func(v string) bool { _, ok := f.shimVars[v]; return ok }, "pano-shim --help"},
		{zeek, func(v string) bool { return f.zeekVars[v] }, "zeek-package's entrypoint.sh or scripts"},
	} {
		defined := map[string]bool{}
		referenced := map[string]bool{}
		for _, e := range c.ctr.Env {
			for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
				referenced[m[1]] = true
				if !defined[m[1]] {
					p.add("%s: %s refers to $(%s), which is not set before it", c.ctr.Name, e.Name, m[1])
				}
			}
			defined[e.Name] = true
		}
		for _, e := range c.ctr.Env {
			if !c.known(e.Name) && !referenced[e.Name] {
				p.add("%s: sets %s, which %s does not document", c.ctr.Name, e.Name, c.what)
			}
		}
	}
}

// --- capture pod -------------------------------------------------------------

// listenAddr parses a program's listen address as the pod sets it.
func listenAddr(c *corev1.Container, name string, p *problems) (host string, port int) {
	v, ok := env(c, name)
	if !ok {
		p.add("%s: %s is not set", c.Name, name)
		return "", 0
	}
	h, ps, err := net.SplitHostPort(v)
	if err != nil {
		p.add("%s: %s=%q is not host:port", c.Name, name, v)
		return "", 0
	}
	n, err := strconv.Atoi(ps)
	if err != nil {
		p.add("%s: %s=%q has no numeric port", c.Name, name, v)
	}
	return h, n
}

func portNamed(c *corev1.Container, name string) int {
	for _, cp := range c.Ports {
		if cp.Name == name {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func checkCapture(r *rendered, _ *facts, p *problems) {
	spec, agent, zeek, shim := r.capturePod(p)
	if spec == nil {
		return
	}
	if !spec.HostNetwork {
		p.add("the capture pod is not on the host's network: the agent would see only the pod's interface")
	}
	if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		p.add("the capture pod uses dnsPolicy %q on the host's network: the shim cannot resolve Kafka's service names", spec.DNSPolicy)
	}

	// Agent -> Zeek: the same loopback port, one stream per worker.
	aAddr, _ := env(agent, "PCA_SERVER_ADDR")
	zAddr, _ := env(zeek, "PCA_SERVER_ADDR")
	aPort, _ := env(agent, "PCA_SERVER_PORT")
	zPort, _ := env(zeek, "PCA_SERVER_PORT")
	if aAddr != "127.0.0.1" || zAddr != aAddr {
		p.add("zeek dials %s, the agent serves PCAP-over-TCP on %s (want the node's loopback for both)", zAddr, aAddr)
	}
	if aPort != zPort {
		p.add("zeek dials port %s, the agent serves port %s", zPort, aPort)
	}
	streams, _ := env(agent, "PCA_STREAMS")
	workers, _ := env(zeek, "ZEEK_WORKERS")
	if streams != workers {
		p.add("the agent serves %s stream(s) for %s Zeek worker(s): each worker reads one stream", streams, workers)
	}
	if zeek.ReadinessProbe == nil || zeek.ReadinessProbe.Exec == nil {
		p.add("zeek has no exec readiness probe")
	} else {
		n, _ := strconv.Atoi(aPort)
		want := fmt.Sprintf(":%04X 01", n)
		if !strings.Contains(strings.Join(zeek.ReadinessProbe.Exec.Command, " "), want) {
			p.add("zeek's readiness probe does not look for a connection to remote port %s (%q)", aPort, want)
		}
	}

	// Zeek -> shim: one volume, logs where the shim reads them, positions on it.
	logDir, _ := env(zeek, "ZEEK_LOG_DIR")
	stateDir, _ := env(shim, "SHIM_STATE_DIR")
	zVol, shimLogVol, stateVol := volumeAt(zeek, logDir), volumeAt(shim, logDir), volumeAt(shim, stateDir)
	if zVol == "" || zVol != shimLogVol {
		p.add("zeek writes its logs to %s on volume %q, the shim sees that path on volume %q", logDir, zVol, shimLogVol)
	}
	if stateVol == "" || stateVol != zVol {
		p.add("the shim keeps its positions in %s on volume %q, not on the logs' volume %q", stateDir, stateVol, zVol)
	}
	logs, _ := env(shim, "SHIM_LOGS")
	n, _ := strconv.Atoi(workers)
	for _, l := range strings.Split(logs, ",") {
		if !strings.HasPrefix(l, strings.TrimSuffix(logDir, "/")+"/") {
			p.add("the shim reads %s, outside Zeek's log folder %s", l, logDir)
		}
	}
	for _, log := range shimLogNames(logs) {
		where := filepath.Join(logDir, log+".log")
		if n > 1 {
			where = filepath.Join(logDir, "worker-"+strconv.Itoa(n-1), log+".log")
		}
		if !slices.ContainsFunc(strings.Split(logs, ","), func(pat string) bool { ok, _ := filepath.Match(pat, where); return ok }) {
			p.add("with %d worker(s) Zeek writes %s, which no SHIM_LOGS pattern matches", n, where)
		}
	}
}

// volumeAt returns the volume a container mounts at path or above it.
func volumeAt(c *corev1.Container, path string) string {
	best, vol := -1, ""
	for _, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) > best {
			best, vol = len(mp), m.Name
		}
	}
	return vol
}

// shimLogNames returns the log names SHIM_LOGS forwards (dns for dns.log).
func shimLogNames(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, ",") {
		base := filepath.Base(strings.TrimSpace(l))
		name := strings.TrimSuffix(base, filepath.Ext(base))
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// --- Kafka -------------------------------------------------------------------

func (r *rendered) flpConfig(p *problems) map[string]any {
	cm := r.configMap("-flowlogs-pipeline")
	if cm == nil {
		p.add("no flowlogs-pipeline ConfigMap")
		return nil
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["flowlogs-pipeline.yaml"]), &cfg); err != nil {
		p.add("flowlogs-pipeline configuration: %v", err)
		return nil
	}
	return cfg
}

// kafkaIngests returns the configuration's Kafka ingest stages.
func kafkaIngests(cfg map[string]any) []map[string]any {
	var out []map[string]any
	params, _ := cfg["parameters"].([]any)
	for _, pa := range params {
		in, _ := pa.(map[string]any)["ingest"].(map[string]any)
		if k, ok := in["kafka"].(map[string]any); ok && in["type"] == "kafka" {
			out = append(out, k)
		}
	}
	return out
}

func checkKafka(r *rendered, f *facts, p *problems) {
	_, _, _, shim := r.capturePod(p)
	cfg := r.flpConfig(p)
	if shim == nil || cfg == nil {
		return
	}
	brokers, _ := env(shim, "KAFKA_BROKERS")
	prefix, _ := env(shim, "SHIM_TOPIC_PREFIX")
	if one, ok := env(shim, "SHIM_TOPIC"); ok && one != "" {
		p.add("the shim sends every log to topic %s; flowlogs-pipeline reads one topic per log", one)
	}
	var shimTopics []string
	for _, l := range shimLogNames(mustEnv(shim, "SHIM_LOGS")) {
		shimTopics = append(shimTopics, prefix+l)
	}
	var flpTopics []string
	for _, k := range kafkaIngests(cfg) {
		topic, _ := k["topic"].(string)
		flpTopics = append(flpTopics, topic)
		var got []string
		for _, b := range asList(k["brokers"]) {
			got = append(got, fmt.Sprint(b))
		}
		if strings.Join(got, ",") != brokers {
			p.add("flowlogs-pipeline reads topic %s from brokers %v, the shim writes to %s", topic, got, brokers)
		}
	}
	slices.Sort(shimTopics)
	slices.Sort(flpTopics)
	if !slices.Equal(shimTopics, flpTopics) {
		p.add("flowlogs-pipeline reads topics %v, the shim writes %v", flpTopics, shimTopics)
	}

	// The chart's configuration is the repository's but for brokers,
	// topic prefix and metrics port.
	want := deepCopy(f.flpConfig)
	for _, k := range kafkaIngests(want) {
		k["brokers"] = asList(strings.Split(brokers, ","))
		k["topic"] = prefix + fmt.Sprint(k["topic"])
	}
	if ms, ok := want["metricsSettings"].(map[string]any); ok {
		got, _ := cfg["metricsSettings"].(map[string]any)
		ms["port"] = got["port"]
	}
	if a, b := canonical(want), canonical(cfg); a != b {
		p.add("the chart's flowlogs-pipeline configuration is not fl-pipeline-config/flowlogs-pipeline.yaml (brokers, topics and port aside)")
	}

	if len(r.kafkas) == 0 {
		if len(r.topics)+len(r.nodePools) > 0 {
			p.add("Strimzi topics or node pools without a Kafka")
		}
		return
	}
	k := r.kafkas[0]
	port := 0
	for _, l := range k.Spec.Kafka.Listeners {
		if !l.TLS && l.Type == "internal" {
			port = l.Port
		}
	}
	if want := fmt.Sprintf("%s-kafka-bootstrap:%d", k.Metadata.Name, port); brokers != want {
		p.add("the shim writes to %s; the Strimzi cluster's plain listener is %s", brokers, want)
	}
	var made []string
	replicas := 1
	if len(r.deployments) == 1 && r.deployments[0].Spec.Replicas != nil {
		replicas = int(*r.deployments[0].Spec.Replicas)
	}
	for _, t := range r.topics {
		made = append(made, t.Spec.TopicName)
		if t.Metadata.Labels["strimzi.io/cluster"] != k.Metadata.Name {
			p.add("KafkaTopic %s belongs to cluster %q, not %s", t.Metadata.Name, t.Metadata.Labels["strimzi.io/cluster"], k.Metadata.Name)
		}
		if t.Spec.Partitions < replicas {
			p.add("topic %s has %d partition(s) for %d flowlogs-pipeline replicas: some would idle", t.Spec.TopicName, t.Spec.Partitions, replicas)
		}
	}
	for _, t := range shimTopics {
		if !slices.Contains(made, t) {
			p.add("no KafkaTopic creates topic %s (made: %v)", t, made)
		}
	}
	if len(r.nodePools) == 0 {
		p.add("a Strimzi Kafka without a KafkaNodePool")
	}
	for _, np := range r.nodePools {
		if np.Metadata.Labels["strimzi.io/cluster"] != k.Metadata.Name {
			p.add("KafkaNodePool %s belongs to cluster %q, not %s", np.Metadata.Name, np.Metadata.Labels["strimzi.io/cluster"], k.Metadata.Name)
		}
		if !slices.Contains(np.Spec.Roles, "broker") || !slices.Contains(np.Spec.Roles, "controller") {
			p.add("KafkaNodePool %s has roles %v; KRaft needs brokers and controllers", np.Metadata.Name, np.Spec.Roles)
		}
	}
	if k.Spec.EntityOperator.TopicOperator == nil {
		p.add("the Kafka has no topic operator: the KafkaTopics would never be made")
	}
}

func mustEnv(c *corev1.Container, name string) string { v, _ := env(c, name); return v }

func asList(v any) []any {
	switch l := v.(type) {
	case []any:
		return l
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out
	}
	return nil
}

func canonical(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unmarshalable: " + err.Error()
	}
	return string(b)
}

func deepCopy(m map[string]any) map[string]any {
	var out map[string]any
	_ = json.Unmarshal([]byte(canonical(m)), &out)
	return out
}

// --- metrics -------------------------------------------------------------------

func checkMetrics(r *rendered, f *facts, p *problems) {
	spec, agent, _, shim := r.capturePod(p)
	flpSpec, flp := r.flpPod(p)
	cfg := r.flpConfig(p)
	if spec == nil || flp == nil || cfg == nil {
		return
	}
	podIP := func(c *corev1.Container) bool {
		for _, e := range c.Env {
			if e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
				return true
			}
		}
		return false
	}
	for _, m := range []struct {
		c             *corev1.Container
		variable, pod string
	}{{agent, "METRICS_ADDR", "agent-metrics"}, {shim, "SHIM_METRICS_ADDR", "shim-metrics"}} {
		host, port := listenAddr(m.c, m.variable, p)
		switch {
		case host == "$(POD_IP)" && !podIP(m.c):
			p.add("%s: %s listens on $(POD_IP), which is not the pod's address", m.c.Name, m.variable)
		case host != "$(POD_IP)" && host != "" && host != "0.0.0.0":
			p.add("%s: %s listens on %s, which Prometheus cannot reach", m.c.Name, m.variable, host)
		}
		if got := portNamed(m.c, m.pod); got != port {
			p.add("%s: %s listens on port %d, the container declares %s as %d", m.c.Name, m.variable, port, m.pod, got)
		}
	}
	ms, _ := cfg["metricsSettings"].(map[string]any)
	if got := portNamed(flp, "flp-metrics"); fmt.Sprint(ms["port"]) != strconv.Itoa(got) {
		p.add("flowlogs-pipeline serves metrics on port %v, the container declares flp-metrics as %d", ms["port"], got)
	}

	// Scrape annotations point at a served port.
	for _, pod := range []struct {
		ann  map[string]string
		spec *corev1.PodSpec
		name string
	}{{r.daemonSets[0].Spec.Template.Annotations, spec, "capture"}, {r.deployments[0].Spec.Template.Annotations, flpSpec, "flowlogs-pipeline"}} {
		if port, ok := pod.ann["prometheus.io/port"]; ok && !servesPort(pod.spec, port) {
			p.add("the %s pod's prometheus.io/port %s is no metrics port of its containers", pod.name, port)
		}
	}

	// PodMonitors select the pods and name their ports.
	for _, pm := range r.podMonitors {
		sel, err := metav1LabelSelector(pm)
		if err != nil {
			p.add("PodMonitor %s: %v", pm.Name, err)
			continue
		}
		var target *corev1.PodSpec
		switch {
		case sel.Matches(labels.Set(r.daemonSets[0].Spec.Template.Labels)):
			target = spec
		case sel.Matches(labels.Set(r.deployments[0].Spec.Template.Labels)):
			target = flpSpec
		default:
			p.add("PodMonitor %s selects no pod of the chart", pm.Name)
			continue
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || !servesNamedPort(target, *ep.Port) {
				p.add("PodMonitor %s scrapes port %v, which its pods do not declare", pm.Name, derefStr(ep.Port))
			}
		}
		if target == flpSpec {
			checkRelabel(pm, f, p)
		} else {
			checkNodeLabel(pm, p)
		}
	}
	if len(r.rules) > 0 && len(r.podMonitors) != 2 {
		p.add("with the Prometheus Operator, want a PodMonitor for the capture pods and one for flowlogs-pipeline; got %d", len(r.podMonitors))
	}
}

func metav1LabelSelector(pm *monitoringv1.PodMonitor) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
}

func derefStr(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func servesPort(spec *corev1.PodSpec, port string) bool {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if strconv.Itoa(int(cp.ContainerPort)) == port && strings.HasSuffix(cp.Name, "-metrics") {
				return true
			}
		}
	}
	return false
}

func servesNamedPort(spec *corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		if portNamed(&c, name) != 0 {
			return true
		}
	}
	return false
}

// checkNodeLabel: every capture endpoint labels its series with the
// pod's node, as node-name.zeek labels the DNS metrics (PANO_NODE is the
// node's name): the dashboards filter the agent's and shim's panels by
// node and join captures nobody reads on it.
func checkNodeLabel(pm *monitoringv1.PodMonitor, p *problems) {
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		found := false
		for _, rc := range ep.RelabelConfigs {
			if len(rc.SourceLabels) == 1 && rc.SourceLabels[0] == "__meta_kubernetes_pod_node_name" &&
				rc.TargetLabel == "node" && (rc.Action == "" || strings.EqualFold(rc.Action, "replace")) {
				found = true
			}
		}
		if !found {
			p.add("PodMonitor %s's endpoint %s does not set node from __meta_kubernetes_pod_node_name: the dashboards' node filter would hide its series", pm.Name, derefStr(ep.Port))
		}
	}
}

// checkRelabel compares flowlogs-pipeline's metric relabelings with
// prometheus.yml's: they make the histograms the rules read.
func checkRelabel(pm *monitoringv1.PodMonitor, f *facts, p *problems) {
	var want []monitoringv1.RelabelConfig
	for _, rc := range f.flpRelabel {
		camel := map[string]any{}
		for k, v := range rc {
			parts := strings.Split(k, "_")
			for i := 1; i < len(parts); i++ {
				parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
			}
			camel[strings.Join(parts, "")] = v
		}
		var c monitoringv1.RelabelConfig
		if err := json.Unmarshal([]byte(canonical(camel)), &c); err != nil {
			p.add("prometheus.yml relabeling %v: %v", rc, err)
			return
		}
		want = append(want, c)
	}
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		if !reflect.DeepEqual(ep.MetricRelabelConfigs, want) {
			p.add("PodMonitor %s's metricRelabelings are not prometheus.yml's for job flowlogs-pipeline (%d vs %d rules)", pm.Name, len(ep.MetricRelabelConfigs), len(want))
		}
	}
}

// --- rules ---------------------------------------------------------------------

func checkRules(r *rendered, f *facts, p *problems) {
	cfg := r.flpConfig(p)
	if len(r.rules) == 0 || cfg == nil {
		return
	}
	got := r.rules[0].Spec.Groups
	if len(r.rules) != 1 || len(got) != len(f.ruleGroups) {
		p.add("the PrometheusRule holds %d groups, prometheus/rules %d", len(got), len(f.ruleGroups))
		return
	}
	produced := flpMetrics(cfg)
	for i, g := range got {
		w := f.ruleGroups[i]
		if g.Name != w.Name || !sameDur(g.Interval, w.Interval) || len(g.Rules) != len(w.Rules) || !reflect.DeepEqual(nonNil(g.Labels), nonNil(w.Labels)) {
			p.add("rule group %d: %s (%d rules) in the chart, %s (%d rules) in prometheus/rules", i, g.Name, len(g.Rules), w.Name, len(w.Rules))
			continue
		}
		for j, rule := range g.Rules {
			wr := w.Rules[j]
			same := rule.Record == wr.Record && rule.Alert == wr.Alert && rule.Expr.String() == wr.Expr &&
				sameDur(rule.For, wr.For) && sameDur((*monitoringv1.Duration)(rule.KeepFiringFor), wr.KeepFiringFor) &&
				reflect.DeepEqual(nonNil(rule.Labels), nonNil(wr.Labels)) && reflect.DeepEqual(nonNil(rule.Annotations), nonNil(wr.Annotations))
			if !same {
				p.add("group %s rule %d (%s%s) differs from prometheus/rules", g.Name, j, rule.Record, rule.Alert)
			}
			// Each PANO series a rule reads is made by flowlogs-pipeline.
			expr, err := parser.ParseExpr(rule.Expr.String())
			if err != nil {
				p.add("group %s rule %d: %v", g.Name, j, err)
				continue
			}
			for _, vs := range parser.ExtractSelectors(expr) {
				for _, m := range vs {
					if m.Name == model.MetricNameLabel && regexp.MustCompile(`^pano_(dns|http|tls)_`).MatchString(m.Value) && !produced[m.Value] {
						p.add("rule %s%s reads %s, which flowlogs-pipeline does not export", rule.Record, rule.Alert, m.Value)
					}
				}
			}
		}
	}
}

// flpMetrics returns the series names flowlogs-pipeline's prom encoders
// export (histograms as _bucket, _sum and _count).
func flpMetrics(cfg map[string]any) map[string]bool {
	out := map[string]bool{}
	params, _ := cfg["parameters"].([]any)
	for _, pa := range params {
		enc, _ := pa.(map[string]any)["encode"].(map[string]any)
		prom, _ := enc["prom"].(map[string]any)
		prefix, _ := prom["prefix"].(string)
		for _, m := range asList(prom["metrics"]) {
			mm, _ := m.(map[string]any)
			name := prefix + fmt.Sprint(mm["name"])
			out[name] = true
			if mm["type"] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					out[name+s] = true
				}
			}
		}
	}
	return out
}

func sameDur(d *monitoringv1.Duration, want model.Duration) bool {
	if d == nil || *d == "" {
		return want == 0
	}
	got, err := model.ParseDuration(string(*d))
	return err == nil && got == want
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// --- dashboards ----------------------------------------------------------------

var dsUID = regexp.MustCompile(`"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"`)

func checkDashboards(r *rendered, f *facts, p *problems) {
	seen := map[string]bool{}
	var uids []string
	for _, cm := range r.configMaps {
		if cm.Labels["grafana_dashboard"] == "" {
			continue
		}
		for key, data := range cm.Data {
			want, ok := f.dashboards[key]
			switch {
			case !ok:
				p.add("ConfigMap %s carries dashboard %s, which grafana/dashboards does not have", cm.Name, key)
			case strings.TrimRight(data, "\n") != strings.TrimRight(string(want), "\n"):
				p.add("ConfigMap %s's %s is not grafana/dashboards/%s", cm.Name, key, key)
			}
			seen[key] = true
			for _, m := range dsUID.FindAllStringSubmatch(data, -1) {
				uids = append(uids, m[1])
			}
		}
	}
	if len(seen) == 0 {
		return // dashboards off
	}
	for key := range f.dashboards {
		if !seen[key] {
			p.add("dashboard %s is in grafana/dashboards but in no ConfigMap", key)
		}
	}
	ds := r.configMap("-datasource")
	if ds == nil {
		return
	}
	var prov struct {
		Datasources []struct {
			UID string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	for _, v := range ds.Data {
		if err := yaml.Unmarshal([]byte(v), &prov); err != nil {
			p.add("datasource ConfigMap: %v", err)
		}
	}
	for _, u := range uids {
		if !slices.ContainsFunc(prov.Datasources, func(d struct {
			UID string `yaml:"uid"`
		}) bool {
			return d.UID == u
		}) {
			p.add("a dashboard queries datasource uid %s, which the datasource ConfigMap does not provide", u)
			return
		}
	}
}

// --- images ----------------------------------------------------------------------

// The images are docker-compose.yml's (which build-me.sh builds or pins),
// under the chart's registry when one is set.
func checkImages(r *rendered, f *facts, p *problems) {
	spec, _, _, _ := r.capturePod(p)
	flpSpec, _ := r.flpPod(p)
	if spec == nil || flpSpec == nil {
		return
	}
	for _, c := range []struct {
		spec            *corev1.PodSpec
		container, from string
	}{{spec, "agent", "agent"}, {spec, "zeek", "zeek"}, {spec, "shim", "shim"}, {flpSpec, "flowlogs-pipeline", "flowlogs-pipeline"}} {
		got := container(c.spec, c.container).Image
		want := f.composeImages[c.from]
		if got != want && !strings.HasSuffix(got, "/"+want) {
			p.add("container %s runs %s; docker-compose.yml's %s runs %s", c.container, got, c.from, want)
		}
	}
	for _, ic := range spec.InitContainers {
		if want := f.composeImages["zeek"]; ic.Image != want && !strings.HasSuffix(ic.Image, "/"+want) {
			p.add("init container %s runs %s, not the Zeek image %s", ic.Name, ic.Image, want)
		}
	}
	if len(r.kafkas) > 0 {
		_, tag := splitTag(f.composeImages["kafka"])
		if v := r.kafkas[0].Spec.Kafka.Version; v != tag {
			p.add("the Strimzi Kafka runs version %s; docker-compose.yml's kafka runs %s", v, tag)
		}
	}
}

func splitTag(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}
