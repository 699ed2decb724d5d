{{/*
Helpers shared by the templates. The chart keeps to the functions the test renderer
(mapper-deploy) implements as helm does: include, toYaml, nindent, indent, quote, default,
required, and Go's builtins (printf, and, or, not, eq, ne, len, index).
*/}}

{{/* Labels on every object. */}}
{{- define "mapper.labels" -}}
app.kubernetes.io/name: mapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mapper
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector of the server pods (immutable once installed: keep it short). */}}
{{- define "mapper.server.selectorLabels" -}}
app.kubernetes.io/name: mapper
app.kubernetes.io/component: server
{{- end }}

{{/* Selector of the agent pods. */}}
{{- define "mapper.agent.selectorLabels" -}}
app.kubernetes.io/name: mapper
app.kubernetes.io/component: agent
{{- end }}

{{- define "mapper.server.labels" -}}
{{ include "mapper.labels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "mapper.agent.labels" -}}
{{ include "mapper.labels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{/* "<registry>/" or nothing. */}}
{{- define "mapper.registryPrefix" -}}
{{- with .Values.image.registry }}{{ . }}/{{ end -}}
{{- end }}

{{- define "mapper.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end }}

{{- define "mapper.server.image" -}}
{{- printf "%s%s:%s" (include "mapper.registryPrefix" .) .Values.server.image.repository (include "mapper.tag" .) -}}
{{- end }}

{{- define "mapper.agent.image" -}}
{{- printf "%s%s:%s" (include "mapper.registryPrefix" .) .Values.agent.image.repository (include "mapper.tag" .) -}}
{{- end }}

{{/* The address agents report to: the Service's cluster DNS name and gRPC port. */}}
{{- define "mapper.server.url" -}}
{{- printf "http://mapper-server.%s.svc:%v" .Release.Namespace .Values.server.grpcPort -}}
{{- end }}
