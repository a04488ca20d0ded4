# Both binaries (chat-api, chat-gateway) and the embedded `chat` in one image.
#   docker build -t chat .
#   docker run --rm -p 8000:8000 chat                 # the embedded server (SQLite in /data)
#   docker run --rm chat chat-api --help              # a scaled-mode binary
#   docker build --build-arg FEATURES=otlp -t chat .  # with OTLP span export (docs/observability.md)
# Dependencies are built in their own layer (cargo-chef), so a source change rebuilds only the
# workspace. The runtime is distroless (glibc, CA certificates, nothing else) and runs as the
# non-root user 65532.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# A chat-shared feature for the three binaries, e.g. `otlp`; none by default.
ARG FEATURES=""
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json \
      -p chat-server -p chat-api -p chat-gateway ${FEATURES:+--features chat-shared/$FEATURES}
COPY . .
RUN cargo build --release --locked -p chat-server -p chat-api -p chat-gateway \
      ${FEATURES:+--features chat-shared/$FEATURES} \
 && mkdir -p /out /data \
 && cp target/release/chat target/release/chat-api target/release/chat-gateway /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /usr/local/bin/
COPY --from=builder --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
ENV HOST=0.0.0.0 \
    DATABASE_URL=sqlite:///data/chat.db
EXPOSE 8000 8001
ENTRYPOINT []
CMD ["/usr/local/bin/chat"]
