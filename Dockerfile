# A small non-root image of kafka-expose: the webhook and reconciler (`serve`), and the properties
# adapter's init container (`patch-properties`), which runs this same image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin kafka-expose \
 && strip target/release/kafka-expose

# glibc and nothing else: no shell, no package manager; the nonroot user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kafka-expose /kafka-expose
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/kafka-expose"]
CMD ["serve", "--tls-cert=/certs/tls.crt", "--tls-key=/certs/tls.key"]
