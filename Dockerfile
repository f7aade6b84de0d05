# syntax=docker/dockerfile:1
# Build: the release binaries (offboard and workfront-sim).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Every target the manifest declares must be present, the benchmark included.
COPY benches benches
COPY config config
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bins \
    && mkdir -p /out/data \
    && cp target/release/offboard target/release/workfront-sim /out/

# Run: a small image without a shell or package manager, as a non-root user.
# TLS roots are compiled in (webpki-roots), so no CA bundle is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/offboard /out/workfront-sim /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
ENV OFFBOARD__SERVER__BIND=0.0.0.0:8080 \
    OFFBOARD__DATABASE__URL=sqlite:///data/offboard.db \
    OFFBOARD__LOG__FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/offboard", "healthcheck", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/offboard"]
CMD ["serve"]
