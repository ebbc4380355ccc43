# tenantgate: multi-stage build, small non-root runtime image.
# The builder's Rust is at least Cargo.toml's rust-version (1.91: notify and uuid need it).
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tenantgate

# distroless/cc has glibc and libgcc for a Rust binary, no shell, and runs as
# nonroot (uid 65532) by default.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/tenantgate /usr/local/bin/tenantgate
# The playground config, for `tenantgate run` against a backend on 127.0.0.1:8000;
# in Kubernetes a ConfigMap is mounted over /etc/tenantgate (examples/kubernetes).
# `tenantgate dev` in the image reads it too (TENANTGATE_CONFIG); outside the image,
# without a file, dev uses the same config built into the binary.
COPY config/tenantgate.toml /etc/tenantgate/tenantgate.toml
ENV TENANTGATE_CONFIG=/etc/tenantgate/tenantgate.toml
USER 65532:65532
# 8080: the proxy, for the app in the same pod (loopback). 9090: admin, for probes
# and Prometheus, so it listens on every interface. No HEALTHCHECK: Kubernetes probes
# /healthz and /readyz on 9090 instead.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tenantgate"]
CMD ["run", "--admin-listen", "0.0.0.0:9090"]
