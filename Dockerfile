# One image for every Herald role: `herald edge`, `herald control`, `herald replicate` (and `herald ctl`).
# Build: docker build -t herald:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p herald && cp target/release/herald /herald

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin herald
COPY --from=build /herald /usr/local/bin/herald
USER 10001:10001
EXPOSE 8080 7100 9400
# The edge and the replicator write nothing to disk; `herald control` writes only under its
# --data directory (a volume): the root filesystem can be read-only.
ENTRYPOINT ["herald"]
CMD ["edge", "--config", "/etc/herald/herald.toml"]
