{{/*
Names. Every resource name derives from kube-vast.fullname: the release name when it already
contains the chart name ("kube-vast"), else "<release>-kube-vast"; truncated to 36 characters so
that every name derived from it (the longest suffix, "-scheduler-authentication-reader", adds 32)
stays within 63, the limit of a DNS label such as a Service name.
*/}}
{{- define "kube-vast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-vast.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 36 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-vast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource; the argument is (dict "ctx" $ "component" "extender"). */}}
{{- define "kube-vast.labels" -}}
helm.sh/chart: {{ include "kube-vast.chart" .ctx }}
{{ include "kube-vast.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kube-vast
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; the argument is (dict "ctx" $ "component" "..."). */}}
{{- define "kube-vast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-vast.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "kube-vast.serviceAccountName" -}}
{{- if .Values.deployment.serviceAccount.create }}
{{- default (include "kube-vast.fullname" .) .Values.deployment.serviceAccount.name }}
{{- else }}
{{- required "deployment.serviceAccount.name is required when deployment.serviceAccount.create is false" .Values.deployment.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-vast.scheduler.serviceAccountName" -}}
{{- if .Values.scheduler.serviceAccount.create }}
{{- default (printf "%s-scheduler" (include "kube-vast.fullname" .)) .Values.scheduler.serviceAccount.name }}
{{- else }}
{{- required "scheduler.serviceAccount.name is required when scheduler.serviceAccount.create is false" .Values.scheduler.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images: "repository@digest" when a digest is given, else "repository:tag". */}}
{{- define "kube-vast.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "kube-vast.scheduler.image" -}}
{{- $img := .Values.scheduler.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}
{{- end }}

{{/* Service names and the in-cluster URLs built from them. */}}
{{- define "kube-vast.extender.serviceName" -}}
{{- printf "%s-extender" (include "kube-vast.fullname" .) }}
{{- end }}

{{- define "kube-vast.extender.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "kube-vast.extender.serviceName" .) .Release.Namespace (int .Values.extender.port) }}
{{- end }}

{{- define "kube-vast.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "kube-vast.fullname" .) }}
{{- end }}

{{/* The webhook's TLS Secret: cert-manager's and the chart's own have different names, so that
switching webhook.tls.certManager.enabled never has Helm delete a Secret cert-manager just wrote. */}}
{{- define "kube-vast.webhook.tlsSecretName" -}}
{{- if .Values.webhook.tls.certManager.enabled }}
{{- printf "%s-webhook-tls-cert-manager" (include "kube-vast.fullname" .) }}
{{- else }}
{{- printf "%s-webhook-tls" (include "kube-vast.fullname" .) }}
{{- end }}
{{- end }}

{{/* The DNS names the webhook's certificate must carry (the API server calls <svc>.<ns>.svc). */}}
{{- define "kube-vast.webhook.dnsNames" -}}
{{- $svc := include "kube-vast.webhook.serviceName" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{- define "kube-vast.simulator.url" -}}
{{- printf "http://%s-simulator.%s.svc:%d" (include "kube-vast.fullname" .) .Release.Namespace (int .Values.simulator.port) }}
{{- end }}

{{/* The name of the scheduler's leader-election Lease. */}}
{{- define "kube-vast.scheduler.leaseName" -}}
{{- default (printf "%s-scheduler" (include "kube-vast.fullname" .)) .Values.scheduler.leaderElection.resourceName }}
{{- end }}

{{/* Where the Vast API key comes from: the Secret's name and key; empty name: no key. */}}
{{- define "kube-vast.vast.secretName" -}}
{{- if .Values.simulator.enabled }}
{{- else if .Values.vast.existingSecret.name }}
{{- .Values.vast.existingSecret.name }}
{{- else if .Values.vast.apiKey }}
{{- printf "%s-vast" (include "kube-vast.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kube-vast.vast.secretKey" -}}
{{- if .Values.vast.existingSecret.name }}
{{- .Values.vast.existingSecret.key }}
{{- else }}
{{- "api-key" }}
{{- end }}
{{- end }}

{{/* Refuse to render a release that could not work. */}}
{{- define "kube-vast.validate" -}}
{{- if and (not .Values.simulator.enabled) (not (include "kube-vast.vast.secretName" .)) }}
{{- fail "kube-vast needs a Vast API key: set vast.existingSecret.name (a Secret holding the key under vast.existingSecret.key) or vast.apiKey, or set simulator.enabled=true for a trial install against the simulated marketplace" }}
{{- end }}
{{- if and .Values.deployment.podDisruptionBudget.minAvailable .Values.deployment.podDisruptionBudget.maxUnavailable }}
{{- fail "deployment.podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if and .Values.scheduler.podDisruptionBudget.minAvailable .Values.scheduler.podDisruptionBudget.maxUnavailable }}
{{- fail "scheduler.podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if and (gt (int .Values.scheduler.replicaCount) 1) (not .Values.scheduler.leaderElection.enabled) }}
{{- fail "scheduler.replicaCount > 1 needs scheduler.leaderElection.enabled: two schedulers without a leader would race for the same pods" }}
{{- end }}
{{- end }}

{{/* A container probe from a values block; the argument is (dict "probe" <block> "handler" <dict>). */}}
{{- define "kube-vast.probe" -}}
{{- $p := .probe }}
{{- toYaml .handler }}
initialDelaySeconds: {{ $p.initialDelaySeconds }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- end }}

{{/* A PodDisruptionBudget spec's availability from a values block. */}}
{{- define "kube-vast.pdbAvailability" -}}
{{- if .minAvailable }}
minAvailable: {{ .minAvailable }}
{{- else if .maxUnavailable }}
maxUnavailable: {{ .maxUnavailable }}
{{- else }}
minAvailable: 1
{{- end }}
{{- end }}
