"""Completes a directory of wheels for the image's Python, whose patch version differs from the host's.

pip evaluates environment markers for the interpreter it runs on, so `pip wheel` on the host (CPython 3.11.7)
leaves out what Debian's 3.11.2 needs, e.g. redis's `async-timeout; python_full_version < "3.11.3"`. This
reads the requirements of every wheel in the directory, evaluates their markers for the image's Python, and
downloads (binary wheels only, pinned by the constraints file) each one that no wheel there provides, until
none is missing. The image's offline `pip install --no-index` and `pip check` then verify the set.

Usage: python complete_wheels.py WHEEL_DIR CONSTRAINTS PYTHON_VERSION
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def missing(wheel_dir: Path, python_version: str) -> list[Requirement]:
    """The requirements active on `python_version` that no wheel in `wheel_dir` provides."""
    env = {
        **default_environment(),
        "python_full_version": python_version,
        "python_version": ".".join(python_version.split(".")[:2]),
    }
    wheels = {parse_wheel_filename(w.name)[0]: _requires(w) for w in wheel_dir.glob("*.whl")}
    extras: dict[str, set[str]] = {name: {""} for name in wheels}
    absent: dict[str, Requirement] = {}
    changed = True
    while changed:  # an active requirement may ask for extras, which activate more requirements
        changed = False
        for name, requires in wheels.items():
            for req in requires:
                if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in extras[name]):
                    continue
                dep = canonicalize_name(req.name)
                if dep not in wheels:
                    absent.setdefault(dep, req)
                    continue
                if not req.extras <= extras[dep]:
                    extras[dep] |= req.extras
                    changed = True
    return list(absent.values())


def main(wheel_dir: Path, constraints: Path, python_version: str) -> None:
    for _ in range(10):
        reqs = missing(wheel_dir, python_version)
        if not reqs:
            return
        specs = [f"{r.name}{r.specifier}" for r in reqs]
        print(f"adding for Python {python_version}: {', '.join(specs)}", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-c",
                str(constraints),
                "-d",
                str(wheel_dir),
                *specs,
            ],
            check=True,
        )
    sys.exit(f"{wheel_dir}: still incomplete after 10 rounds")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
