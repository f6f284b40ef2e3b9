#!/usr/bin/env bash
# Builds llama-cpp-python's wheel once per machine for a portable CPU baseline, and prints the directory
# that holds it. `make setup` installs from there; `make image` copies it into the image.
#
# Why not pip's own build: llama-cpp-python ships only as an sdist, and its default build compiles llama.cpp
# with -march=native for the build machine's CPU. On Intel CPUs with AMX that build repacks Q4_K weights into
# llama.cpp's AMX buffer type and crashes (SIGSEGV) in the first decode; and a wheel or image built on such a
# machine needs its CPU wherever it runs. This build turns native detection off and names the baseline:
#
#   x86-64: x86-64-v3 (AVX, AVX2, FMA, F16C, BMI2: Intel Haswell 2013+, AMD Zen 1+); no AVX-512, no AMX.
#           The safe CPU repacking (GGML_USE_CPU_REPACK) stays on.
#   other:  the compiler's generic target for the architecture (GGML_NATIVE=OFF).
#
# The directory is keyed by the version and the flags, so a change of either builds anew and pip's own
# cache (keyed by the sdist, not the flags) is never used. Concurrent callers wait for one build (flock).
#
# Usage: tools/llama-cpp-wheel.sh PYTHON VERSION     e.g. tools/llama-cpp-wheel.sh .venv/bin/python 0.3.36
set -euo pipefail
python=$1
version=$2

case "$(uname -m)" in
    x86_64 | amd64)
        flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
        flags+=" -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
        ;;
    *) flags="-DGGML_NATIVE=OFF" ;;
esac
key=$(printf '%s|%s|%s' "$version" "$flags" "$("$python" -c 'import sys; print(sys.implementation.cache_tag)')" \
    | sha256sum | cut -c1-12)
root=${TIERGATE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tiergate/llama-cpp-wheels}
dir=$root/$version-$key
mkdir -p "$root"

exec 9>"$root/.lock"
flock 9
if ! compgen -G "$dir/llama_cpp_python-$version-*.whl" >/dev/null; then
    echo "==> compiling llama.cpp for the portable baseline (once per machine: ~6-10 min on 2 cores)" >&2
    echo "    CMAKE_ARGS=$flags" >&2
    work=$(mktemp -d "$root/build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # Progress on stderr (one line per 10%), the whole log in the build directory's log file.
    if ! CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        "$python" -m pip --disable-pip-version-check wheel -v --no-deps --no-cache-dir --no-binary llama-cpp-python \
        --progress-bar off -w "$work/out" "llama-cpp-python==$version" 2>&1 \
        | awk -v logfile="$work/build.log" '{ print > logfile }
            match($0, /\[ *[0-9]+\/[0-9]+\]/) { split(substr($0, RSTART + 1, RLENGTH - 2), n, "/"); pct = int(100 * n[1] / n[2]) }
            pct >= shown + 10 { shown = pct - pct % 10; printf "    compiling llama.cpp: %d%%\n", shown > "/dev/stderr"; fflush() }'
    then
        echo "==> the llama.cpp build failed; the end of its log:" >&2
        tail -n 60 "$work/build.log" >&2
        exit 1
    fi
    printf '%s\n' "$flags" >"$work/out/CMAKE_ARGS"
    rm -rf "$dir"
    mv "$work/out" "$dir"
fi
echo "$dir"
