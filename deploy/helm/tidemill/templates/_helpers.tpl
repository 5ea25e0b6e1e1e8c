{{/* Names and labels shared by every resource. */}}
{{- define "tidemill.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tidemill.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tidemill.labels" -}}
{{ include "tidemill.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Fails the render on settings that cannot work together. */}}
{{- define "tidemill.checks" -}}
{{- if not (has .Values.workload (list "StatefulSet" "Deployment")) -}}
{{- fail (printf "workload: %q is not StatefulSet or Deployment" .Values.workload) -}}
{{- end -}}
{{- if and .Values.staticMembership (eq .Values.workload "Deployment") -}}
{{- fail "staticMembership needs workload: StatefulSet (a Deployment's pods get new names on every rollout, and each old name would hold its partitions until the session timeout)" -}}
{{- end -}}
{{- if le (int .Values.terminationGraceMargin) 0 -}}
{{- fail "terminationGraceMargin must be above 0: terminationGracePeriodSeconds must exceed shutdownGrace" -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.partitions) -}}
{{- fail (printf "autoscaling.maxReplicas (%d) is above autoscaling.partitions (%d): members beyond the partition count own nothing" (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.partitions)) -}}
{{- end -}}
{{- if not (has .Values.autoscaling.trigger (list "kafka" "prometheus")) -}}
{{- fail (printf "autoscaling.trigger: %q is not kafka or prometheus" .Values.autoscaling.trigger) -}}
{{- end -}}
{{- end -}}
{{- end -}}
