"""Hot reload of the config file: on SIGHUP, or when the file changes (its mtime is polled every 2 s).

A reload loads and validates the file, builds a new `Sidecar` from the running one (models whose config is
unchanged keep their provider, connection pool, circuit breaker and stats; tenant limits keep their
counters), and swaps it into the `LiveSidecar` that the servers read for each request. Requests already
running finish on the Sidecar they started with; it closes what the new one does not use once they are done.
An invalid file is rejected, logged and counted (`tiergate_config_reloads_total{result="rejected"}`), and
the running config keeps serving. `listen` addresses cannot change without a restart: they are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tiergate import config as config_mod
from tiergate.config import Config, ConfigError
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0


class LiveSidecar:
    """The Sidecar serving new requests now. Read `current` once per request."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.current = sidecar


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ConfigReloader:
    """Reloads `path` into `live`; `watch()` polls the file, `reload()` is what SIGHUP calls."""

    def __init__(
        self,
        live: LiveSidecar,
        path: str | os.PathLike[str],
        telemetry: Telemetry,
        *,
        interval_s: float = POLL_INTERVAL_S,
        load: Callable[[Path], Config] = config_mod.load,
    ) -> None:
        self._live = live
        self._path = Path(path)
        self._telemetry = telemetry
        self._interval_s = interval_s
        self._load = load
        self._lock = asyncio.Lock()
        self._seen = _signature(self._path)
        self._tasks: set[asyncio.Task[object]] = set()

    async def reload(self) -> bool:
        """Loads the file and swaps it in; False (the old config still serving) if it is invalid."""
        async with self._lock:
            self._seen = _signature(self._path)
            old = self._live.current
            try:
                config = self._load(self._path)
            except ConfigError as exc:
                return self._rejected(str(exc))
            if config.listen != old.config.listen:
                logger.info("config reload: listen addresses stay %s until a restart", old.config.listen)
                config = config.model_copy(update={"listen": old.config.listen})
            try:
                new = await Sidecar.start(config, telemetry=self._telemetry, previous=old)
            except Exception as exc:
                # A model that fails to load, a rule that does not compile...: whatever it is, the running
                # config must keep serving.
                logger.exception("config reload: cannot start the new config")
                return self._rejected(f"{type(exc).__name__}: {exc}")
            self._live.current = new
            self._telemetry.configure(config)
            self._telemetry.config_reloaded("ok")
            kept = sum(1 for name, p in new.providers.items() if old.providers.get(name) is p)
            logger.info(
                "config reloaded from %s (%d models, %d kept as they were; %d routes, %d rules)",
                self._path,
                len(config.models),
                kept,
                len(config.routes),
                len(config.rules),
            )
            self._spawn(old.retire(new))
            return True

    def _rejected(self, why: str) -> bool:
        self._telemetry.config_reloaded("rejected", why)
        logger.error("config reload rejected, the running config keeps serving: %s", why)
        return False

    def request_reload(self) -> None:
        """For a signal handler: reloads in the background."""
        self._spawn(self.reload())

    async def watch(self) -> None:
        """Reloads whenever the file's mtime, size or inode changes. Runs until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            signature = _signature(self._path)
            if signature is not None and signature != self._seen:
                await self.reload()

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Waits for reloads and retirements under way (the old Sidecars close their providers)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
