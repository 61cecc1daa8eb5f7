{{- define "tenant-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenant-operator.fullname" -}}
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

{{- define "tenant-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenant-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tenant-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tenant-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tenant-operator.serviceAccountName" -}}
{{- default (include "tenant-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- /* The operator's grant in each tenant namespace: a ClusterRole and the RoleBindings the operator makes of it, both of this name. */}}
{{- define "tenant-operator.namespaceRole" -}}
{{- printf "%s:tenant-namespace" (include "tenant-operator.fullname" .) }}
{{- end }}

{{- define "tenant-operator.configMapName" -}}
{{- default (printf "%s-config" (include "tenant-operator.fullname" .)) .Values.existingConfigMap }}
{{- end }}

{{- /* Where the external provider's admin Secret lives, from the configuration. */}}
{{- define "tenant-operator.adminSecretNamespace" -}}
{{- $ext := ((.Values.config).database).external | default dict }}
{{- (($ext.adminSecret) | default dict).namespace | default .Release.Namespace }}
{{- end }}
{{- define "tenant-operator.adminSecretName" -}}
{{- $ext := ((.Values.config).database).external | default dict }}
{{- (($ext.adminSecret) | default dict).name | default "" }}
{{- end }}
