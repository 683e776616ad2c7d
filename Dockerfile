# One image for every Herald role: `herald edge`, `herald control`, `herald replicate` (and `herald ctl`).
#
# With a registry (Docker Hub reachable), the default target builds the binary too:
#   docker build -t herald:0.1.0 .
# Offline, or from a binary built elsewhere (CI: scripts/check-image.sh), build only the runtime
# stage from a context directory that holds just the `herald` binary, stripped of debug info:
#   mkdir ctx && objcopy --strip-debug target/release/herald ctx/herald
#   podman build --target runtime --build-arg BASE=localhost/debian:bookworm-slim \
#     -f Dockerfile -t herald:0.1.0 ctx
# The runtime stage needs no network when its base already has ca-certificates (the mmdebstrap
# base of scripts/install-test-tools.sh does); on debian:bookworm-slim it installs them with apt.
ARG BASE=debian:bookworm-slim

# ---- runtime-base: what every Herald image runs on (no binary yet)
FROM ${BASE} AS runtime-base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Herald real-time cluster: edge, control plane, replicator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}"
# The user the chart runs as (runAsUser/runAsGroup 10001), written without useradd or apt so that
# any Debian-like base works offline. /bin/sleep (coreutils) is used by the chart's preStop hook.
RUN set -eu; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    grep -q '^herald:' /etc/group || echo 'herald:x:10001:' >>/etc/group; \
    grep -q '^herald:' /etc/passwd || echo 'herald:x:10001:10001:Herald:/nonexistent:/usr/sbin/nologin' >>/etc/passwd; \
    test -x /bin/sleep
USER 10001:10001
EXPOSE 8080 7100 9400
# The edge and the replicator write nothing to disk; `herald control` writes only under its
# --data directory (a volume): the root filesystem can be read-only.
ENTRYPOINT ["herald"]
CMD ["edge", "--config", "/etc/herald/herald.toml"]

# ---- runtime: the binary from the build context (a directory holding only `herald`).
# Build it with --target runtime; nothing here needs a registry beyond BASE, nor the network.
FROM runtime-base AS runtime
COPY herald /usr/local/bin/herald

# ---- build: the release binary, with a Rust toolchain image (needs a registry and crates.io).
# The release profile keeps line tables (debug = 1): they are split into herald.debug (kept in
# this stage, for profiling: `docker build --target build` and copy /herald.debug out) and the
# shipped binary carries a debuglink to it but no debug info.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p herald \
 && objcopy --only-keep-debug target/release/herald /herald.debug \
 && objcopy --strip-debug --add-gnu-debuglink=/herald.debug target/release/herald /herald

# ---- default target: the runtime image with the binary built above.
FROM runtime-base AS release
COPY --from=build /herald /usr/local/bin/herald
