# Sourced by build-image.sh, smoke-test.sh and benches/bench_image.py: where the image build keeps its state,
# and the image names. Everything lives under one directory, so `rm -rf` of it starts from scratch:
#   $IMAGE_CACHE/bookworm-rootfs.tar   the debootstrapped Debian base (reused while it exists)
#   $IMAGE_CACHE/storage-DRIVER        buildah's image store (no daemon)
# Override the directory with TIERGATE_IMAGE_CACHE.

IMAGE_CACHE="${TIERGATE_IMAGE_CACHE:-$HOME/.cache/tiergate-image}"
# The Debian mirror this machine's apt uses (debootstrap and the image's apt-get must reach it): the first
# active, non-security Debian source, or DEBIAN_MIRROR.
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(grep -hsE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list | grep -v -- -security |
    grep -oE 'https?://[^[:space:]]+/debian/?' | head -n 1 || true)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_MIRROR="${DEBIAN_MIRROR%/}"
DEBIAN_SUITE=bookworm
# The image's Python: Debian bookworm's python3.11.
IMAGE_PYTHON=3.11.2
IMAGE_PYTHON_MINOR=3.11

# The store's driver: overlay when the kernel lets us mount one here (layers share unchanged files), else
# vfs, which works wherever chroot does but copies every layer in full (the build takes 2-3 times as long,
# the store twice the space). TIERGATE_IMAGE_STORAGE_DRIVER=vfs forces it. Each driver has its own store.
if [ -z "${TIERGATE_IMAGE_STORAGE_DRIVER:-}" ]; then
    TIERGATE_IMAGE_STORAGE_DRIVER=vfs
    if mkdir -p "$IMAGE_CACHE" 2>/dev/null && probe=$(mktemp -d "$IMAGE_CACHE/.overlay-probe.XXXXXX"); then
        mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
        if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
            "$probe/merged" 2>/dev/null; then
            umount "$probe/merged"
            TIERGATE_IMAGE_STORAGE_DRIVER=overlay
        fi
        rm -rf "$probe"
    fi
fi
BUILDAH=(buildah --root "$IMAGE_CACHE/storage-$TIERGATE_IMAGE_STORAGE_DRIVER"
    --runroot "$IMAGE_CACHE/run-$TIERGATE_IMAGE_STORAGE_DRIVER" --storage-driver "$TIERGATE_IMAGE_STORAGE_DRIVER")

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
BASE_IMAGE="localhost/tiergate-base:$DEBIAN_SUITE"
IMAGE="localhost/tiergate:$VERSION"
IMAGE_WITH_MODEL="localhost/tiergate:$VERSION-with-model"
ARCHIVE="dist/tiergate-$VERSION.oci.tar"
ARCHIVE_WITH_MODEL="dist/tiergate-$VERSION-with-model.oci.tar"
# The build context the Containerfile expects: wheels/, embedding-model/, with-model/, entrypoint.sh, ...
CONTEXT=dist/image-context
