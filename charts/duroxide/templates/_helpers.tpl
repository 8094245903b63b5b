{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "duroxide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "duroxide.fullname" -}}
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

{{- define "duroxide.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "duroxide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "duroxide.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "duroxide.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Labels --------------------------------------------------------------------------------- */}}

{{- define "duroxide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "duroxide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "duroxide.labels" -}}
helm.sh/chart: {{ include "duroxide.chart" . }}
{{ include "duroxide.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duroxide
{{- end }}

{{/* The label every supervisor pod carries; the metrics Service and NetworkPolicy select it. */}}
{{- define "duroxide.supervisorLabel" -}}
duroxide.io/supervisor: "true"
{{- end }}

{{/* Database ------------------------------------------------------------------------------- */}}

{{- define "duroxide.migrationSecret" -}}
{{- default .Values.database.existingSecret .Values.migration.existingSecret }}
{{- end }}

{{- define "duroxide.migrationKey" -}}
{{- default .Values.database.urlKey .Values.migration.urlKey }}
{{- end }}

{{/* DUROXIDE_SCHEMA and the TLS variables; the URL is added by the caller. */}}
{{- define "duroxide.databaseEnv" -}}
- name: DUROXIDE_SCHEMA
  value: {{ .Values.schema | quote }}
{{- if .Values.database.tls.enabled }}
- name: PGSSLROOTCERT
  value: {{ printf "%s/%s" (trimSuffix "/" .Values.database.tls.mountPath) .Values.database.tls.key | quote }}
- name: PGSSLMODE
  value: {{ .Values.database.tls.sslMode | quote }}
{{- end }}
{{- end }}

{{/* Volumes every pod mounts: a writable /tmp (read-only root filesystem) and the CA. */}}
{{- define "duroxide.volumes" -}}
- name: tmp
  {{- with .Values.tmpVolume.sizeLimit }}
  emptyDir:
    sizeLimit: {{ . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.database.tls.enabled }}
- name: database-ca
  secret:
    secretName: {{ .Values.database.tls.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ .Values.database.tls.key }}
        path: {{ .Values.database.tls.key }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "duroxide.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.database.tls.enabled }}
- name: database-ca
  mountPath: {{ .Values.database.tls.mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Roles ---------------------------------------------------------------------------------- */}}

{{/* Copies every non-null value of (index . 1) into the dict (index . 0). */}}
{{- define "duroxide.overlay" -}}
{{- $dst := index . 0 }}
{{- range $k, $v := (index . 1) }}
{{- if not (kindIs "invalid" $v) }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The enabled Deployments as a YAML list, each with: name (resource name), component, kind
(orchestrator | worker | pool), tag, and the settings with every default applied.
*/}}
{{- define "duroxide.roles" -}}
{{- $root := . }}
{{- $fullname := include "duroxide.fullname" . }}
{{- $roles := list }}
{{- $entries := list }}
{{- if .Values.orchestrator.enabled }}
{{- $entries = append $entries (dict "component" "orchestrator" "kind" "orchestrator" "tag" "" "values" .Values.orchestrator) }}
{{- end }}
{{- if .Values.worker.enabled }}
{{- $entries = append $entries (dict "component" "worker" "kind" "worker" "tag" "" "values" .Values.worker) }}
{{- end }}
{{- range $tag, $pool := .Values.pools }}
{{- $merged := deepCopy $root.Values.poolDefaults }}
{{- include "duroxide.overlay" (list $merged (omit ($pool | default dict) "autoscaling")) }}
{{- $as := deepCopy ($root.Values.poolDefaults.autoscaling | default dict) }}
{{- include "duroxide.overlay" (list $as (($pool | default dict).autoscaling | default dict)) }}
{{- $_ := set $merged "autoscaling" $as }}
{{- if $merged.enabled }}
{{- $suffix := default ($tag | lower | replace "_" "-" | replace "." "-") $merged.name }}
{{- $entries = append $entries (dict "component" (printf "pool-%s" $suffix) "kind" "pool" "tag" $tag "values" $merged) }}
{{- end }}
{{- end }}
{{- range $e := $entries }}
{{- $v := $e.values }}
{{- /* autoscaling: the top-level values under the Deployment's own non-null ones */}}
{{- $as := omit (deepCopy $root.Values.autoscaling) "keda" "behavior" }}
{{- include "duroxide.overlay" (list $as ($v.autoscaling | default dict)) }}
{{- $mode := $as.mode | default "" }}
{{- if eq $mode "none" }}{{ $mode = "" }}{{ end }}
{{- $_ := set $as "mode" $mode }}
{{- if kindIs "invalid" $as.targetBacklog }}
{{- $_ := set $as "targetBacklog" (mul $v.processes $v.concurrency) }}
{{- end }}
{{- $drain := $root.Values.cluster.drainTimeout }}
{{- if not (kindIs "invalid" $v.drainTimeout) }}{{ $drain = $v.drainTimeout }}{{ end }}
{{- $grace := $root.Values.terminationGracePeriodSeconds }}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) }}{{ $grace = $v.terminationGracePeriodSeconds }}{{ end }}
{{- $r := dict
      "name" (printf "%s-%s" $fullname $e.component)
      "component" $e.component
      "kind" $e.kind
      "tag" $e.tag
      "replicas" $v.replicas
      "processes" $v.processes
      "concurrency" $v.concurrency
      "maxSessions" $v.maxSessions
      "resources" ($v.resources | default dict)
      "drainTimeout" $drain
      "terminationGracePeriodSeconds" $grace
      "podAnnotations" (merge (deepCopy ($v.podAnnotations | default dict)) ($root.Values.podAnnotations | default dict))
      "podLabels" (merge (deepCopy ($v.podLabels | default dict)) ($root.Values.podLabels | default dict))
      "extraEnv" (concat ($root.Values.extraEnv | default list) ($v.extraEnv | default list))
      "nodeSelector" ($v.nodeSelector | default $root.Values.nodeSelector)
      "tolerations" ($v.tolerations | default $root.Values.tolerations)
      "affinity" ($v.affinity | default $root.Values.affinity)
      "topologySpreadConstraints" ($v.topologySpreadConstraints | default $root.Values.topologySpreadConstraints)
      "priorityClassName" ($v.priorityClassName | default $root.Values.priorityClassName)
      "livenessProbe" ($v.livenessProbe | default $root.Values.livenessProbe)
      "readinessProbe" ($v.readinessProbe | default $root.Values.readinessProbe)
      "startupProbe" ($v.startupProbe | default $root.Values.startupProbe)
      "autoscaling" $as
}}
{{- $roles = append $roles $r }}
{{- end }}
{{- toYaml $roles }}
{{- end }}

{{/* Checks that the values schema cannot express. Included by every template that renders roles. */}}
{{- define "duroxide.validate" -}}
{{- $roles := include "duroxide.roles" . | fromYamlArray }}
{{- if not $roles }}
{{- fail "nothing to deploy: orchestrator, worker and every pool are disabled" }}
{{- end }}
{{- range $r := $roles }}
{{- if le (float64 $r.terminationGracePeriodSeconds) (float64 $r.drainTimeout) }}
{{- fail (printf "%s: terminationGracePeriodSeconds (%v) must be greater than the drain timeout (%v), or the kubelet kills pods before they drain" $r.component $r.terminationGracePeriodSeconds $r.drainTimeout) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $r.component) }}
{{- fail (printf "pool %q: %q is not a valid Kubernetes name; set pools.%s.name" $r.tag $r.component $r.tag) }}
{{- end }}
{{- range $key, $_ := $r.podLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) (hasPrefix "duroxide.io/" $key) }}
{{- fail (printf "%s: podLabels may not set %q (the chart's own label)" $r.component $key) }}
{{- end }}
{{- end }}
{{- if gt (len $r.name) 63 }}
{{- fail (printf "%s: the name %q is longer than 63 characters; shorten fullnameOverride or set a shorter pool name" $r.component $r.name) }}
{{- end }}
{{- if and $r.autoscaling.mode (gt (int $r.autoscaling.minReplicas) (int $r.autoscaling.maxReplicas)) }}
{{- fail (printf "%s: autoscaling.minReplicas (%v) is above maxReplicas (%v)" $r.component $r.autoscaling.minReplicas $r.autoscaling.maxReplicas) }}
{{- end }}
{{- if and (eq $r.autoscaling.mode "hpa") (lt (int $r.autoscaling.minReplicas) 1) }}
{{- fail (printf "%s: an HPA cannot scale to zero; use autoscaling.mode=keda or minReplicas >= 1" $r.component) }}
{{- end }}
{{- if and (eq $r.autoscaling.mode "hpa") (not $r.autoscaling.targetCPUUtilizationPercentage) (not $r.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s: autoscaling.mode=hpa needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $r.component) }}
{{- end }}
{{- if and (eq $r.autoscaling.mode "keda") (eq $.Values.autoscaling.keda.trigger "prometheus") (not $.Values.autoscaling.keda.prometheus.serverAddress) }}
{{- fail "autoscaling.keda.trigger=prometheus needs autoscaling.keda.prometheus.serverAddress" }}
{{- end }}
{{- end }}
{{- if not .Values.database.existingSecret }}
{{- fail "database.existingSecret is required: a Secret with the database URL (never a literal password in values)" }}
{{- end }}
{{- if and .Values.database.tls.enabled (not .Values.database.tls.existingSecret) }}
{{- fail "database.tls.enabled needs database.tls.existingSecret (a Secret with the CA certificate)" }}
{{- end }}
{{- end }}
