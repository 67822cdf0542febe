# syntax=docker/dockerfile:1
#
# One image for the whole control plane and the site agent:
#   /usr/local/bin/manifold             all-in-one / per-service server, `manifold migrate`
#   /usr/local/bin/manifold-site-agent  the agent of a physical cluster
#   /usr/local/bin/manifold-tenancy     the tenancy service on its own
# The Helm charts in helm/ reference it as image.repository:image.tag.
#
#   docker build -t ghcr.io/manifold/manifold:0.1.0 .

# The toolchain the workspace is tested with (rustc 1.95); bump together with CI.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# No protoc, OpenSSL or Postgres needed: protos compile with protox, TLS is rustls
# (ring, built with the image's gcc), and SQL is checked at run time.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin manifold --bin manifold-site-agent --bin manifold-tenancy \
 && mkdir -p /out \
 && cp target/release/manifold target/release/manifold-site-agent \
       target/release/manifold-tenancy /out/

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: for a DATABASE_URL or OTLP endpoint behind a public CA.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 manifold \
 && useradd --system --uid 10001 --gid manifold --home-dir /var/lib/manifold \
        --shell /usr/sbin/nologin manifold \
 && mkdir -p /var/lib/manifold /var/lib/manifold-agent \
 && chown manifold:manifold /var/lib/manifold /var/lib/manifold-agent
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/manifold
ENV MANIFOLD__DATA_DIR=/var/lib/manifold
# gRPC (TLS), Kubernetes API of the gateway (TLS), admin (metrics, /healthz, /readyz)
EXPOSE 7443 6443 9090
ENTRYPOINT ["/usr/local/bin/manifold"]
CMD ["serve"]
