#!/usr/bin/env bash
# The container image, built and run as the Helm chart runs it (part of scripts/test.sh).
#
#   scripts/check-image.sh BINARY        e.g. scripts/check-image.sh "$CARGO_TARGET_DIR/debug/herald"
#
# 1. Copies BINARY into an empty build context, stripped of debug info (objcopy --strip-debug),
#    and checks that no .debug_* section is left.
# 2. Builds the Dockerfile's `runtime` target with podman (runtime runc) on the Debian-made base
#    localhost/debian:bookworm-slim (scripts/install-test-tools.sh makes it with mmdebstrap),
#    offline: --pull=never, no network during the build. Prints the image and binary sizes.
# 3. Runs it as the chart does: uid/gid 10001, read-only root (no tmpfs anywhere), every
#    capability dropped, no-new-privileges, `herald dev` on a free port of 127.0.0.1 (host
#    network). Checks, from the kernel's view of the process: uid/gid 10001, no capabilities,
#    NoNewPrivs, read-only root; that the preStop hook's /bin/sleep runs; /readyz answers 200
#    within 30 s; one publish -> deliver round trip (an SSE reader on `incidents`, a POST
#    /v1/publish with the API key, the same message id arrives); SIGTERM stops it cleanly.
#
# Every step is bounded in time; the container, the image (unless HERALD_KEEP_IMAGE=1) and the
# temporary files are removed on exit. Any failure exits 1 naming the check. Traffic goes only to
# 127.0.0.1. Needs root (podman as root, as in ../shared/TOOLING.md).
#   HERALD_IMAGE_BASE  base image (default localhost/debian:bookworm-slim)
#   HERALD_IMAGE_TAG   tag of the built image (default localhost/herald:check-<pid>)
#   HERALD_KEEP_IMAGE  1: keep the image after the check
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE="${HERALD_IMAGE_BASE:-localhost/debian:bookworm-slim}"
TAG="${HERALD_IMAGE_TAG:-localhost/herald:check-$$}"
NAME="herald-image-check-$$"
PODMAN=(podman --runtime runc)

fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
say() { echo "check-image: $*"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
t0=$(date +%s.%N)
step_start=$t0
# say_step MESSAGE: prints MESSAGE with the time since the previous step.
say_step() {
  local now; now=$(date +%s.%N)
  echo "check-image: $* [$(awk -v a="$step_start" -v b="$now" 'BEGIN { printf "%.1f s", b - a }')]"
  step_start=$now
}

[ $# -eq 1 ] || { echo "usage: $0 BINARY   (a herald binary, e.g. \$CARGO_TARGET_DIR/debug/herald)" >&2; exit 2; }
BINARY=$1
[ -f "$BINARY" ] && [ -x "$BINARY" ] || fail "$BINARY is not an executable file"
for tool in podman runc objcopy readelf curl python3 timeout sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/install-test-tools.sh"
done
[ "$(id -u)" = 0 ] || fail "needs root (podman as root with runc; see ../shared/TOOLING.md)"
podman image exists "$BASE" || fail "base image $BASE is missing: run scripts/install-test-tools.sh"

WORK=$(mktemp -d)
SSE_PID=
CREATED=
BUILT=
cleanup() {
  local rc=$?
  if [ -n "$SSE_PID" ]; then kill "$SSE_PID" 2>/dev/null || true; wait "$SSE_PID" 2>/dev/null || true; fi
  if [ -n "$CREATED" ]; then
    if [ "$rc" != 0 ]; then
      echo "--- container log (last 40 lines)" >&2
      timeout 20 podman logs --tail 40 "$NAME" >&2 2>&1 || true
    fi
    timeout 30 "${PODMAN[@]}" rm -f -t 2 "$NAME" >/dev/null 2>&1 || true
  fi
  if [ -n "$BUILT" ] && [ "${HERALD_KEEP_IMAGE:-0}" != 1 ]; then
    timeout 60 podman rmi -f "$TAG" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the binary, without debug info
mkdir "$WORK/ctx"
objcopy --strip-debug "$BINARY" "$WORK/ctx/herald" || fail "objcopy --strip-debug $BINARY"
# (.debug_gdb_scripts is not debug info: a few loaded bytes naming rustc's gdb pretty-printers.)
debug_sections=$(readelf -S --wide "$WORK/ctx/herald" | grep -E '\.(z?debug_|gdb_index)' | grep -v '\.debug_gdb_scripts' || true)
[ -z "$debug_sections" ] || { echo "$debug_sections" >&2; fail "the stripped binary still carries debug sections"; }
bin_in=$(stat -c %s "$BINARY")
bin_out=$(stat -c %s "$WORK/ctx/herald")
say_step "binary: $(mb "$bin_in") -> $(mb "$bin_out") stripped (no .debug_* sections)"

# ---- 2. the image
revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! timeout 300 "${PODMAN[@]}" build --pull=never --network=none --target runtime \
    --build-arg "BASE=$BASE" --build-arg "REVISION=$revision" \
    -f "$ROOT/Dockerfile" -t "$TAG" "$WORK/ctx" >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log" >&2
  fail "podman build --target runtime (base $BASE) failed or took over 300 s"
fi
BUILT=1
image_size=$(podman image inspect --format '{{.Size}}' "$TAG")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
say_step "image $TAG: $(mb "$image_size") ($image_size bytes; base $BASE $(mb "$base_size"), binary $(mb "$bin_out"))"
user=$(podman image inspect --format '{{.Config.User}}' "$TAG")
[ "$user" = "10001:10001" ] || fail "the image's USER is '$user', not 10001:10001"
shipped=$(timeout 60 "${PODMAN[@]}" run --rm --network none --entrypoint /usr/bin/sha256sum "$TAG" /usr/local/bin/herald | cut -d' ' -f1) \
  || fail "could not read /usr/local/bin/herald in the image"
[ "$shipped" = "$(sha256sum "$WORK/ctx/herald" | cut -d' ' -f1)" ] || fail "the image's /usr/local/bin/herald is not the stripped binary"

# ---- 3. run it as the chart does
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SECRET="check-secret-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
KEY="check-key-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
CREATED=1
timeout 60 "${PODMAN[@]}" run -d --name "$NAME" --network host \
  --user 10001:10001 --read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges \
  -e HERALD_DEV_SECRET="$SECRET" -e HERALD_DEV_API_KEY="$KEY" \
  "$TAG" dev --listen "127.0.0.1:$PORT" >/dev/null || fail "podman run failed"
say_step "container $NAME started: herald dev --listen 127.0.0.1:$PORT"

code=000
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ] \
    || fail "the container exited before /readyz answered 200 (exit code $(podman inspect --format '{{.State.ExitCode}}' "$NAME" 2>/dev/null))"
  code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/readyz" || true)
  [ "$code" = 200 ] && break
  sleep 0.3
done
[ "$code" = 200 ] || fail "/readyz answered $code, not 200, within 30 s"
say_step "/readyz: 200"

pid=$(podman inspect --format '{{.State.Pid}}' "$NAME")
[ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/status" ] || fail "no process for the container (pid '$pid')"
status=$(cat "/proc/$pid/status")
field() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' <<<"$status"; }
comm=$(cat "/proc/$pid/comm")
[ "$comm" = herald ] || fail "the container's process is '$comm', not herald"
[ "$(field Uid)" = "10001 10001 10001 10001" ] || fail "the process's uids are '$(field Uid)', not 10001"
[ "$(field Gid)" = "10001 10001 10001 10001" ] || fail "the process's gids are '$(field Gid)', not 10001"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
  [ "$(field "$cap")" = 0000000000000000 ] || fail "$cap is $(field "$cap"): capabilities are not all dropped"
done
[ "$(field NoNewPrivs)" = 1 ] || fail "NoNewPrivs is not set"
rootopts=$(awk '$5 == "/" { print $6; exit }' "/proc/$pid/mountinfo")
[[ ",$rootopts," == *,ro,* ]] || fail "the root filesystem is mounted '$rootopts', not read-only"
rw=$(awk '$5 != "/" && $5 !~ "^/(proc|sys|dev)(/|$)" && (","$6",") ~ /,rw,/ { print $5 }' "/proc/$pid/mountinfo" | tr '\n' ' ')
say "process: herald as uid/gid 10001, no capabilities, NoNewPrivs, root mounted $rootopts (writable elsewhere: ${rw:-none})"
timeout 20 podman top "$NAME" user group pid args 2>/dev/null | sed 's/^/  /' || say "(podman top unavailable)"
timeout 20 podman exec "$NAME" /bin/sleep 0 || fail "the chart's preStop hook (/bin/sleep) does not run in the container"
say_step "preStop hook: /bin/sleep runs as 10001"

TOKEN=$("$BINARY" token --secret "$SECRET" --account demo --sub u1 --channels '*' --ttl 1h) || fail "herald token failed"
curl -sN --noproxy '*' --max-time 30 "http://127.0.0.1:$PORT/v1/sse?channels=incidents&token=$TOKEN" >"$WORK/sse" 2>"$WORK/sse.err" &
SSE_PID=$!
deadline=$((SECONDS + 10))
until grep -q '"type":"subscribed"' "$WORK/sse"; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/sse" "$WORK/sse.err" >&2; fail "the SSE stream did not subscribe to incidents within 10 s"; }
  kill -0 "$SSE_PID" 2>/dev/null || { cat "$WORK/sse" "$WORK/sse.err" >&2; fail "the SSE request ended before subscribing"; }
  sleep 0.1
done
nonce="image-check-$$-$(date +%s%N)"
resp=$(curl -s --noproxy '*' --max-time 5 -w '\n%{http_code}' -X POST "http://127.0.0.1:$PORT/v1/publish" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"account\":\"demo\",\"channel\":\"incidents\",\"data\":{\"check\":\"$nonce\"}}") || true
pcode=${resp##*$'\n'}
pbody=${resp%$'\n'*}
[ "$pcode" = 200 ] || fail "POST /v1/publish answered ${pcode:-nothing}: $pbody"
msgid=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["message_id"])' "$pbody") || fail "no message_id in $pbody"
deadline=$((SECONDS + 10))
until grep -q "$nonce" "$WORK/sse"; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/sse" >&2; fail "the published record ($msgid) did not arrive on the SSE stream within 10 s"; }
  sleep 0.05
done
delivered=$(grep -m1 "$nonce" "$WORK/sse")
python3 - "$delivered" "$msgid" "$nonce" <<'EOF' || fail "the delivered event is not the published record: $delivered"
import json, sys
line, msgid, nonce = sys.argv[1:]
frame = json.loads(line.split("data:", 1)[1])
assert frame["type"] == "message" and frame["channel"] == "incidents", frame
assert frame["id"] == msgid and frame["data"]["check"] == nonce, frame
EOF
kill "$SSE_PID" 2>/dev/null || true
wait "$SSE_PID" 2>/dev/null || true
SSE_PID=
say_step "round trip: published $msgid on demo/incidents, delivered over SSE"
say "  $delivered"

stop_t0=$SECONDS
timeout 40 "${PODMAN[@]}" stop -t 30 "$NAME" >/dev/null || fail "podman stop failed"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$exit_code" = 0 ] || fail "on SIGTERM herald exited with $exit_code, not 0 (after $((SECONDS - stop_t0)) s; 137 means it ignored SIGTERM and was killed)"
say_step "SIGTERM: herald exited 0"

total=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')
say "OK: image $(mb "$image_size"), binary $(mb "$bin_out") without debug info, /readyz 200, publish -> deliver through the container ($total)"
