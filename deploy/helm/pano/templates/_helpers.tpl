{{/* Names and labels. */}}
{{- define "pano.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pano.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (list $ "capture"). */}}
{{- define "pano.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* An image built by build-me.sh, under images.registry when set. */}}
{{- define "pano.image" -}}
{{- $ := index . 0 -}}
{{- $img := index $.Values.images (index . 1) -}}
{{- if $.Values.images.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $.Values.images.registry) $img.repository $img.tag -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $img.tag -}}
{{- end -}}
{{- end -}}

{{/* Kafka bootstrap servers: the Strimzi cluster's plain listener, or the value. */}}
{{- define "pano.bootstrapServers" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:9092" (include "pano.fullname" .) -}}
{{- else -}}
{{- required "set kafka.bootstrapServers (an existing cluster's host:port list) or kafka.strimzi.enabled=true" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/*
The Zeek logs PANO forwards, one per Kafka topic: the topics
flowlogs-pipeline's configuration (files/flowlogs-pipeline.yaml, a copy
of fl-pipeline-config/) reads. A JSON list.
*/}}
{{- define "pano.logs" -}}
{{- $cfg := .Files.Get "files/flowlogs-pipeline.yaml" | fromYaml -}}
{{- $logs := list -}}
{{- range $cfg.parameters -}}
{{- if and .ingest (eq .ingest.type "kafka") -}}
{{- $logs = append $logs .ingest.kafka.topic -}}
{{- end -}}
{{- end -}}
{{- if not $logs -}}{{- fail "files/flowlogs-pipeline.yaml has no Kafka ingest stage" -}}{{- end -}}
{{- toJson $logs -}}
{{- end -}}

{{/*
flowlogs-pipeline's configuration: the repository's, with this release's
brokers, topic prefix and metrics port.
*/}}
{{- define "pano.flpConfig" -}}
{{- $cfg := .Files.Get "files/flowlogs-pipeline.yaml" | fromYaml -}}
{{- $brokers := splitList "," (include "pano.bootstrapServers" .) -}}
{{- range $cfg.parameters -}}
{{- if and .ingest (eq .ingest.type "kafka") -}}
{{- $_ := set .ingest.kafka "brokers" $brokers -}}
{{- $_ := set .ingest.kafka "topic" (printf "%s%s" $.Values.shim.topicPrefix .ingest.kafka.topic) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg.metricsSettings "port" (int .Values.flowlogsPipeline.metricsPort) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Where the shared volume is mounted in Zeek and the shim. */}}
{{- define "pano.dataDir" -}}/data{{- end -}}

{{/* Zeek's and the shim's common securityContext. */}}
{{- define "pano.restricted" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
