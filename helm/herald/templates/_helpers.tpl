{{- define "herald.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald.labels" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
herald.io/region: {{ .Values.region | quote }}
{{- end -}}

{{- define "herald.edgeSelector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: edge
{{- end -}}

{{- define "herald.secretName" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecret }}{{- else -}}{{ include "herald.fullname" . }}{{- end -}}
{{- end -}}

{{- /* The control plane (docs/control-plane.md): a StatefulSet of `herald control` members. */ -}}
{{- define "herald.controlName" -}}
{{- printf "%s-control" (include "herald.fullname" .) -}}
{{- end -}}

{{- define "herald.controlHeadlessName" -}}
{{- printf "%s-control-headless" (include "herald.fullname" .) -}}
{{- end -}}

{{- define "herald.controlSelector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control
{{- end -}}

{{- /* The stable DNS suffix of the members: <headless>.<namespace>.svc.<cluster domain>. */ -}}
{{- define "herald.controlDomain" -}}
{{- printf "%s.%s.svc.%s" (include "herald.controlHeadlessName" .) .Release.Namespace .Values.controlPlane.clusterDomain -}}
{{- end -}}

{{- /* Every member's address, HOST:7100, comma-separated (the edges' HERALD_CONTROL). */ -}}
{{- define "herald.controlEndpoints" -}}
{{- $name := include "herald.controlName" . -}}
{{- $domain := include "herald.controlDomain" . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.controlPlane.replicas) -}}
{{- $out = append $out (printf "%s-%d.%s:7100" $name $i $domain) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- /* The bootstrap member list for --init: ID=HOST:7100, id = pod ordinal + 1. */ -}}
{{- define "herald.controlInit" -}}
{{- $name := include "herald.controlName" . -}}
{{- $domain := include "herald.controlDomain" . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.controlPlane.replicas) -}}
{{- $out = append $out (printf "%d=%s-%d.%s:7100" (add $i 1) $name $i $domain) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- /* Where the control plane's certificate files appear (members: their own and ca.crt;
edges: ca.crt, and their client certificate with mutual TLS). */ -}}
{{- define "herald.controlTlsDir" -}}/etc/herald/control-tls{{- end -}}

{{- /* controlPlane.tls, checked: "true" when TLS is on. */ -}}
{{- define "herald.controlTls" -}}
{{- $t := .Values.controlPlane.tls -}}
{{- if and $t.mutual (not $t.existingSecret) -}}
{{- fail "controlPlane.tls.mutual needs controlPlane.tls.existingSecret (the members' tls.crt, tls.key and ca.crt)" -}}
{{- end -}}
{{- if and $t.clientSecret (not $t.mutual) -}}
{{- fail "controlPlane.tls.clientSecret is only used with controlPlane.tls.mutual: true (the edges' client certificate)" -}}
{{- end -}}
{{- if and .Values.controlPlane.enabled $t.existingSecret -}}true{{- end -}}
{{- end -}}

{{- /* The replicator (docs/multi-region.md): one `herald replicate` per region. */ -}}
{{- define "herald.replicatorName" -}}
{{- printf "%s-replicator" (include "herald.fullname" .) -}}
{{- end -}}

{{- define "herald.replicatorSelector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: replicator
{{- end -}}

{{- /* The edge's probes and scrapes: HTTPS when the listener has TLS (edge.tls). */ -}}
{{- define "herald.edgeScheme" -}}
{{- if .Values.edge.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
