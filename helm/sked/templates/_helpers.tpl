{{/*
sked.name is the chart name, or nameOverride, cut to the 63 characters a label value allows.
*/}}
{{- define "sked.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sked.fullname is the base name of every object: fullnameOverride, or the release name
followed by the chart name unless the release name already contains it. It is cut to 63
characters because some objects, Services among them, must have DNS label names.
*/}}
{{- define "sked.fullname" -}}
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

{{/*
sked.chart is the chart name and version, as the helm.sh/chart label shows them.
*/}}
{{- define "sked.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
sked.selectorLabels are the labels that select the operator Pods. They must never change
between releases, because a Deployment's selector is immutable.
*/}}
{{- define "sked.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sked.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
sked.labels are the recommended Kubernetes labels that every object of the chart carries.
*/}}
{{- define "sked.labels" -}}
helm.sh/chart: {{ include "sked.chart" . }}
{{ include "sked.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
sked.serviceAccountName is the name of the ServiceAccount the operator runs as: the one the
chart creates, or serviceAccount.name when the chart creates none.
*/}}
{{- define "sked.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sked.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
sked.image is the image reference: repository with the digest when one is set, else with
the tag, which defaults to the chart's appVersion.
*/}}
{{- define "sked.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
sked.workloadRules are the RBAC rules the operator needs in every namespace it watches,
shared by the ClusterRole and the per-namespace Roles. Each verb is one the operator uses:
  - scheduledjobs get, list, watch: kopf's watch, the list at start, and re-reads after a
    conflicting status write;
  - scheduledjobs/status patch: the only write to a ScheduledJob;
  - scheduledjobs/finalizers update: Pods carry an ownerReference with blockOwnerDeletion to
    their ScheduledJob, which the OwnerReferencesPermissionEnforcement admission plugin
    allows only to users who may update the owner's finalizers;
  - pods create (dry-run checks included), delete, deletecollection (finished Pods
    that left the history, many in one request), get, list, watch;
  - events create: one Event per decision, on the ScheduledJob.
*/}}
{{- define "sked.workloadRules" -}}
- apiGroups: ["sked.dev"]
  resources: ["scheduledjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sked.dev"]
  resources: ["scheduledjobs/status"]
  verbs: ["patch"]
- apiGroups: ["sked.dev"]
  resources: ["scheduledjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["create", "delete", "deletecollection", "get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
sked.nodeRules is the rule behind rbac.nodes: get on Nodes, which placement features read.
*/}}
{{- define "sked.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
{{- end }}

{{/*
sked.args are the arguments of `sked run`, built from the values.
*/}}
{{- define "sked.args" -}}
- --metrics-host=0.0.0.0
- --metrics-port={{ .Values.metrics.port }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- if not .Values.metrics.perJobLabels }}
- --no-per-job-metrics
{{- end }}
{{- with .Values.leaderElection }}
{{- if .enabled }}
- --leader-elect
- --lease-name={{ .leaseName }}
- --lease-namespace={{ $.Release.Namespace }}
- --lease-duration={{ .leaseDurationSeconds }}
- --renew-deadline={{ .renewDeadlineSeconds }}
- --retry-period={{ .retryPeriodSeconds }}
{{- else }}
- --no-leader-elect
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
sked.validate fails the render on combinations of values that the schema cannot express:
several replicas without leader election, and Lease timings out of order.
*/}}
{{- define "sked.validate" -}}
{{- $election := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $election.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: several replicas would schedule the same runs. Set leaderElection.enabled to true or replicaCount to 1." (int .Values.replicaCount)) }}
{{- end }}
{{- if $election.enabled }}
{{- $duration := float64 $election.leaseDurationSeconds }}
{{- $deadline := float64 $election.renewDeadlineSeconds }}
{{- $retry := float64 $election.retryPeriodSeconds }}
{{- if not (and (gt $duration $deadline) (gt $deadline $retry)) }}
{{- fail (printf "invalid Lease timings: leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds (got %v, %v, %v); for example 15, 10 and 2." $election.leaseDurationSeconds $election.renewDeadlineSeconds $election.retryPeriodSeconds) }}
{{- end }}
{{- end }}
{{- end }}
