{{- /*
herald.toml, built from values (docs/kubernetes.md, "Configuration from values"):

1. the typed values (edge.*, limits.*, auth.*, bus.*, presence.*, sources, push.*, webhooks.*)
   become a dict shaped like crates/config/src/lib.rs (snake_case keys, at their TOML paths); a
   typed key left null is not written, so the binary's default applies;
2. `config` (free-form) is deep-merged over it: maps merge key by key, anything else (a scalar,
   a list such as [[sources]] or [[edge.priority]]) replaces what the typed part set;
3. whole numbers are written as integers (Helm reads every YAML number as a float);
4. keys the chart owns (herald.configGuard) or that hold secrets (herald.secretGuard) are refused;
5. the result is written with toToml.
*/ -}}

{{- /* Where files from Secrets and ConfigMaps appear in the edge pod (one projected volume). */ -}}
{{- define "herald.configDir" -}}/etc/herald{{- end -}}

{{- /* set (index . 0) (index . 1) (index . 2) unless the value is null. */ -}}
{{- define "herald.setIf" -}}
{{- $v := index . 2 -}}
{{- if not (kindIs "invalid" $v) -}}{{- $_ := set (index . 0) (index . 1) $v -}}{{- end -}}
{{- end -}}

{{- /* Deep merge: (index . 1) into (index . 0), in place; maps merge, everything else replaces. */ -}}
{{- define "herald.deepMerge" -}}
{{- $dst := index . 0 -}}
{{- range $k, $v := index . 1 -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "herald.deepMerge" (list (get $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Whole floats become int64, in place, through maps and lists (of maps and scalars). */ -}}
{{- define "herald.normalize" -}}
{{- $m := . -}}
{{- range $k, $v := $m -}}
{{- if kindIs "map" $v -}}
{{- include "herald.normalize" $v -}}
{{- else if kindIs "slice" $v -}}
{{- $out := list -}}
{{- range $e := $v -}}
{{- if kindIs "map" $e -}}{{- include "herald.normalize" $e -}}{{- $out = append $out $e -}}
{{- else if and (kindIs "float64" $e) (eq $e (floor $e)) -}}{{- $out = append $out (int64 $e) -}}
{{- else -}}{{- $out = append $out $e -}}{{- end -}}
{{- end -}}
{{- $_ := set $m $k $out -}}
{{- else if and (kindIs "float64" $v) (eq $v (floor $v)) -}}
{{- $_ := set $m $k (int64 $v) -}}
{{- else if kindIs "invalid" $v -}}
{{- $_ := unset $m $k -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Refuses, naming the key, what must not be in the ConfigMap or is set by the chart. */ -}}
{{- define "herald.configGuard" -}}
{{- $c := . -}}
{{- $edge := get $c "edge" | default dict -}}
{{- if hasKey $edge "listen" -}}{{- fail "config.edge.listen is set by the chart (0.0.0.0:8080, the container port)" -}}{{- end -}}
{{- if hasKey $edge "admin_listen" -}}{{- fail "config.edge.admin_listen is set by the chart (0.0.0.0:9091, the probes' and Prometheus's port)" -}}{{- end -}}
{{- if hasKey $edge "region" -}}{{- fail "config.edge.region: set `region` instead (it also names the topic and labels every object)" -}}{{- end -}}
{{- if hasKey $edge "node" -}}{{- fail "config.edge.node is set by the chart (HERALD_NODE = the pod's name)" -}}{{- end -}}
{{- if hasKey $edge "tls" -}}{{- fail "config.edge.tls: set edge.tls.existingSecret (the files are mounted by the chart)" -}}{{- end -}}
{{- end -}}

{{- /* Refuses secrets in the merged config (typed part and config): they never go into the
ConfigMap. */ -}}
{{- define "herald.secretGuard" -}}
{{- $c := . -}}
{{- $auth := get $c "auth" | default dict -}}
{{- $control := get $c "control" | default dict -}}
{{- range $k := list "jwt_secret" "admin_api_key" -}}
{{- if hasKey $auth $k -}}{{- fail (printf "config.auth.%s is a secret and never goes into the ConfigMap: it comes from the Secret auth.existingSecret (or auth.jwtSecret / auth.adminApiKey)" $k) -}}{{- end -}}
{{- end -}}
{{- $presence := get $c "presence" | default dict -}}
{{- if hasKey $presence "url" -}}{{- fail "config.presence.url: set presence.url (or presence.urlSecret when it carries a password); it reaches every role as HERALD_PRESENCE" -}}{{- end -}}
{{- if hasKey $presence "password_file" -}}{{- fail "config.presence.password_file: set presence.passwordSecret (the password reaches every role as HERALD_PRESENCE_PASSWORD)" -}}{{- end -}}
{{- if hasKey $control "token" -}}{{- fail "config.control.token is a secret and never goes into the ConfigMap: set HERALD_CONTROL_EDGE_TOKEN from a Secret (controlPlane.enabled does; else secretEnv)" -}}{{- end -}}
{{- range $i, $k := get $auth "keys" | default list -}}
{{- if and (kindIs "map" $k) (hasKey $k "secret") -}}{{- fail (printf "auth.keys[%d].secret: an HS256 secret never goes into the ConfigMap; give it as auth.keys[].secretFrom (a Secret key, mounted as a file), or use an RS256/ES256/EdDSA key" $i) -}}{{- end -}}
{{- end -}}
{{- range $e := get (get $c "webhooks" | default dict) "endpoints" | default list -}}
{{- range $s := get $e "secrets" | default list -}}
{{- if not (or (hasPrefix "env:" (toString $s)) (hasPrefix "file:" (toString $s))) -}}{{- fail (printf "webhooks.endpoints[%s].secrets: a signing secret never goes into the ConfigMap; give it as webhooks.endpoints[].secrets {secret, key} (an existing Secret, read as an environment variable)" (toString (get $e "name"))) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- range $account, $keys := get $auth "account_keys" | default dict -}}
{{- range $keys -}}
{{- if not (regexMatch "^sha256:[0-9a-fA-F]{64}$" (toString .)) -}}{{- fail (printf "auth.account_keys.%s: store publish keys in their sha256: form (herald api-key prints it), never in clear in the ConfigMap" $account) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* A file reference {secret: NAME, key: KEY} or {configMap: NAME, key: KEY} as a projected
volume source placing it at (index . 1), relative to the config directory. */ -}}
{{- define "herald.projectFile" -}}
{{- $ref := index . 0 -}}
{{- $path := index . 1 -}}
{{- $mode := index . 2 -}}
{{- if $ref.secret }}
- secret:
    name: {{ $ref.secret }}
    items:
      - key: {{ $ref.key }}
        path: {{ $path }}
        mode: {{ $mode }}
{{- else }}
- configMap:
    name: {{ $ref.configMap }}
    items:
      - key: {{ $ref.key }}
        path: {{ $path }}
        mode: {{ $mode }}
{{- end }}
{{- end -}}

{{- /* ca_file, cert_file and key_file of a TLS files value (presence.tls, kafka.tls) into the
dict (index . 0), under the directory (index . 2) where herald.tlsFileSources mounts them. */ -}}
{{- define "herald.tlsFileKeys" -}}
{{- $d := index . 0 -}}{{- $t := index . 1 -}}{{- $at := index . 2 -}}
{{- if $t.ca -}}{{- $_ := set $d "ca_file" (printf "%s/ca.crt" $at) -}}{{- end -}}
{{- if $t.clientCert.secret -}}
{{- $_ := set $d "cert_file" (printf "%s/tls.crt" $at) -}}
{{- $_ := set $d "key_file" (printf "%s/tls.key" $at) -}}
{{- end -}}
{{- end -}}

{{- /* The TLS files of presence (under redis/) and Kafka (under kafka/) as projected volume
sources. */ -}}
{{- define "herald.tlsFileSources" -}}
{{- range $sub, $t := dict "redis" .Values.presence.tls "kafka" .Values.kafka.tls }}
{{- with $t.ca }}
{{- include "herald.projectFile" (list . (printf "%s/ca.crt" $sub) 288) }}
{{- end }}
{{- with $t.clientCert }}{{- if .secret }}
- secret:
    name: {{ .secret }}
    items:
      - key: {{ .certKey }}
        path: {{ $sub }}/tls.crt
        mode: 288
      - key: {{ .keyKey }}
        path: {{ $sub }}/tls.key
        mode: 288
{{- end }}{{- end }}
{{- end }}
{{- end -}}

{{- /* The extra files (extraFiles) as projected volume sources, under files/. */ -}}
{{- define "herald.extraFileSources" -}}
{{- range .Values.extraFiles }}
{{- include "herald.projectFile" (list . (printf "files/%s" .path) 288) }}
{{- end }}
{{- end -}}

{{- /* The Kafka SASL password (kafka.sasl.passwordSecret), for the roles with Kafka clients
(edge, replicator). */ -}}
{{- define "herald.kafkaEnv" -}}
{{- with .Values.kafka.sasl.passwordSecret }}{{- if .name }}
# The Kafka SASL password (kafka.sasl.passwordSecret).
- name: HERALD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{- end }}
{{- end -}}

{{- /* Env entries every role gets: HERALD_PRESENCE (from presence.urlSecret or presence.url) and
secretEnv. */ -}}
{{- define "herald.commonEnv" -}}
{{- if .Values.presence.urlSecret.name }}
# The region's presence store, from a Secret (the URL carries a password).
- name: HERALD_PRESENCE
  valueFrom:
    secretKeyRef:
      name: {{ .Values.presence.urlSecret.name }}
      key: {{ .Values.presence.urlSecret.key }}
{{- else if .Values.presence.url }}
# The region's presence store, shared by every edge (docs/operations.md).
- name: HERALD_PRESENCE
  value: {{ .Values.presence.url | quote }}
{{- end }}
{{- if .Values.presence.passwordSecret.name }}
# The presence Redis password (presence.passwordSecret).
- name: HERALD_PRESENCE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.presence.passwordSecret.name }}
      key: {{ .Values.presence.passwordSecret.key }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{- /* The whole herald.toml. */ -}}
{{- define "herald.toml" -}}
{{- $v := .Values -}}
{{- $dir := include "herald.configDir" . -}}
{{- $e := $v.edge -}}

{{- $edge := dict "listen" "0.0.0.0:8080" "admin_listen" "0.0.0.0:9091" "region" $v.region -}}
{{- $_ := set $edge "heartbeat_ms" $e.heartbeatMs -}}
{{- $_ := set $edge "max_queued_bytes" $e.maxQueuedBytes -}}
{{- $_ := set $edge "max_frame_bytes" $e.maxFrameBytes -}}
{{- $_ := set $edge "max_message_bytes" $e.maxMessageBytes -}}
{{- $_ := set $edge "max_subscriptions" $e.maxSubscriptions -}}
{{- $_ := set $edge "history_cache_records" $e.historyCacheRecords -}}
{{- $_ := set $edge "drain_grace_ms" (mul $e.drainGraceSeconds 1000) -}}
{{- include "herald.setIf" (list $edge "auth_timeout_ms" $e.authTimeoutMs) -}}
{{- include "herald.setIf" (list $edge "poll_timeout_ms" $e.pollTimeoutMs) -}}
{{- include "herald.setIf" (list $edge "lag_close_grace_ms" $e.lagCloseGraceMs) -}}
{{- include "herald.setIf" (list $edge "max_batch_bytes" $e.maxBatchBytes) -}}
{{- include "herald.setIf" (list $edge "unsent_limit_bytes" $e.unsentLimitBytes) -}}
{{- include "herald.setIf" (list $edge "conflate_above_bytes" $e.conflateAboveBytes) -}}
{{- include "herald.setIf" (list $edge "consumer_linger_ms" $e.consumerLingerMs) -}}
{{- include "herald.setIf" (list $edge "probe_interval_ms" $e.probeIntervalMs) -}}
{{- include "herald.setIf" (list $edge "probe_stall_ms" $e.probeStallMs) -}}
{{- include "herald.setIf" (list $edge "proxy_protocol" $e.proxyProtocol) -}}
{{- include "herald.setIf" (list $edge "trusted_proxies" $e.trustedProxies) -}}
{{- include "herald.setIf" (list $edge "forwarded_header" $e.forwardedHeader) -}}
{{- if $e.tls.existingSecret -}}
{{- $_ := set $edge "tls" (dict "cert_file" (printf "%s/tls/tls.crt" $dir) "key_file" (printf "%s/tls/tls.key" $dir)) -}}
{{- end -}}
{{- if $e.latestValue -}}
{{- $lv := list -}}
{{- range $e.latestValue -}}{{- $lv = append $lv (dict "channels" .channels "key" (.key | default "")) -}}{{- end -}}
{{- $_ := set $edge "latest_value" $lv -}}
{{- end -}}
{{- if $e.priority -}}
{{- $pr := list -}}
{{- range $e.priority -}}{{- $pr = append $pr (dict "channels" .channels "priority" .priority) -}}{{- end -}}
{{- $_ := set $edge "priority" $pr -}}
{{- end -}}

{{- $bus := dict "url" $v.bus.url "partitions" $v.bus.partitions "replication" $v.bus.replication -}}
{{- if $v.bus.topic -}}{{- $_ := set $bus "topic" $v.bus.topic -}}{{- end -}}
{{- include "herald.setIf" (list $bus "retention_records" $v.bus.retentionRecords) -}}
{{- include "herald.setIf" (list $bus "retention_secs" $v.bus.retentionSecs) -}}
{{- include "herald.setIf" (list $bus "idempotency_window_secs" $v.bus.idempotencyWindowSecs) -}}

{{- /* presence.url reaches every role as HERALD_PRESENCE (it may come from a Secret). */ -}}
{{- $presence := dict -}}
{{- include "herald.setIf" (list $presence "prefix" $v.presence.prefix) -}}
{{- include "herald.setIf" (list $presence "ttl_secs" $v.presence.ttlSecs) -}}
{{- include "herald.setIf" (list $presence "kafka_feed" $v.presence.kafkaFeed) -}}
{{- include "herald.setIf" (list $presence "username" $v.presence.username) -}}
{{- /* TLS files mounted by herald.tlsFileSources; the password comes from the environment. */ -}}
{{- $ptls := dict -}}
{{- include "herald.tlsFileKeys" (list $ptls $v.presence.tls (printf "%s/redis" $dir)) -}}
{{- if $ptls -}}{{- $_ := set $presence "tls" $ptls -}}{{- end -}}

{{- /* [kafka]: typed TLS and SASL (the password comes from the environment), merged with config.kafka. */ -}}
{{- $kafka := dict -}}
{{- include "herald.setIf" (list $kafka "security_protocol" $v.kafka.securityProtocol) -}}
{{- include "herald.setIf" (list $kafka "sasl_mechanism" $v.kafka.sasl.mechanism) -}}
{{- include "herald.setIf" (list $kafka "sasl_username" $v.kafka.sasl.username) -}}
{{- include "herald.tlsFileKeys" (list $kafka $v.kafka.tls (printf "%s/kafka" $dir)) -}}

{{- $a := $v.auth -}}
{{- $auth := dict -}}
{{- include "herald.setIf" (list $auth "leeway_secs" $a.leewaySecs) -}}
{{- if $a.allowedOrigins -}}{{- $_ := set $auth "allowed_origins" $a.allowedOrigins -}}{{- end -}}
{{- if $a.accountKeys -}}{{- $_ := set $auth "account_keys" $a.accountKeys -}}{{- end -}}
{{- if $a.keys -}}
{{- $keys := list -}}
{{- range $i, $k := $a.keys -}}
{{- $key := dict "algorithm" $k.algorithm -}}
{{- include "herald.setIf" (list $key "kid" $k.kid) -}}
{{- include "herald.setIf" (list $key "account" $k.account) -}}
{{- include "herald.setIf" (list $key "public_key_pem" $k.publicKeyPem) -}}
{{- if $k.publicKeyFrom -}}{{- $_ := set $key "public_key_file" (printf "%s/keys/key-%d.pem" $dir $i) -}}{{- end -}}
{{- if $k.secretFrom -}}{{- $_ := set $key "secret_file" (printf "%s/keys/key-%d.secret" $dir $i) -}}{{- end -}}
{{- $keys = append $keys $key -}}
{{- end -}}
{{- $_ := set $auth "keys" $keys -}}
{{- end -}}
{{- include "herald.setIf" (list $auth "jwks_url" $a.jwks.url) -}}
{{- include "herald.setIf" (list $auth "jwks_refresh_secs" $a.jwks.refreshSecs) -}}
{{- if $a.jwks.fileFrom -}}{{- $_ := set $auth "jwks_file" (printf "%s/jwks/jwks.json" $dir) -}}{{- end -}}

{{- $l := $v.limits -}}
{{- $limits := dict -}}
{{- include "herald.setIf" (list $limits "connections_per_account" $l.connectionsPerAccount) -}}
{{- include "herald.setIf" (list $limits "connections_per_ip" $l.connectionsPerIp) -}}
{{- include "herald.setIf" (list $limits "publish_per_second_per_connection" $l.publishPerSecondPerConnection) -}}
{{- include "herald.setIf" (list $limits "publish_per_second_per_account" $l.publishPerSecondPerAccount) -}}
{{- if $l.accounts -}}
{{- $accounts := dict -}}
{{- range $name, $acc := $l.accounts -}}
{{- $one := dict -}}
{{- include "herald.setIf" (list $one "connections" $acc.connections) -}}
{{- include "herald.setIf" (list $one "publish_per_second" $acc.publishPerSecond) -}}
{{- include "herald.setIf" (list $one "max_subscriptions" $acc.maxSubscriptions) -}}
{{- include "herald.setIf" (list $one "max_message_bytes" $acc.maxMessageBytes) -}}
{{- $_ := set $accounts $name $one -}}
{{- end -}}
{{- $_ := set $limits "accounts" $accounts -}}
{{- end -}}

{{- $sources := list -}}
{{- range $v.sources -}}
{{- $s := dict "name" .name "topic" .topic "account" .account "channel" .channel -}}
{{- include "herald.setIf" (list $s "brokers" .brokers) -}}
{{- include "herald.setIf" (list $s "group" .group) -}}
{{- include "herald.setIf" (list $s "dead_letter_topic" .deadLetterTopic) -}}
{{- if .drop -}}
{{- $drop := list -}}
{{- range .drop -}}{{- $drop = append $drop (dict "field" .field "equals" (toString .equals)) -}}{{- end -}}
{{- $_ := set $s "drop" $drop -}}
{{- end -}}
{{- if .keep -}}{{- $_ := set $s "keep" .keep -}}{{- end -}}
{{- $sources = append $sources $s -}}
{{- end -}}

{{- /* [push]: the prefix whenever set (the edges' and the control plane's device registry live under
it), the rest with push.enabled; the credentials are files mounted in the push pods. */ -}}
{{- $p := $v.push -}}
{{- $push := dict -}}
{{- include "herald.setIf" (list $push "prefix" $p.prefix) -}}
{{- if $p.enabled -}}
{{- include "herald.setIf" (list $push "concurrency" $p.concurrency) -}}
{{- include "herald.setIf" (list $push "per_device_per_minute" $p.perDevicePerMinute) -}}
{{- include "herald.setIf" (list $push "max_attempts" $p.maxAttempts) -}}
{{- include "herald.setIf" (list $push "max_retry_secs" $p.maxRetrySecs) -}}
{{- include "herald.setIf" (list $push "lease_ttl_secs" $p.leaseTtlSecs) -}}
{{- include "herald.setIf" (list $push "sent_marker_ttl_secs" $p.sentMarkerTtlSecs) -}}
{{- include "herald.setIf" (list $push "presence_limit" $p.presenceLimit) -}}
{{- include "herald.setIf" (list $push "dead_letter_max" $p.deadLetterMax) -}}
{{- include "herald.setIf" (list $push "window" $p.window) -}}
{{- if $p.apns.keySecret.name -}}
{{- $apns := dict "key_file" (printf "%s/push/apns.p8" $dir) "key_id" $p.apns.keyId "team_id" $p.apns.teamId -}}
{{- include "herald.setIf" (list $apns "endpoint" $p.apns.endpoint) -}}
{{- $_ := set $push "apns" $apns -}}
{{- end -}}
{{- if $p.fcm.serviceAccountSecret.name -}}
{{- $fcm := dict "service_account_file" (printf "%s/push/fcm-service-account.json" $dir) -}}
{{- include "herald.setIf" (list $fcm "endpoint" $p.fcm.endpoint) -}}
{{- $_ := set $push "fcm" $fcm -}}
{{- end -}}
{{- $channels := list -}}
{{- range $p.channels -}}
{{- $ch := dict "pattern" .pattern "body" .body -}}
{{- if .when -}}
{{- $when := dict -}}
{{- range $ptr, $want := .when -}}
{{- if kindIs "slice" $want -}}{{- $_ := set $when $ptr (list) -}}{{- range $want -}}{{- $_ := set $when $ptr (append (get $when $ptr) (toString .)) -}}{{- end -}}
{{- else -}}{{- $_ := set $when $ptr (toString $want) -}}{{- end -}}
{{- end -}}
{{- $_ := set $ch "when" $when -}}
{{- end -}}
{{- include "herald.setIf" (list $ch "title" .title) -}}
{{- if .data -}}{{- $_ := set $ch "data" .data -}}{{- end -}}
{{- include "herald.setIf" (list $ch "collapse_key" .collapseKey) -}}
{{- include "herald.setIf" (list $ch "priority" .priority) -}}
{{- include "herald.setIf" (list $ch "ttl_secs" .ttlSecs) -}}
{{- $channels = append $channels $ch -}}
{{- end -}}
{{- if $channels -}}{{- $_ := set $push "channels" $channels -}}{{- end -}}
{{- end -}}

{{- /* [webhooks], with webhooks.enabled: each signing secret is named by the environment variable
that the webhooks pods read it into from its Secret (herald.webhookSecretEnv), and a private CA
is a file mounted at webhooks/<name>/ca.crt. */ -}}
{{- $webhooks := dict -}}
{{- if $v.webhooks.enabled -}}
{{- $w := $v.webhooks -}}
{{- include "herald.setIf" (list $webhooks "lease_ttl_ms" $w.leaseTtlMs) -}}
{{- include "herald.setIf" (list $webhooks "dead_letter_topic" $w.deadLetterTopic) -}}
{{- $endpoints := list -}}
{{- $envOf := dict -}}
{{- range $e := $w.endpoints -}}
{{- $ep := dict "name" $e.name "url" $e.url -}}
{{- if $e.events -}}{{- $_ := set $ep "events" $e.events -}}{{- end -}}
{{- if $e.accounts -}}{{- $_ := set $ep "accounts" $e.accounts -}}{{- end -}}
{{- $secrets := list -}}
{{- range $i, $s := $e.secrets -}}
{{- $env := include "herald.webhookSecretEnv" (list $e.name $i) -}}
{{- if and (hasKey $envOf $env) (ne (get $envOf $env) $e.name) -}}
{{- fail (printf "webhooks.endpoints: %q and %q both read their secrets from %s (names differing only by . - _ or case); rename one" (get $envOf $env) $e.name $env) -}}
{{- end -}}
{{- $_ := set $envOf $env $e.name -}}
{{- $secrets = append $secrets (printf "env:%s" $env) -}}
{{- end -}}
{{- $_ := set $ep "secrets" $secrets -}}
{{- include "herald.setIf" (list $ep "batch_size" $e.batchSize) -}}
{{- include "herald.setIf" (list $ep "linger_ms" $e.lingerMs) -}}
{{- include "herald.setIf" (list $ep "retry_for_secs" $e.retryForSecs) -}}
{{- include "herald.setIf" (list $ep "max_backoff_ms" $e.maxBackoffMs) -}}
{{- include "herald.setIf" (list $ep "timeout_ms" $e.timeoutMs) -}}
{{- if $e.ca -}}{{- $_ := set $ep "ca_file" (printf "%s/webhooks/%s/ca.crt" $dir $e.name) -}}{{- end -}}
{{- $endpoints = append $endpoints $ep -}}
{{- end -}}
{{- $_ := set $webhooks "endpoints" $endpoints -}}
{{- end -}}

{{- $cfg := dict "edge" $edge "bus" $bus "log" (dict "format" $e.logFormat) -}}
{{- include "herald.setIf" (list (get $cfg "log") "level" $e.logLevel) -}}
{{- if $presence -}}{{- $_ := set $cfg "presence" $presence -}}{{- end -}}
{{- if $kafka -}}{{- $_ := set $cfg "kafka" $kafka -}}{{- end -}}
{{- if $auth -}}{{- $_ := set $cfg "auth" $auth -}}{{- end -}}
{{- if $limits -}}{{- $_ := set $cfg "limits" $limits -}}{{- end -}}
{{- if $sources -}}{{- $_ := set $cfg "sources" $sources -}}{{- end -}}
{{- if $push -}}{{- $_ := set $cfg "push" $push -}}{{- end -}}
{{- if $webhooks -}}{{- $_ := set $cfg "webhooks" $webhooks -}}{{- end -}}

{{- if include "herald.controlTls" . -}}
{{- $ctls := dict "ca_file" (printf "%s/ca.crt" (include "herald.controlTlsDir" .)) -}}
{{- if $v.controlPlane.tls.mutual -}}
{{- $_ := set $ctls "cert_file" (printf "%s/tls.crt" (include "herald.controlTlsDir" .)) -}}
{{- $_ := set $ctls "key_file" (printf "%s/tls.key" (include "herald.controlTlsDir" .)) -}}
{{- end -}}
{{- $_ := set $cfg "control" (dict "tls" $ctls) -}}
{{- if hasKey (get ($v.config | default dict) "control" | default dict) "tls" -}}
{{- fail "config.control.tls: set by the chart from controlPlane.tls (the files are mounted by the chart)" -}}
{{- end -}}
{{- end -}}

{{- $free := deepCopy ($v.config | default dict) -}}
{{- include "herald.configGuard" $free -}}
{{- include "herald.deepMerge" (list $cfg $free) -}}
{{- include "herald.secretGuard" $cfg -}}
{{- include "herald.normalize" $cfg -}}
{{- /* toToml indents nested tables; TOML does not need it. */ -}}
{{- regexReplaceAll "(?m)^[ \t]+" (toToml $cfg) "" -}}
{{- end -}}
