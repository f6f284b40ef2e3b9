#!/usr/bin/env bash
# Creates benches/.venv-litellm: LiteLLM's proxy, for bench_overhead.py's comparison only.
# LiteLLM is not a tiergate dependency; it lives in its own venv so it cannot leak into the project's.
#
#   bash benches/setup_litellm.sh            # idempotent: does nothing when the venv already works
#
# The version is pinned exactly: results name it, and an unpinned install is not something to run blindly
# (litellm 1.107.0 was a compromised release, since withdrawn from the registry). 1.100.5 because every
# newer release checked (1.104.9, 1.106.10, 1.109.1) requires certifi>=2026.10.19, which the package index
# this project's machines reach does not have; override with LITELLM_VERSION=... where it does.
set -euo pipefail

LITELLM_VERSION="${LITELLM_VERSION:-1.100.5}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-litellm"
# The same interpreter as the project's venv, so both sides of the comparison run on one Python.
PYTHON="${PYTHON:-$(cd "$HERE/.." && .venv/bin/python -c 'import sys; print(sys._base_executable)')}"

if [ -x "$VENV/bin/litellm" ] && "$VENV/bin/python" -c "import litellm.proxy.proxy_server" 2>/dev/null; then
    echo "litellm venv ready: $VENV ($("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))'))"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "litellm[proxy]==$LITELLM_VERSION"
echo "litellm venv ready: $VENV ($LITELLM_VERSION)"
