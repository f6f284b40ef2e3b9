"""Runs a real HTTP proxy (Debian's `tinyproxy`) on a free loopback port, logging each request it relays.

tinyproxy relays plain-http requests in absolute form (`POST http://host/... HTTP/1.1`) and tunnels https
ones with `CONNECT host:port`; its log (`requests`) shows which it did. With `user`/`password` it requires
Basic proxy authentication and answers 407 without it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def tinyproxy_path() -> str | None:
    return shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The request lines relayed so far, e.g. `CONNECT 127.0.0.1:4443 HTTP/1.1`."""
        text = self.log.read_text(errors="replace")
        return re.findall(r"Request \(file descriptor \d+\): (.+)", text)


@contextmanager
def run_tinyproxy(*, user: str = "", password: str = "", timeout_s: float = 10.0) -> Iterator[Proxy]:
    """Starts tinyproxy in the foreground and yields once it accepts connections; stops it afterwards."""
    exe = tinyproxy_path()
    if exe is None:
        raise RuntimeError("tinyproxy is not installed (apt-get install tinyproxy)")
    with tempfile.TemporaryDirectory(prefix="tiergate-proxy-") as workdir:
        port = _free_port()
        conf = Path(workdir) / "tinyproxy.conf"
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 64", "Allow 127.0.0.1",
                 "LogLevel Connect"]  # fmt: skip
        if user:
            lines.append(f"BasicAuth {user} {password}")
        conf.write_text("\n".join(lines) + "\n")
        log = Path(workdir) / "tinyproxy.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"tinyproxy did not start:\n{log.read_text()}") from None
                    time.sleep(0.05)
            yield Proxy(f"http://127.0.0.1:{port}", log)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
