"""What a running process holds, read from /proc (Linux): file descriptors by kind, its TCP sockets by what
they connect, threads and resident memory. The soak compares two of these snapshots to find leaks.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# /proc/net/tcp state codes (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@dataclass(frozen=True, slots=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str


@dataclass(slots=True)
class ProcessSnapshot:
    fds: int  # every open file descriptor
    fd_kinds: Counter[str]  # socket, pipe, anon_inode:[eventfd], file...
    tcp: list[TcpSocket] = field(default_factory=list)  # the process's own TCP sockets (IPv4 and IPv6)
    threads: int = 0
    rss_kib: int = 0
    hwm_kib: int = 0  # peak resident set so far

    def tcp_to(self, port: int) -> list[TcpSocket]:
        """Sockets connected to `port` (outbound connections to a server on that port)."""
        return [s for s in self.tcp if s.remote_port == port and s.state != "LISTEN"]

    def tcp_from(self, port: int) -> list[TcpSocket]:
        """Accepted connections on our listening `port`."""
        return [s for s in self.tcp if s.local_port == port and s.state != "LISTEN"]

    def states(self) -> Counter[str]:
        return Counter(s.state for s in self.tcp)


def snapshot(pid: int) -> ProcessSnapshot:
    """Reads the process's fds, TCP sockets, thread count and memory now."""
    proc = Path(f"/proc/{pid}")
    kinds: Counter[str] = Counter()
    socket_inodes: set[str] = set()
    for fd in os.listdir(proc / "fd"):
        try:
            target = os.readlink(proc / "fd" / fd)
        except FileNotFoundError:  # closed while we listed them
            continue
        if target.startswith("socket:["):
            kinds["socket"] += 1
            socket_inodes.add(target[len("socket:[") : -1])
        elif target.startswith("pipe:["):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target] += 1
        else:
            kinds["file"] += 1
    tcp = []
    for table in ("tcp", "tcp6"):
        # The table lists the whole network namespace; the inodes say which sockets are this process's.
        lines = (proc / "net" / table).read_text().splitlines()[1:]
        for line in lines:
            cols = line.split()
            if cols[9] in socket_inodes:
                tcp.append(
                    TcpSocket(
                        local_port=int(cols[1].rsplit(":", 1)[1], 16),
                        remote_port=int(cols[2].rsplit(":", 1)[1], 16),
                        state=TCP_STATES.get(cols[3], cols[3]),
                    )
                )
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
    return ProcessSnapshot(
        fds=sum(kinds.values()),
        fd_kinds=kinds,
        tcp=tcp,
        threads=int(status["Threads"]),
        rss_kib=_kib(status["VmRSS"]),
        hwm_kib=_kib(status["VmHWM"]),
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return _kib(line.split(":", 1)[1])
    return 0


def _kib(value: str) -> int:
    return int(value.split()[0])  # "  81234 kB"
