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
