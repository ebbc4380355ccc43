# tenantgate: multi-stage build, small non-root runtime image.
FROM rust:1.88-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tenantgate

# distroless/cc has glibc and libgcc for a Rust binary, no shell, and runs as
# nonroot (uid 65532) by default.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/tenantgate /usr/local/bin/tenantgate
COPY config/tenantgate.toml /etc/tenantgate/tenantgate.toml
ENV TENANTGATE_CONFIG=/etc/tenantgate/tenantgate.toml
USER 65532:65532
# 8080: the proxy, for the app in the same pod (loopback). 9090: admin, for probes
# and Prometheus, so it listens on every interface.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/tenantgate"]
CMD ["run", "--admin-listen", "0.0.0.0:9090"]
