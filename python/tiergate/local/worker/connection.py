"""The worker's end of its socket pair to the sidecar: framed reads on one thread, locked writes from any."""

from __future__ import annotations

import os
import socket
import threading

from tiergate.local import protocol
from tiergate.local.protocol import Frame


class Connection:
    """The worker's end of the socket pair: blocking reads on one thread, locked writes from any."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()

    def read(self) -> Frame | None:
        """The next frame; None at end of file (the sidecar is gone)."""
        header = self._reader.read(protocol.HEADER.size)
        if len(header) < protocol.HEADER.size:
            return None
        body = self._reader.read(protocol.body_length(header))
        return protocol.decode(body)

    def write(self, frame: Frame) -> None:
        data = protocol.encode(frame)
        try:
            with self._lock:
                self._sock.sendall(data)
        except OSError:
            os._exit(0)  # the sidecar is gone: nobody is left to serve
