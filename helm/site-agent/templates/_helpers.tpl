{{- define "site-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "site-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "site-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "site-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "site-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "site-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: manifold
app.kubernetes.io/component: site-agent
{{- end -}}

{{- define "site-agent.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq (lower $tag) "latest" -}}
{{- fail "image.tag: `latest` is not allowed; pin a version (default: the chart's appVersion)" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "site-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "site-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "site-agent.registrationSecret" -}}
{{- default (printf "%s-registration" (include "site-agent.fullname" .)) .Values.registration.existingSecret -}}
{{- end -}}

{{- define "site-agent.caConfigMap" -}}
{{- default (printf "%s-ca" (include "site-agent.fullname" .)) .Values.controlPlane.caConfigMap -}}
{{- end -}}
