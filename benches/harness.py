"""What the end-to-end benches share: servers run as subprocesses, timed request batches, the Markdown report.

Not a benchmark itself (`run.py` runs only `bench_*.py`). Every server a bench talks to runs in its own
process, started here and stopped (SIGTERM, then SIGKILL) when the bench leaves its `ExitStack`, so a failed
bench leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
PYTHON = sys.executable


# -- subprocess servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server process; `found` is the match of its ready line, `log` the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    found: re.Match[str]
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def run_server(
    name: str,
    args: Sequence[str],
    ready: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout_s: float = 60.0,
) -> Iterator[Server]:
    """Starts `args` and yields once its output (stdout and stderr) has a line matching the regex `ready`.

    The output goes to a temporary file, not a pipe: nothing in the bench process (no reader thread taking
    the GIL) works on a server's log lines while requests are being timed.
    """
    pattern = re.compile(ready)
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-log-") as log_dir:
        log = Path(log_dir) / f"{re.sub(r'[^A-Za-z0-9]+', '-', name)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=dict(os.environ if env is None else env),
                start_new_session=True,  # a Ctrl-C in the bench's terminal does not hit it before we stop it
            )
        try:
            deadline = time.monotonic() + timeout_s
            while not (found := pattern.search(log.read_text(errors="replace"))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = f"exited with {proc.returncode}" if proc.returncode is not None else "timed out"
                    text = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                    raise RuntimeError(f"{name} did not start ({why}; {shlex.join(args)}):\n{text}")
                time.sleep(0.05)
            yield Server(name, proc, found, log)
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its live descendants, from /proc."""
    return process_trees_cpu_s([pid])[0]


def process_trees_cpu_s(pids: Sequence[int]) -> list[float]:
    """`process_tree_cpu_s` of each of `pids`, from one pass over /proc, so the samples are taken together."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        children.setdefault(ppid, []).append(int(entry))
        cpu[int(entry)] = (utime + stime) / tick
    totals = []
    for pid in pids:
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            total += cpu.get(p, 0.0)
            todo.extend(children.get(p, []))
        totals.append(total)
    return totals


def machine_cpu_ticks() -> tuple[int, int]:
    """(idle, total) clock ticks of all the machine's CPUs so far, from /proc/stat's `cpu` line; idle counts
    iowait too. The idle share of an interval is the difference of idle over the difference of total."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user and nice
    busy_and_idle = fields[:8]
    return fields[3] + fields[4], sum(busy_and_idle)


def worker_pids(pid: int) -> list[int]:
    """The on-device worker processes (`tiergate.local.worker`) that sidecar `pid` runs, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid and b"tiergate.local.worker" in cmdline:
            found.append(int(entry))
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http_ok(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Polls `url` with GET until it answers 2xx; raises TimeoutError (or RuntimeError if `proc` died)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).is_success:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


# -- timing ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Latencies (seconds) and the wall time of the batches that produced them."""

    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0  # CPU of this (the client) process during the batches
    server_cpu_s: float = 0.0  # CPU of the metered server process(es) during the batches, when metered
    errors: int = 0
    first_error: str = ""

    def extend(self, other: Samples) -> None:
        self.latencies.extend(other.latencies)
        self.wall_s += other.wall_s
        self.client_cpu_s += other.client_cpu_s
        self.server_cpu_s += other.server_cpu_s
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error

    def pct_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def timed_batch(
    call: Callable[[int], Awaitable[object]],
    requests: int,
    concurrency: int,
    meter: Sequence[int] = (),
    stagger_s: float = 0.0,
) -> Samples:
    """`requests` calls spread over `concurrency` workers, each calling one after another.

    `call` gets the worker's index (0 .. concurrency-1), so a system can give each worker its own client.
    `meter`: pids of server processes whose CPU time (with their children's) the batch records.
    `stagger_s`: worker i starts i * stagger_s late, so that slow calls do not all start (and end) together.
    """
    out = Samples()
    clock = time.perf_counter

    async def worker(index: int, count: int) -> None:
        if stagger_s:
            await asyncio.sleep(index * stagger_s)
        for _ in range(count):
            t0 = clock()
            try:
                await call(index)
            except Exception as exc:  # noqa: BLE001  # counted and reported; a bench with errors fails
                out.errors += 1
                out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"[:500]
                continue
            out.latencies.append(clock() - t0)

    share, extra = divmod(requests, concurrency)
    server0 = sum(process_tree_cpu_s(pid) for pid in meter)
    cpu0 = time.process_time()
    started = clock()
    await asyncio.gather(*(worker(i, share + (i < extra)) for i in range(concurrency)))
    out.wall_s = clock() - started
    out.client_cpu_s = time.process_time() - cpu0
    if meter:
        out.server_cpu_s = sum(process_tree_cpu_s(pid) for pid in meter) - server0
    return out


# -- the report ---------------------------------------------------------------------------------------


def machine() -> list[str]:
    """Markdown bullet lines describing this machine and interpreter."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; RAM {ram}",
        f"- OS: {platform.platform()}; Python {platform.python_version()} ({sys.executable})",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; load average at start {load}",
        f"- tiergate commit: {git_head()}",
    ]


def git_head() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}{' (work tree has uncommitted changes)' if dirty else ''}"


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join([".venv/bin/python", shown, *sys.argv[1:]])


def report_head(title: str, machine_lines: Sequence[str], *more_machine: str) -> list[str]:
    """A result file's opening: its title, the machine (plus `more_machine` lines, e.g. the load at the
    end) and the command that produced it."""
    return [f"# {title}", "", "## Machine", *machine_lines, *more_machine, "", "## Command", "",
            f"    {command_line()}", ""]  # fmt: skip


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def write_result(name: str, lines: list[str]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = "\n".join(lines).rstrip() + "\n"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"(written to {path.relative_to(ROOT)})", file=sys.stderr)
    return path
