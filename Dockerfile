# sessionlake as a container: a Rust build stage, then a small Debian runtime
# with only the binary and CA certificates. Used by docker-compose.yml next
# to the official cassandra:5 image. Not exercised in CI (the CI machine has
# no Docker engine); the binary it builds is the one CI tests.
#
#   docker build -t sessionlake .
#   docker run --rm sessionlake --help

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit caches the registry and the target dir between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sessionlake \
    && cp target/release/sessionlake /usr/local/bin/sessionlake

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 sessionlake \
    && mkdir -p /data && chown sessionlake /data
COPY --from=build /usr/local/bin/sessionlake /usr/local/bin/sessionlake
USER sessionlake
WORKDIR /data
VOLUME ["/data"]
ENV SESSIONLAKE_LAKE=/data/data_lake \
    SESSIONLAKE_GENERATE_OUT=/data/assignment_data.jsonl.bz2 \
    SESSIONLAKE_API_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["sessionlake"]
CMD ["up", "--generate"]
