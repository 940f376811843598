{{- define "kafka-expose.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-expose.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: webhook
app.kubernetes.io/part-of: kafka-expose
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kafka-expose.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-expose.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Pod-level settings the server and the hook Jobs share: pull secrets and placement. */}}
{{- define "kafka-expose.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Combinations that cannot work, refused with the values to change. */}}
{{- define "kafka-expose.validate" -}}
{{- if eq (int .Values.webhook.port) (int .Values.adminPort) }}
{{- fail (printf "webhook.port and adminPort are both %v: the server cannot listen twice on one port" .Values.webhook.port) }}
{{- end }}
{{- if and (eq .Values.certificates.mode "cert-manager") .Values.certificates.certManager.issuerRef (not .Values.certificates.certManager.issuerRef.name) }}
{{- fail "certificates.certManager.issuerRef needs a name (and a kind: Issuer or ClusterIssuer)" }}
{{- end }}
{{- if and .Values.hostNetwork (lt (int .Values.webhook.port) 1024) }}
{{- fail (printf "webhook.port=%v with hostNetwork: the server runs without privileges and cannot bind a port below 1024 on the node" .Values.webhook.port) }}
{{- end }}
{{- end -}}

{{- define "kafka-expose.secretName" -}}
{{ .Values.certificates.secretName | default (printf "%s-tls" (include "kafka-expose.fullname" .)) }}
{{- end -}}

{{/*
Whether the API server evaluates webhook match conditions (1.28+, on by default), unless
webhook.matchConditions says "true" or "false". Then the workload webhook carries the key
condition, and the server registers a webhook per live policy.
*/}}
{{- define "kafka-expose.matchConditions" -}}
{{- $v := toString .Values.webhook.matchConditions -}}
{{- if eq $v "true" -}}true
{{- else if eq $v "false" -}}
{{- else if semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version -}}true
{{- end -}}
{{- end }}

{{/*
Whether the server registers webhooks itself: the bindings webhook on demand, or a webhook per
policy beside the workload webhook's match condition.
*/}}
{{- define "kafka-expose.registrar" -}}
{{- if or .Values.webhook.bindings.enabled (include "kafka-expose.matchConditions" .) -}}true{{- end -}}
{{- end }}

{{/*
The key condition's CEL: the object, or the object it replaces, has a kafka-expose.io/ annotation
or label key, on itself or its pod template. The same text as the server's
engine::registration::keys_expression (tests/deploy.rs compares them).
*/}}
{{- define "kafka-expose.keysExpression" -}}
(object != null && ((has(object.metadata) && ((has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('kafka-expose.io/'))) || (has(object.metadata.labels) && object.metadata.labels.exists(k, k.startsWith('kafka-expose.io/'))))) || (has(object.spec) && has(object.spec.template) && has(object.spec.template.metadata) && ((has(object.spec.template.metadata.annotations) && object.spec.template.metadata.annotations.exists(k, k.startsWith('kafka-expose.io/'))) || (has(object.spec.template.metadata.labels) && object.spec.template.metadata.labels.exists(k, k.startsWith('kafka-expose.io/'))))))) || (oldObject != null && ((has(oldObject.metadata) && ((has(oldObject.metadata.annotations) && oldObject.metadata.annotations.exists(k, k.startsWith('kafka-expose.io/'))) || (has(oldObject.metadata.labels) && oldObject.metadata.labels.exists(k, k.startsWith('kafka-expose.io/'))))) || (has(oldObject.spec) && has(oldObject.spec.template) && has(oldObject.spec.template.metadata) && ((has(oldObject.spec.template.metadata.annotations) && oldObject.spec.template.metadata.annotations.exists(k, k.startsWith('kafka-expose.io/'))) || (has(oldObject.spec.template.metadata.labels) && oldObject.spec.template.metadata.labels.exists(k, k.startsWith('kafka-expose.io/')))))))
{{- end }}
