{{/* The chart's name, or nameOverride. */}}
{{- define "burst.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: fullnameOverride, else the release name (with the chart's name unless it has it). */}}
{{- define "burst.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: Deployment, Service, roles and their bindings. */}}
{{- define "burst.operatorName" -}}
{{- printf "%s-operator" (include "burst.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "burst.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "burst.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "burst.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on everything the release makes. */}}
{{- define "burst.commonLabels" -}}
helm.sh/chart: {{ include "burst.chart" . }}
app.kubernetes.io/name: {{ include "burst.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: burst
{{- end }}

{{/* The operator's pods. */}}
{{- define "burst.selectorLabels" -}}
app.kubernetes.io/name: {{ include "burst.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's objects. */}}
{{- define "burst.labels" -}}
{{ include "burst.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "burst.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
What the operator may do wherever it watches (a ClusterRole, or a Role per watched namespace). No wildcards.
- BurstClusters and BurstJobs: read and watch them, patch their finalizers; delete a BurstJob whose TTL is up.
- Their status subresources: read and patch.
- ConfigMaps, Services, Deployments and StatefulSets a BurstCluster owns: created and patched with server-side
  apply; a controller Deployment is swapped for a StatefulSet (and back) when persistence is switched.
- Events about what it did.
*/}}
{{- define "burst.operatorRules" -}}
- apiGroups: ["burst.dev"]
  resources: ["burstclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["burst.dev"]
  resources: ["burstjobs"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["burst.dev"]
  resources: ["burstclusters/status", "burstjobs/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Each BurstCluster's NetworkPolicies (deleted when its networkPolicy.enabled turns false).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
# Each BurstCluster's TLS Secrets: made, read and renewed, by name (never listed; the cluster's deletion removes
# them); a client's (spec.tls.clients) deleted by name when the client leaves the spec.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
