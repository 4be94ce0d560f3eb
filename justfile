# Everyday commands (https://github.com/casey/just); each is a plain cargo line too.

# Run the server on 127.0.0.1:8080 with ./data
run:
    cargo run --release

# Everything CI runs: fmt, clippy, tests
ci:
    bash .ci/run

fmt:
    cargo fmt

clippy:
    cargo clippy --release --all-targets -- -D warnings

# The README's test command: Rust tests, then the Python checks (venv set up on first use)
test:
    scripts/test

# Regenerate openapi/openapi.json and openapi/asyncapi.json from the running server's documents
openapi:
    TIDEGATE_UPDATE_OPENAPI=1 cargo test --release --test it openapi

# Load benchmark over loopback; results go in BENCHMARKS.md
bench:
    cargo build --release --bins
    ./target/release/tidegate-bench

# Push delivery over WebSocket against nats-server (apt-get install nats-server)
bench-push:
    cargo build --release --bins
    ./target/release/tidegate-bench push

# Every fuzz target for 10 minutes (nightly and cargo-fuzz); RELIABILITY.md has the figures
fuzz:
    scripts/fuzz

# 1000 kill -9 cycles under load, every acknowledged record and commit checked after each
crash-loop:
    cargo build --release
    scripts/crash-loop --cycles 1000

# 30 minutes of mixed load, memory and descriptors sampled (docs/soak.png)
soak:
    cargo build --release
    scripts/soak --minutes 30 --png docs/soak.png
