# syntax=docker/dockerfile:1
# Both bases can be replaced for air-gapped registries or local builds, e.g.
#   docker build --build-arg BUILDER_IMAGE=registry.example/rust:1.95-bookworm \
#                --build-arg RUNTIME_IMAGE=registry.example/distroless/cc-debian12:nonroot .
# The builder needs cargo, rustc and a C compiler; the runtime glibc, libgcc_s and a user 65532.
# .ci/container builds this file with podman on bases it makes from Debian packages.
ARG BUILDER_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# Build: the release binaries (offboard and workfront-sim).
FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The build settings (the bundled SQLite's options, the linker's packed relocations).
COPY .cargo .cargo
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
FROM ${RUNTIME_IMAGE}
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
