# Runnel's images: one per connector (target connector, with --build-arg CONNECTOR=TYPE for
# any type of the catalogue: `runnel connector types`), one for the operator (target
# operator) and one for the runnel command (target cli: topics on a hub, connectors on
# Kubernetes). Each is a static musl binary on scratch with the CA bundle for TLS, run as a
# non-root user, with no shell.
#
# From source, with the repository as the context:
#   docker build --target connector --build-arg CONNECTOR=http-source \
#     -t ghcr.io/runnel-dev/runnel-http-source:0.1.0 .
# From prebuilt static binaries, where base images cannot be pulled (scripts/build-images
# stages bin/NAME and ca-certificates.crt in a context directory):
#   docker build -f Dockerfile --build-arg BINARIES=prebuilt --build-arg CONNECTOR=http-source \
#     --target connector CONTEXT
#
# Run a connector with flags (the leading -- is allowed) or a mounted connect.yml:
#   docker run --rm IMAGE -- --endpoint=https://example.com/events --topic=events --create-topic

# The connectors, the operator and the CLI build apart (as in scripts/build-images), so the
# Kubernetes client of the other two does not widen the connectors' dependency features.
#
# Where the binaries come from: builder (compiled here) or prebuilt (taken from the context).
ARG BINARIES=builder
# The connector of the connector target (a type of the catalogue).
ARG CONNECTOR=test-source

FROM rust:1.89-bookworm AS builder
ARG CONNECTOR
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile image --target x86_64-unknown-linux-musl -p "$CONNECTOR" \
 && cargo build --locked --profile image --target x86_64-unknown-linux-musl \
      -p runnel-operator --bin runnel-operator \
 && cargo build --locked --profile image --target x86_64-unknown-linux-musl \
      -p runnel-cli --bin runnel \
 && mkdir -p /out/bin /out/data \
 && cd target/x86_64-unknown-linux-musl/image \
 && cp "$CONNECTOR" runnel-operator runnel /out/bin/ \
 && cp /etc/ssl/certs/ca-certificates.crt /out/

FROM scratch AS prebuilt
COPY bin/ /out/bin/
COPY data/ /out/data/
COPY ca-certificates.crt /out/ca-certificates.crt

FROM ${BINARIES} AS binaries

FROM scratch AS base
COPY --from=binaries /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The default local hub lives in /data (mount a volume there to keep it).
COPY --from=binaries --chown=65532:65532 /out/data/ /data/
ENV RUNNEL_HOME=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# /healthz, /readyz and /metrics.
EXPOSE 9100

FROM base AS connector
ARG CONNECTOR
COPY --from=binaries /out/bin/${CONNECTOR} /usr/local/bin/connector
ENTRYPOINT ["/usr/local/bin/connector"]

FROM base AS operator
COPY --from=binaries /out/bin/runnel-operator /usr/local/bin/runnel-operator
ENTRYPOINT ["/usr/local/bin/runnel-operator"]

# The runnel command, e.g. reading a topic of a hub kept in a volume:
#   docker run --rm -v hub:/data IMAGE topic consume events -B -d
FROM base AS cli
COPY --from=binaries /out/bin/runnel /usr/local/bin/runnel
ENTRYPOINT ["/usr/local/bin/runnel"]
