#!/usr/bin/env bash
# Builds Jaeger (the v2 all-in-one: an OTLP receiver, in-memory storage and the query API/UI) from the Go
# module proxy, once per machine, into ~/.cache/tiergate/jaeger-<version>/jaeger, and prints that path.
# The versions are pinned by tools/jaeger/go.mod and go.sum. Exit 3: Go is not installed.
# The tracing tests (tests/integration/test_tracing_jaeger.py) run it; `make jaeger` builds it ahead.
set -euo pipefail
version=v1.75.0
cache="${TIERGATE_CACHE:-$HOME/.cache/tiergate}/jaeger-$version"
bin="$cache/jaeger"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "go is not installed: cannot build Jaeger $version" >&2
    exit 3
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$cache"
echo "==> building Jaeger $version from the Go module proxy (once; a few minutes)" >&2
(cd "$here/jaeger" && nice -n 10 go build -o "$bin.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
mv "$bin.tmp.$$" "$bin"
echo "$bin"
