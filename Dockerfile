# The same image that image/build.sh builds without a container engine, for those who build with
# Docker: the release binary at /usr/bin/kafka-expose, the static launcher at
# /usr/bin/kafka-expose-launch, glibc, libgcc, CA certificates and netbase,
# no shell, user 65532, the same entrypoint, command and labels. image/build.sh's is the image that
# is built and tested in this project (there is no Docker engine where it is developed); this one
# is not built there, and its digest differs (another base, no SOURCE_DATE_EPOCH).
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg KAFKA_EXPOSE_COMMIT=$(git rev-parse HEAD) -t registry.example/kafka-expose:0.1.0 .
FROM rust:1.95-bookworm AS build
ARG KAFKA_EXPOSE_COMMIT=unknown
ENV KAFKA_EXPOSE_COMMIT=${KAFKA_EXPOSE_COMMIT}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
RUN CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bin kafka-expose
# The launch adapter's step runs inside broker images of any libc: static musl.
RUN rustup target add "$(uname -m)-unknown-linux-musl" && \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked -p kafka-expose-kafka \
      --bin kafka-expose-launch --target "$(uname -m)-unknown-linux-musl" && \
    cp "target/$(uname -m)-unknown-linux-musl/release/kafka-expose-launch" target/release/

# distroless cc-debian12 is Debian 12's libc6, libgcc-s1, ca-certificates, netbase and tzdata,
# with the nonroot user 65532: what image/build.sh extracts, plus tzdata.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG KAFKA_EXPOSE_COMMIT=unknown
LABEL org.opencontainers.image.source="https://github.com/kafka-expose/kafka-expose" \
      org.opencontainers.image.title="kafka-expose" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${KAFKA_EXPOSE_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/kafka-expose /usr/bin/kafka-expose
COPY --from=build /src/target/release/kafka-expose-launch /usr/bin/kafka-expose-launch
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/bin/kafka-expose"]
CMD ["serve", "--tls-cert=/certs/tls.crt", "--tls-key=/certs/tls.key"]
