package helmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Strimzi publishes no Go types: these structs hold exactly the fields the
// chart sets, so that strict decoding rejects any other (a typo, a field
// in the wrong place). Field names follow Strimzi's v1beta2 CRDs.
type strimziKafka struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Kafka struct {
			Version   string `json:"version"`
			Listeners []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
				Type string `json:"type"`
				TLS  bool   `json:"tls"`
			} `json:"listeners"`
			Config map[string]any `json:"config"`
		} `json:"kafka"`
		EntityOperator struct {
			TopicOperator *struct{} `json:"topicOperator"`
		} `json:"entityOperator"`
	} `json:"spec"`
}

type strimziNodePool struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Replicas int      `json:"replicas"`
		Roles    []string `json:"roles"`
		Storage  struct {
			Type        string `json:"type"`
			Size        string `json:"size,omitempty"`
			DeleteClaim *bool  `json:"deleteClaim,omitempty"`
		} `json:"storage"`
	} `json:"spec"`
}

type strimziTopic struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		TopicName  string         `json:"topicName"`
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

// rendered is a rendered chart, every object decoded into its type.
type rendered struct {
	text, notes string

	daemonSets  []*appsv1.DaemonSet
	deployments []*appsv1.Deployment
	configMaps  []*corev1.ConfigMap
	podMonitors []*monitoringv1.PodMonitor
	rules       []*monitoringv1.PrometheusRule
	kafkas      []*strimziKafka
	nodePools   []*strimziNodePool
	topics      []*strimziTopic
	kinds       []string // apiVersion/kind name, sorted
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifest splits a rendered manifest into documents and decodes
// each strictly into the type its apiVersion and kind name: an unknown
// field, a duplicate key or a value of the wrong type is an error.
func decodeManifest(manifest string) (*rendered, error) {
	r := &rendered{}
	for i, doc := range docSep.Split(manifest, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var into any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/DaemonSet":
			o := &appsv1.DaemonSet{}
			r.daemonSets, into = append(r.daemonSets, o), o
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			r.deployments, into = append(r.deployments, o), o
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			r.configMaps, into = append(r.configMaps, o), o
		case "monitoring.coreos.com/v1/PodMonitor":
			o := &monitoringv1.PodMonitor{}
			r.podMonitors, into = append(r.podMonitors, o), o
		case "monitoring.coreos.com/v1/PrometheusRule":
			o := &monitoringv1.PrometheusRule{}
			r.rules, into = append(r.rules, o), o
		case "kafka.strimzi.io/v1beta2/Kafka":
			o := &strimziKafka{}
			r.kafkas, into = append(r.kafkas, o), o
		case "kafka.strimzi.io/v1beta2/KafkaNodePool":
			o := &strimziNodePool{}
			r.nodePools, into = append(r.nodePools, o), o
		case "kafka.strimzi.io/v1beta2/KafkaTopic":
			o := &strimziTopic{}
			r.topics, into = append(r.topics, o), o
		default:
			return nil, fmt.Errorf("document %d: no type known for %s %s", i, tm.APIVersion, tm.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			return nil, fmt.Errorf("document %d (%s %s): %w", i, tm.APIVersion, tm.Kind, err)
		}
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = json.Unmarshal(j, &meta)
		if meta.Metadata.Name == "" {
			return nil, fmt.Errorf("document %d (%s): no name", i, tm.Kind)
		}
		r.kinds = append(r.kinds, tm.APIVersion+"/"+tm.Kind+" "+meta.Metadata.Name)
	}
	sort.Strings(r.kinds)
	return r, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func (r *rendered) configMap(suffix string) *corev1.ConfigMap {
	for _, c := range r.configMaps {
		if strings.HasSuffix(c.Name, suffix) {
			return c
		}
	}
	return nil
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// env returns a container's variable ("" and false when unset).
func env(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}
