# syntax=docker/dockerfile:1
# Multi-stage build: cargo-chef caches dependencies, the final image holds one binary.
FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --bin tidegate

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data tidegate \
    && mkdir -p /data && chown tidegate /data
COPY --from=builder /src/target/release/tidegate /usr/local/bin/tidegate
USER tidegate
VOLUME ["/data"]
ENV TIDEGATE_LISTEN=0.0.0.0:8080 \
    TIDEGATE_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tidegate"]
CMD ["serve"]
