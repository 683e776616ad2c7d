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

{{- /* The region's workers (docs/push.md, docs/backends.md): `herald push` and `herald webhooks`,
two pods each, one working while it holds a lease in the region's Redis. */ -}}
{{- define "herald.pushName" -}}
{{- printf "%s-push" (include "herald.fullname" .) -}}
{{- end -}}

{{- define "herald.pushSelector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: push
{{- end -}}

{{- define "herald.webhooksName" -}}
{{- printf "%s-webhooks" (include "herald.fullname" .) -}}
{{- end -}}

{{- define "herald.webhooksSelector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhooks
{{- end -}}

{{- /* What a worker needs from the region, checked (index . 0: the root, index . 1: its name in
messages): a Kafka bus (it reads the region's topics) and a Redis presence store (its lease and
positions live there). */ -}}
{{- define "herald.workerRequires" -}}
{{- $v := (index . 0).Values -}}
{{- $what := index . 1 -}}
{{- if not (hasPrefix "kafka://" $v.bus.url) -}}
{{- fail (printf "%s: bus.url must be kafka://HOST:PORT[,…] (the worker reads the region's Kafka topics), not %q" $what $v.bus.url) -}}
{{- end -}}
{{- if not (or $v.presence.url $v.presence.urlSecret.name) -}}
{{- fail (printf "%s: set presence.url (or presence.urlSecret): the worker keeps its lease and positions in the region's Redis" $what) -}}
{{- end -}}
{{- end -}}

{{- /* The environment variable holding secret (index . 1) of webhook endpoint (index . 0):
HERALD_WEBHOOK_SECRET_<NAME>_<i>, NAME upper-cased with . and - as _. */ -}}
{{- define "herald.webhookSecretEnv" -}}
{{- printf "HERALD_WEBHOOK_SECRET_%s_%d" (index . 0 | upper | replace "-" "_" | replace "." "_") (index . 1) -}}
{{- end -}}
