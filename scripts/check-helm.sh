#!/usr/bin/env bash
# Checks the Kubernetes packaging offline: helm lint, render the chart with every example values
# file, validate each render (and each deploy/ overlay, rendered by kubectl kustomize) against the
# Kubernetes API schemas (strict), and prove the values schema refuses a misspelled key. Needs
# helm, kubectl and kubernetes-validate (scripts/install-test-tools.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=helm/herald
K8S=1.30.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

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
  fi
done

# The plain manifests: every overlay renders and validates.
for overlay in deploy/overlays/*/; do
  name=$(basename "$overlay")
  check "kubectl kustomize ($name)" kubectl kustomize "$overlay" -o "$tmp/kustomize-$name.yaml"
  [ -f "$tmp/kustomize-$name.yaml" ] && check "kubernetes-validate --strict $K8S (deploy/$name)" kubernetes-validate --strict --quiet -k "$K8S" "$tmp/kustomize-$name.yaml"
done
check "grafana dashboard is JSON" python3 -c "import json,sys; json.load(open('deploy/grafana/herald-dashboard.json'))"

# The schema must refuse a typo, and the chart must refuse missing secrets.
if helm template herald "$CHART" -f "$CHART/ci/typo-values.yaml.invalid" >"$tmp/out" 2>&1; then
  echo "FAIL  a misspelled value key was accepted"; fail=1
elif grep -q "replcas" "$tmp/out"; then
  echo "ok    a misspelled value key is refused, naming it"
else
  echo "FAIL  a misspelled key was refused without naming it:"; sed 's/^/      /' "$tmp/out"; fail=1
fi
if helm template herald "$CHART" >"$tmp/out" 2>&1; then
  echo "FAIL  the chart rendered without secrets"; fail=1
else
  echo "ok    missing secrets are refused with a clear message"
fi
exit $fail
