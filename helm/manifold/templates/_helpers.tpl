{{/* Names, labels and the pieces every server pod shares. */}}

{{- define "manifold.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "manifold.fullname" -}}
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

{{/* The control-plane services, in the order of `manifold serve --services`. */}}
{{- define "manifold.serviceNames" -}}
tenancy sites gateway replication
{{- end -}}

{{- define "manifold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "manifold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "manifold.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "manifold.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: manifold
{{- end -}}

{{/* The image reference: digest, else tag, else appVersion; never `latest`. */}}
{{- define "manifold.image" -}}
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

{{- define "manifold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "manifold.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "manifold.databaseSecret" -}}
{{- default (printf "%s-database" (include "manifold.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "manifold.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "manifold.fullname" .)) .Values.bootstrapToken.existingSecret -}}
{{- end -}}

{{- define "manifold.caSecret" -}}
{{- default (printf "%s-ca" (include "manifold.fullname" .)) .Values.tls.ca.existingSecret -}}
{{- end -}}

{{- define "manifold.encryptionSecret" -}}
{{- default (printf "%s-encryption" (include "manifold.fullname" .)) .Values.encryption.existingSecret -}}
{{- end -}}

{{/* The encryption keys in use, first (the one that encrypts) first. */}}
{{- define "manifold.encryptionKeys" -}}
{{- if .Values.encryption.keys -}}
{{- join " " .Values.encryption.keys -}}
{{- else -}}
key-1
{{- end -}}
{{- end -}}

{{/* In-cluster DNS name of one service's Service: (dict "root" $ "service" "sites"). */}}
{{- define "manifold.serviceHost" -}}
{{- printf "%s-%s.%s.svc" (include "manifold.fullname" .root) .service .root.Release.Namespace -}}
{{- end -}}

{{/* Whether a service serves with the bring-your-own certificate (replication never). */}}
{{- define "manifold.byoCert" -}}
{{- if and .root.Values.tls.existingSecret (ne .service "replication") -}}true{{- end -}}
{{- end -}}

{{/* Whether a service's pods get the CA private key: the registry signs agent
certificates (sites; replication renews them), and a pod without the BYO
certificate issues its own from the CA. */}}
{{- define "manifold.needsCaKey" -}}
{{- if or (has .service (list "sites" "replication")) (not (include "manifold.byoCert" .)) -}}true{{- end -}}
{{- end -}}

{{/* Names of self-issued server certificates: every Service (peers dial each other
by these), localhost (a process dials its own listener so), the pod IP (replication
forwards log streams to the replica holding a site's stream) and the extra names. */}}
{{- define "manifold.serverNames" -}}
{{- $root := . -}}
{{- $names := list "localhost" "127.0.0.1" "$(POD_IP)" -}}
{{- range (include "manifold.serviceNames" . | splitList " ") -}}
{{- $short := printf "%s-%s" (include "manifold.fullname" $root) . -}}
{{- $host := include "manifold.serviceHost" (dict "root" $root "service" .) -}}
{{- $names = concat $names (list $short (printf "%s.%s" $short $root.Release.Namespace) $host (printf "%s.cluster.local" $host)) -}}
{{- end -}}
{{- concat $names .Values.tls.serverNames | uniq | join "," -}}
{{- end -}}

{{- define "manifold.grpcPublicEndpoint" -}}
{{- default (printf "https://%s:%v" (include "manifold.serviceHost" (dict "root" . "service" "sites")) .Values.ports.grpc) .Values.publicEndpoints.grpc -}}
{{- end -}}

{{- define "manifold.kubeApiPublicUrl" -}}
{{- default (printf "https://%s:%v" (include "manifold.serviceHost" (dict "root" . "service" "gateway")) .Values.ports.kubeApi) .Values.publicEndpoints.kubeApi -}}
{{- end -}}

{{/* host:port for a listener; brackets around IPv6 addresses. */}}
{{- define "manifold.listen" -}}
{{- if contains ":" .root.Values.listenAddress -}}
{{- printf "[%s]:%v" .root.Values.listenAddress .port -}}
{{- else -}}
{{- printf "%s:%v" .root.Values.listenAddress .port -}}
{{- end -}}
{{- end -}}

{{/* DATABASE_URL from the Secret: the one environment variable every container needs. */}}
{{- define "manifold.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "manifold.databaseSecret" . }}
      key: {{ .Values.database.secretKey }}
- name: MANIFOLD__DATABASE__MAX_CONNECTIONS
  value: {{ .Values.database.maxConnections | quote }}
- name: MANIFOLD__DATA_DIR
  value: /var/lib/manifold
- name: MANIFOLD__TELEMETRY__LOG_FORMAT
  value: {{ .Values.telemetry.logFormat | quote }}
- name: MANIFOLD__TELEMETRY__LOG_FILTER
  value: {{ .Values.telemetry.logFilter | quote }}
{{- if .Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.telemetry.otlpEndpoint | quote }}
{{- end }}
{{- end -}}
