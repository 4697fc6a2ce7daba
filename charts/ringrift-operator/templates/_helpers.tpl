{{/*
Small named helpers shared by the templates. Names: the chart's, the full name that prefixes every
object, and one name per object other templates refer to.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ringrift-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: fullnameOverride, else the release name when it holds the
chart name, else <release>-<chart>. Kept to 52 characters so that suffixes fit in 63. */}}
{{- define "ringrift-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "ringrift-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "ringrift-operator.labels" -}}
helm.sh/chart: {{ include "ringrift-operator.chart" . }}
app.kubernetes.io/name: {{ include "ringrift-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringrift
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "ringrift-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringrift-operator.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: the common labels and its selector labels. */}}
{{- define "ringrift-operator.componentLabels" -}}
{{ include "ringrift-operator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "ringrift-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ringrift-operator.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "ringrift-operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ringrift-operator.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (printf "%s-agent" (include "ringrift-operator.fullname" .)) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the agent token: the user's, or the generated one. */}}
{{- define "ringrift-operator.agentTokenSecretName" -}}
{{- default (printf "%s-agent-token" (include "ringrift-operator.fullname" .)) .Values.agent.token.existingSecret }}
{{- end }}

{{- define "ringrift-operator.agentTokenSecretKey" -}}
{{- if .Values.agent.token.existingSecret }}{{ .Values.agent.token.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "ringrift-operator.settingsConfigMapName" -}}
{{- printf "%s-settings" (include "ringrift-operator.fullname" .) }}
{{- end }}

{{/* The leader-election Lease, in the release namespace; the operator's Role names it. */}}
{{- define "ringrift-operator.leaseName" -}}
{{- include "ringrift-operator.fullname" . }}
{{- end }}

{{- define "ringrift-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "ringrift-operator.fullname" .) }}
{{- end }}

{{/* Paths inside the containers. */}}
{{- define "ringrift-operator.historyDir" -}}/var/lib/ringrift-operator{{- end }}
{{- define "ringrift-operator.settingsDir" -}}/etc/ringrift-operator{{- end }}
{{- define "ringrift-operator.tokenDir" -}}/var/run/ringrift{{- end }}
{{- define "ringrift-operator.tokenFile" -}}{{ include "ringrift-operator.tokenDir" . }}/agent-token{{- end }}

{{/* The settings document (OperatorSettings): the user's settings plus what the chart owns: the
history store on its volume, the mounted agent token, the data directory the agent serves, the
HTTP port the probes use, and the Lease its Role names. */}}
{{- define "ringrift-operator.settings" -}}
{{- $settings := deepCopy .Values.settings }}
{{- $_ := set $settings "history_path" (printf "%s/history.db" (include "ringrift-operator.historyDir" .)) }}
{{- $_ := set $settings "agent_token_file" (include "ringrift-operator.tokenFile" .) }}
{{- $_ := set $settings "http_port" (int .Values.operator.http.port) }}
{{- $_ := set $settings "lease_name" (include "ringrift-operator.leaseName" .) }}
{{- $_ := set $settings "lease_namespace" .Release.Namespace }}
{{- $workload := deepCopy (default dict $settings.workload) }}
{{- $_ := set $workload "data_host_path" .Values.agent.dataDir }}
{{- $_ := set $settings "workload" $workload }}
{{- toYaml $settings }}
{{- end }}

{{/* Annotations of the CRDs. */}}
{{- define "ringrift-operator.crdAnnotations" -}}
{{- if .Values.crds.keep }}
helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* The volume holding the agent token, mounted by the operator and the agent. */}}
{{- define "ringrift-operator.tokenVolume" -}}
- name: agent-token
  secret:
    secretName: {{ include "ringrift-operator.agentTokenSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "ringrift-operator.agentTokenSecretKey" . }}
        path: agent-token
{{- end }}

{{/* Refuse value combinations that would render but not run. */}}
{{- define "ringrift-operator.validate" -}}
{{- $p := .Values.operator.history.persistence }}
{{- if and $p.enabled (not $p.existingClaim) (gt (int .Values.operator.replicas) 1) (not (has "ReadWriteMany" $p.accessModes)) }}
{{- fail "operator.history.persistence: a ReadWriteOnce claim cannot be mounted by several replicas on different nodes; set operator.replicas=1 or accessModes [ReadWriteMany]" }}
{{- end }}
{{- if and (not .Values.settings.leader_election) (gt (int .Values.operator.replicas) 1) }}
{{- fail "settings.leader_election=false with operator.replicas > 1 would run several active operators; set operator.replicas=1" }}
{{- end }}
{{- if and .Values.agent.token.existingSecret (not .Values.agent.token.existingSecretKey) }}
{{- fail "agent.token.existingSecretKey must name the token's key in agent.token.existingSecret" }}
{{- end }}
{{- end }}
