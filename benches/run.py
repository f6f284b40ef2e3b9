"""Runs the benchmarks in this folder, one process each, and leaves their Markdown in benches/results/.

python benches/run.py                 # every bench_*.py
python benches/run.py tokens rules    # only bench_tokens.py and bench_rules.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        wanted = {f"bench_{n.removeprefix('bench_').removesuffix('.py')}.py" for n in names}
        scripts = [s for s in scripts if s.name in wanted]
        missing = wanted - {s.name for s in scripts}
        if missing:
            print(f"no such benchmark: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    failed = []
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        if subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
