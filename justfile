# purista-rs tasks. `just --list` shows them.

# The main job: an example service on the in-memory default store.
demo:
    cargo run -p purista-core --example service

# Every test; servers are found as README.md says (env URL, container, local binary).
test:
    cargo test --workspace --all-features

# Only the integration suites (every backend), failing if a server is missing.
test-integration:
    PURISTA_TEST_REQUIRE_SERVICES=1 cargo test -p integration-tests

# Redis, NATS and a Dapr sidecar for local work (needs an image registry).
up:
    docker-compose up -d

down:
    docker-compose down -v

# Criterion benchmarks against local servers (a container's port proxy adds
# ~100 µs and a busy process to every round trip); see README.md for figures.
bench *ARGS:
    PURISTA_TEST_SERVERS="${PURISTA_TEST_SERVERS:-local}" cargo bench -p purista-core -p integration-tests {{ARGS}}

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# What CI runs: installs servers, builds local images, runs everything.
ci:
    bash .ci/run
