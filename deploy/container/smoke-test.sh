#!/usr/bin/env bash
# `make image-test`: runs each exported image (dist/*.oci.tar, read back from the archive) with buildah and
# checks, step by step, that it works as a sidecar:
#
#   with-model  the image's own entrypoint and command with no config: the embedded default, listen addresses
#               from TIERGATE_GRPC / TIERGATE_HTTP
#   sidecar     the same entrypoint with a config file and the model mounted (read-only) from the host
#
# Each: runs as a non-root user; `serve` reaches SERVING on the gRPC health service (`tiergate health`);
# /readyz answers 200; `tiergate ask` completes one request on the on-device model; SIGTERM stops it cleanly
# (exit status 0, "tiergate: stopped"); nothing was written outside /tmp. Prints one "ok" line per step, or
# "FAIL" with the server's log.
#
# buildah's chroot isolation shares the host's network and PID namespaces, so the server listens on free
# loopback ports and tini is not PID 1 (TINI_SUBREAPER stands in for it).
set -euo pipefail

if [ "${1:-}" = --inside ]; then
    # ---- runs inside the container: --inside GRPC_PORT HTTP_PORT EXPECT_BAKED ENTRYPOINT... CMD... ------
    shift
    grpc=127.0.0.1:$1 http=127.0.0.1:$2 baked=$3
    shift 3
    log=/tmp/serve.log
    ok() { echo "ok   - $*"; }
    fail() {
        echo "FAIL - $*"
        echo "--- server log (last 40 lines) ---"
        tail -n 40 "$log" 2>/dev/null || true
        [ -z "${server:-}" ] || kill -KILL "$server" 2>/dev/null || true
        exit 1
    }

    uid=$(id -u)
    [ "$uid" != 0 ] || fail "the image runs as root"
    ok "runs as $(id -un) (uid $uid), not root"

    touch /tmp/.smoke-start
    "$@" >"$log" 2>&1 &
    server=$!
    started=$(date +%s.%N)
    deadline=$((SECONDS + 180))
    until tiergate health --address "$grpc" --timeout 1 >/dev/null 2>&1; do
        kill -0 "$server" 2>/dev/null || fail "'$*' exited before it was SERVING"
        [ "$SECONDS" -lt "$deadline" ] || fail "not SERVING on $grpc after 180 s"
        sleep 0.2
    done
    status=$(tiergate health --address "$grpc")
    [ "$status" = SERVING ] || fail "tiergate health printed '$status', not SERVING"
    ok "'$*' is SERVING on $grpc after $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    if [ "$baked" = yes ]; then
        ! grep -q assembling "$log" || fail "the baked-in model was re-assembled at start"
        ok "the baked-in model was used as it is (verified at build time, nothing written)"
    fi

    python -c "import urllib.request as u; assert u.urlopen('http://$http/readyz', timeout=5).status == 200" \
        || fail "http://$http/readyz did not answer 200"
    ok "http://$http/readyz answers 200"

    tiergate ask "What is the capital of France? One word." --address "$grpc" --max-output-tokens 16 \
        --timeout 120 >/tmp/answer.txt 2>/tmp/decision.txt || fail "tiergate ask failed: $(cat /tmp/decision.txt)"
    [ -n "$(tr -d '[:space:]' </tmp/answer.txt)" ] || fail "tiergate ask printed an empty answer"
    grep -q '^\[local via route default: local:ok' /tmp/decision.txt ||
        fail "the decision line does not say the on-device model served: $(cat /tmp/decision.txt)"
    ok "tiergate ask answered '$(tr '\n' ' ' </tmp/answer.txt | cut -c1-60)'"
    ok "decision: $(cat /tmp/decision.txt)"

    kill -TERM "$server"
    stop_deadline=$((SECONDS + 30))
    while kill -0 "$server" 2>/dev/null; do
        [ "$SECONDS" -lt "$stop_deadline" ] || fail "still running 30 s after SIGTERM"
        sleep 0.1
    done
    code=0
    wait "$server" || code=$?
    [ "$code" = 0 ] || fail "exit status $code after SIGTERM, not 0"
    grep -q 'tiergate: stopped' "$log" || fail "no 'tiergate: stopped' in the log after SIGTERM"
    ok "SIGTERM: drained and exited 0"

    written=$(find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp \) -prune \
        -o -newer /tmp/.smoke-start -print 2>/dev/null || true)
    [ -z "$written" ] || fail "wrote outside /tmp, which a read-only root file system forbids: $written"
    ok "wrote nothing outside /tmp (a read-only root file system works)"
    exit 0
fi

# ---- runs on the host ----------------------------------------------------------------------------------
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/container/common.sh
source deploy/container/common.sh

for archive in "$ARCHIVE" "$ARCHIVE_WITH_MODEL"; do
    [ -f "$archive" ] || { echo "image-test: $archive is missing: run make image" >&2; exit 1; }
done
exec 9>"$IMAGE_CACHE/lock"
flock 9

tmp=$(mktemp -d)
containers=()
cleanup() {
    for ctr in "${containers[@]}"; do "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The image's ENTRYPOINT followed by its CMD, one word a line.
image_command() {
    "${BUILDAH[@]}" inspect "$1" | python3 -c 'import json, sys
config = json.load(sys.stdin)["OCIv1"]["config"]
print("\n".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])))'
}

# smoke VARIANT ARCHIVE EXPECT_BAKED [buildah run options...]
smoke() {
    local variant=$1 archive=$2 baked=$3 ctr grpc_port=$4 http_port=$5
    shift 5
    echo "==> $variant: $archive"
    ctr=$("${BUILDAH[@]}" from --quiet --name "tiergate-smoke-$variant-$$" "oci-archive:$archive")
    containers+=("$ctr")
    local command
    mapfile -t command < <(image_command "$ctr")
    timeout 600 "${BUILDAH[@]}" run --isolation chroot --env TINI_SUBREAPER=1 \
        --volume "$PWD/deploy/container/smoke-test.sh:/tmp/smoke-test.sh:ro" "$@" \
        "$ctr" -- bash /tmp/smoke-test.sh --inside "$grpc_port" "$http_port" "$baked" "${command[@]}"
}

# The image without a model, started without a config, must say why it cannot run rather than fail later.
refuses_without_model() {
    echo "==> sidecar without a config: $ARCHIVE"
    local ctr command code=0
    ctr=$("${BUILDAH[@]}" from --quiet --name "tiergate-smoke-bare-$$" "oci-archive:$ARCHIVE")
    containers+=("$ctr")
    mapfile -t command < <(image_command "$ctr")
    timeout 120 "${BUILDAH[@]}" run --isolation chroot --env TINI_SUBREAPER=1 "$ctr" -- "${command[@]}" \
        >"$tmp/bare.log" 2>&1 || code=$?
    if [ "$code" != 2 ] || ! grep -q 'this image has no model' "$tmp/bare.log"; then
        echo "FAIL - expected exit status 2 and 'this image has no model', got $code:"
        cat "$tmp/bare.log"
        exit 1
    fi
    echo "ok   - refuses to start, exit status 2: $(grep -o 'this image has no model.*' "$tmp/bare.log" | cut -c1-60)..."
}

model=$(.venv/bin/python -m tiergate.embedded_model)

grpc=$(free_port) http=$(free_port)
smoke with-model "$ARCHIVE_WITH_MODEL" yes "$grpc" "$http" \
    --env "TIERGATE_GRPC=127.0.0.1:$grpc" --env "TIERGATE_HTTP=127.0.0.1:$http"

grpc=$(free_port) http=$(free_port)
cat >"$tmp/tiergate.yaml" <<EOF
listen: {grpc: "127.0.0.1:$grpc", http: "127.0.0.1:$http"}
models:
  local: {provider: llama_cpp, path: /models/$(basename "$model")}
routes:
  default: {chain: [local]}
EOF
chmod 0644 "$tmp/tiergate.yaml"
smoke sidecar "$ARCHIVE" no "$grpc" "$http" \
    --volume "$tmp/tiergate.yaml:/etc/tiergate/tiergate.yaml:ro" --volume "$(dirname "$model"):/models:ro"

refuses_without_model

echo "==> image-test: both images passed"
