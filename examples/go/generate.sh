#!/usr/bin/env bash
# Regenerates the Go code in gen/ from proto/tiergate/v1/tiergate.proto (`make examples-proto` runs this).
#
#   examples/go/generate.sh [OUT_DIR]    # default: examples/go itself; the code lands in OUT_DIR/gen/tiergate/v1
#
# protoc is grpcio-tools' (PYTHON, default .venv/bin/python); the plugins are built at the versions go.mod pins
# in its `tool` block, so the output depends on go.mod alone. The proto's go_package names where the contract's
# own Go package would live; the M options place this example's copy inside this module instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
module="github.com/tiergate/tiergate/examples/go"
package="$module/gen/tiergate/v1;tiergatev1"

plugins="$(mktemp -d)"
trap 'rm -rf "$plugins"' EXIT
(cd "$here" && go build -o "$plugins/" google.golang.org/protobuf/cmd/protoc-gen-go \
  google.golang.org/grpc/cmd/protoc-gen-go-grpc)

"$python" -m grpc_tools.protoc -I"$root/proto" \
  --plugin=protoc-gen-go="$plugins/protoc-gen-go" --plugin=protoc-gen-go-grpc="$plugins/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=module="$module" --go_opt=M"tiergate/v1/tiergate.proto=$package" \
  --go-grpc_out="$out" --go-grpc_opt=module="$module" --go-grpc_opt=M"tiergate/v1/tiergate.proto=$package" \
  "$root/proto/tiergate/v1/tiergate.proto"
