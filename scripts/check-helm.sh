#!/usr/bin/env bash
# Checks the Kubernetes packaging offline: helm lint, render the chart with every example values
# file, validate each render (and each deploy/ overlay, rendered by kubectl kustomize) against the
# Kubernetes API schemas (strict), check each render's herald.toml (TOML, no secrets), and prove
# the values schema refuses misspelled keys. With HERALD_CHECK_OUT set, each render's herald.toml
# is written there as <values-name>.toml (deploy-<overlay>.toml for deploy/), for `herald edge
# --config F --check`. With HERALD_BIN set (a built herald), every render is also checked by the
# binary: `herald edge/replicate --check` on its herald.toml, and the control plane's, push
# worker's and webhooks worker's command lines with --check (below). Needs helm, kubectl,
# kubernetes-validate (scripts/install-test-tools.sh installs them), openssl and python3 3.11+
# (tomllib).
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=helm/herald
K8S=1.30.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
[ -n "${HERALD_CHECK_OUT:-}" ] && mkdir -p "$HERALD_CHECK_OUT"

# kubernetes-validate knows the core API, not operator CRDs: those documents are checked for
# shape by helm lint only, and left out of the schema validation.
without_crds() {
  python3 - "$1" "$2" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---")
keep = [d for d in docs if "apiVersion: monitoring.coreos.com/" not in d and d.strip()]
open(sys.argv[2], "w").write("\n---".join(keep) + "\n")
PY
}

# The edge ConfigMap's herald.toml from a render ($1) into a file ($2): it must parse as TOML and
# hold no secret (those come from Secrets). `herald edge --config F --check` runs on these files
# where the binary is built (HERALD_CHECK_OUT keeps them).
herald_toml() {
  python3 - "$1" "$2" <<'PY'
import sys, tomllib
# The block scalar under `herald.toml: |` in the ConfigMap (no YAML library needed).
lines = open(sys.argv[1]).read().split("\n")
starts = [i for i, l in enumerate(lines) if l.strip() == "herald.toml: |"]
assert len(starts) == 1, f"expected one herald.toml in the render, found {len(starts)}"
indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip()) + 2
body = []
for l in lines[starts[0] + 1:]:
    if l.strip() and not l.startswith(" " * indent):
        break
    body.append(l[indent:])
text = "\n".join(body).rstrip() + "\n"
open(sys.argv[2], "w").write(text)
cfg = tomllib.loads(text)
auth, control = cfg.get("auth", {}), cfg.get("control", {})
leaked = [k for k in ("jwt_secret", "admin_api_key") if k in auth] + ["control.token"] * ("token" in control)
leaked += [f"auth.keys[{i}].secret" for i, k in enumerate(auth.get("keys", [])) if "secret" in k]
# Webhook signing secrets are named (env:NAME, file:PATH), never given; no private key (the push
# credentials, TLS keys) is ever inline.
leaked += [f"webhooks.endpoints[{e.get('name')}].secrets" for e in cfg.get("webhooks", {}).get("endpoints", [])
           if any(not str(s).startswith(("env:", "file:")) for s in e.get("secrets", []))]
leaked += ["a PRIVATE KEY"] * ("PRIVATE KEY" in text)
assert not leaked, f"secrets in the ConfigMap: {leaked}"
PY
}

# The control plane's command in a render's StatefulSet ($1) as a script ($2) that runs it with
# --check: its literal HERALD_* environment (TLS files included), POD_NAME of member 0, and the
# command's shell script with `exec herald control` pointed at $HERALD_BIN.
control_check_script() {
  python3 - "$1" "$2" <<'PY'
import re, shlex, sys
text = open(sys.argv[1]).read()
lines = text.split("\n")
starts = [i for i, l in enumerate(lines) if l.strip() == "- -c" and lines[i + 1].strip() == "- |"]
assert len(starts) == 1, f"expected one `sh -c` script in the StatefulSet, found {len(starts)}"
first = lines[starts[0] + 2]
indent = len(first) - len(first.lstrip())
body = []
for l in lines[starts[0] + 2:]:
    if l.strip() and not l.startswith(" " * indent):
        break
    body.append(l[indent:])
script = "\n".join(body).rstrip() + "\n"
assert "exec herald control" in script, "the members' script does not exec herald control"
env = re.findall(r"- name: (HERALD_[A-Z_]+)\n\s+value: (.+)", text)
unquoted = [(k, v.strip().strip('"')) for k, v in env]
out = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in unquoted)
out += "export POD_NAME=herald-herald-control-0\n"
out += script.replace("exec herald control", 'exec "$HERALD_BIN" control --check')
open(sys.argv[2], "w").write(out)
PY
}

# A worker's container in a render's Deployment ($1: push-deployment.yaml or webhooks-deployment.yaml)
# as a script ($2) that runs its command with --check on the render's herald.toml ($3): its literal
# environment as is, every variable from a Secret with a made-up value (a Redis URL for
# HERALD_PRESENCE, a 16+ byte string for the others), and (webhooks) each endpoint's CA file made
# up. Every `env:NAME` of a webhook endpoint's secrets must come from a Secret in the Deployment,
# and every file herald.toml names for the worker must be mounted in its pod.
worker_check_script() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, re, shlex, sys, tomllib
text = open(sys.argv[1]).read()
toml = open(sys.argv[3]).read()
cfg = tomllib.loads(toml)
lines = text.split("\n")
args = [json.loads(l.strip()[len("args: "):]) for l in lines if l.strip().startswith("args: [")]
assert len(args) == 1, f"expected one args: [...] line in the Deployment, found {len(args)}"
args = args[0]
assert args[1:3] == ["--config", "/etc/herald/herald.toml"], f"the worker does not read /etc/herald/herald.toml: {args}"
# Each `- name: X` followed by `value:` or `valueFrom:` (ports and volumes have neither).
env = {}
for i, l in enumerate(lines[:-2]):
    m = re.fullmatch(r"\s+- name: (\S+)", l)
    nxt = lines[i + 1].strip()
    if m and nxt.startswith("value: "):
        v = nxt[len("value: "):]
        env[m[1]] = ("value", json.loads(v) if v.startswith('"') else v)
    elif m and nxt == "valueFrom:":
        env[m[1]] = (lines[i + 2].strip().rstrip(":"), None)
endpoints = cfg.get("webhooks", {}).get("endpoints", []) if args[0] == "webhooks" else []
named = [s[len("env:"):] for e in endpoints for s in e.get("secrets", []) if s.startswith("env:")]
missing = [n for n in named if env.get(n, ("",))[0] != "secretKeyRef"]
assert not missing, f"herald.toml reads {missing} but the Deployment does not set them from a Secret"
# Every file the worker reads (its own section, [presence], [kafka]) is mounted in its pod.
def files(v):
    if isinstance(v, dict):
        return [f for x in v.values() for f in files(x)]
    if isinstance(v, list):
        return [f for x in v for f in files(x)]
    return [v] if isinstance(v, str) and v.startswith("/etc/herald/") else []
mounted = set(re.findall(r"^\s+path: (\S+)$", text, re.M))
unmounted = [f for f in files([cfg.get(k, {}) for k in (args[0], "presence", "kafka")]) if f[len("/etc/herald/"):] not in mounted]
assert not unmounted, f"herald.toml names files the {args[0]} pods do not mount: {unmounted}"
made_up = {"secretKeyRef": "check-secret-0123456789abcdef", "fieldRef": "herald-check-0"}
out = ""
for k, (kind, v) in env.items():
    if kind == "value":
        out += f"export {k}={shlex.quote(str(v))}\n"
    elif k == "HERALD_PRESENCE":
        out += f"export {k}={'rediss' if '/etc/herald/redis/' in toml else 'redis'}://redis.check.invalid:6379\n"
    else:
        out += f"export {k}={made_up[kind]}\n"
for e in endpoints:
    if "ca_file" in e:
        out += f"mkdir -p {shlex.quote(e['ca_file'].rsplit('/', 1)[0])} && cp /etc/herald/tls/ca.crt {shlex.quote(e['ca_file'])}\n"
out += 'exec "$HERALD_BIN" ' + " ".join(shlex.quote(a) for a in args) + " --check\n"
open(sys.argv[2], "w").write(out)
PY
}

check() {
  local name=$1; shift
  if "$@" >"$tmp/out" 2>&1; then echo "ok    $name"; else echo "FAIL  $name"; sed 's/^/      /' "$tmp/out"; fail=1; fi
}

check "helm lint (minimal values)" helm lint --strict "$CHART" -f "$CHART/ci/minimal-values.yaml"
for values in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$values" .yaml)
  check "helm template ($name)" helm template herald "$CHART" -f "$values" --output-dir "$tmp/render-$name"
  if [ -d "$tmp/render-$name" ]; then
    # Each file's documents are separated by ---; join them into one stream.
    awk 'FNR==1 && NR!=1 {print "---"} {print}' $(find "$tmp/render-$name" -name '*.yaml') >"$tmp/all-$name.yaml"
    without_crds "$tmp/all-$name.yaml" "$tmp/core-$name.yaml"
    check "kubernetes-validate --strict $K8S ($name)" kubernetes-validate --strict --quiet -k "$K8S" "$tmp/core-$name.yaml"
    check "herald.toml is TOML without secrets ($name)" herald_toml "$tmp/render-$name/herald/templates/configmap.yaml" "$tmp/$name.toml"
    if [ -n "${HERALD_CHECK_OUT:-}" ] && [ -f "$tmp/$name.toml" ]; then
      cp "$tmp/$name.toml" "$HERALD_CHECK_OUT/$name.toml"
    fi
    members="$tmp/render-$name/herald/templates/control-statefulset.yaml"
    if [ -f "$members" ]; then
      check "members' command line ($name)" control_check_script "$members" "$tmp/$name.control.sh"
    fi
    for role in push webhooks; do
      worker="$tmp/render-$name/herald/templates/$role-deployment.yaml"
      if [ -f "$worker" ] && [ -f "$tmp/$name.toml" ]; then
        check "$role command line ($name)" worker_check_script "$worker" "$tmp/$name.$role.worker.sh" "$tmp/$name.toml"
      fi
    done
  fi
done

# The plain manifests: every overlay renders and validates.
for overlay in deploy/overlays/*/; do
  name=$(basename "$overlay")
  check "kubectl kustomize ($name)" kubectl kustomize "$overlay" -o "$tmp/kustomize-$name.yaml"
  if [ -f "$tmp/kustomize-$name.yaml" ]; then
    check "kubernetes-validate --strict $K8S (deploy/$name)" kubernetes-validate --strict --quiet -k "$K8S" "$tmp/kustomize-$name.yaml"
    check "herald.toml is TOML without secrets (deploy/$name)" herald_toml "$tmp/kustomize-$name.yaml" "$tmp/deploy-$name.toml"
    if [ -n "${HERALD_CHECK_OUT:-}" ] && [ -f "$tmp/deploy-$name.toml" ]; then
      cp "$tmp/deploy-$name.toml" "$HERALD_CHECK_OUT/deploy-$name.toml"
    fi
  fi
done
[ -n "${HERALD_CHECK_OUT:-}" ] && echo "      (each render's herald.toml is in $HERALD_CHECK_OUT: <values-name>.toml, deploy-<overlay>.toml)"
check "grafana dashboard is JSON" python3 -c "import json,sys; json.load(open('deploy/grafana/herald-dashboard.json'))"

# Each ci/*.yaml.invalid must be refused, its error naming the WORD of its `# refused: WORD` line:
# typos in the chart's own values and in the typed config part (values.schema.json), a secret in
# the free-form `config`, missing secrets.
for invalid in "$CHART"/ci/*.yaml.invalid; do
  name=$(basename "$invalid" .yaml.invalid)
  word=$(sed -n 's/^# refused: //p' "$invalid")
  if [ -z "$word" ]; then
    echo "FAIL  $name: no '# refused: WORD' line"; fail=1
  elif helm template herald "$CHART" -f "$invalid" >"$tmp/out" 2>&1; then
    echo "FAIL  $name was accepted"; fail=1
  elif grep -qF -- "$word" "$tmp/out"; then
    echo "ok    $name is refused, naming $word"
  else
    echo "FAIL  $name was refused without naming $word:"; sed 's/^/      /' "$tmp/out"; fail=1
  fi
done

# The chart and the binary cannot drift apart: every rendered herald.toml passes
# `herald edge --config F --check` with the binary built here (HERALD_BIN), and every rendered
# control-plane command line (flags and HERALD_* environment) `herald control --check`, and every
# rendered worker command line (worker_check_script) `herald push --check` or `herald webhooks
# --check`. The files the chart mounts from Secrets and ConfigMaps (/etc/herald/…: token keys,
# JWKS, TLS, push credentials) are made up in a private mount namespace, so the check reads real
# files without touching this machine's /etc.
# The control plane's certificate files (control-tls/: tls.crt, tls.key, ca.crt) are a
# self-signed certificate that is its own CA: enough for both sides to load them.
if [ -n "${HERALD_BIN:-}" ]; then
  files='
      mkdir -p /etc/herald && mount -t tmpfs tmpfs /etc/herald
      mkdir -p /etc/herald/keys /etc/herald/jwks /etc/herald/tls /etc/herald/control-tls
      openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl ec -pubout -out /etc/herald/keys/key-0.pem 2>/dev/null
      openssl genrsa 2048 2>/dev/null | openssl rsa -pubout -out /etc/herald/keys/key-1.pem 2>/dev/null
      for i in 0 1 2 3 4 5; do printf "check-hs256-secret-0123456789\n" >/etc/herald/keys/key-$i.secret; done
      echo "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"j1\",\"alg\":\"EdDSA\",\"x\":\"2J6afRaz8u1NXyyONd-yRht1hGSWQafnH4jDjutVwpA\"}]}" >/etc/herald/jwks/jwks.json
      # presence.tls, kafka.tls and edge.tls: a certificate and key each (and it as CA); the Redis
      # URL and the passwords come from Secrets as environment variables.
      for d in redis kafka tls; do
        mkdir -p /etc/herald/$d
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=check -days 1 \
          -keyout /etc/herald/$d/tls.key -out /etc/herald/$d/tls.crt 2>/dev/null
        cp /etc/herald/$d/tls.crt /etc/herald/$d/ca.crt
      done
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=herald-check \
        -keyout /etc/herald/control-tls/tls.key -out /etc/herald/control-tls/tls.crt 2>/dev/null
      cp /etc/herald/control-tls/tls.crt /etc/herald/control-tls/ca.crt'
  for toml in "$tmp"/*.toml; do
    name=$(basename "$toml" .toml)
    check "herald edge --check and herald replicate --check ($name)" unshare --mount sh -euc "$files"'
      export HERALD_KAFKA_SASL_PASSWORD=check
      if grep -q "/etc/herald/redis/" "$1"; then export HERALD_PRESENCE=rediss://redis.check.invalid:6380 HERALD_PRESENCE_PASSWORD=check; fi
      HERALD_JWT_SECRET=check-secret-0123456789 "$0" edge --config "$1" --check
      # The replicator reads the same file ([kafka], [presence] login).
      "$0" replicate --region check --to kafka://kafka.check.invalid:9092 --from other=kafka://kafka.check.invalid:9092 --config "$1" --check' "$HERALD_BIN" "$toml"
  done
  # The push credentials at the paths the chart mounts them (push/): an APNs .p8 key (P-256,
  # PKCS#8) and an FCM service account JSON (RSA, PKCS#8).
  push_files='
      mkdir -p /etc/herald/push
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /etc/herald/push/apns.p8 2>/dev/null
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | python3 -c "import json, sys; json.dump({
          \"type\": \"service_account\", \"project_id\": \"herald-check\", \"private_key_id\": \"check\", \"private_key\": sys.stdin.read(),
          \"client_email\": \"herald@herald-check.iam.gserviceaccount.com\", \"token_uri\": \"https://oauth2.googleapis.com/token\"}, sys.stdout)" \
        >/etc/herald/push/fcm-service-account.json'
  for script in "$tmp"/*.worker.sh; do
    [ -f "$script" ] || continue
    base=$(basename "$script" .worker.sh)
    name=${base%.*} role=${base##*.}
    check "herald $role --check ($name)" unshare --mount sh -euc "$files$push_files"'
      cp "$2" /etc/herald/herald.toml
      HERALD_BIN="$0" sh -eu "$1"' "$HERALD_BIN" "$script" "$tmp/$name.toml"
  done
  for script in "$tmp"/*.control.sh; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .control.sh)
    check "herald control --check ($name)" unshare --mount sh -euc "$files"'
      cp "$2" /etc/herald/herald.toml
      HERALD_BIN="$0" sh -eu "$1"' "$HERALD_BIN" "$script" "$tmp/$name.toml"
  done
fi
exit $fail
