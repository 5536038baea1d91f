"""What ``edgewarden serve`` runs, and how it stops.

Roles: ``api`` (uvicorn, plus the webhook dispatcher), ``collector`` (the NetFlow/IPFIX
listeners), ``worker`` (the enforcement worker), ``scheduler`` (scheduled jobs). One process
runs them all by default (the SQLite embedded setup); ``--only`` picks some, so that several
processes share a PostgreSQL database.

SIGTERM/SIGINT: every role stops taking new work at once; then uvicorn finishes in-flight
requests, the collector flushes its aggregates, the worker finishes an action that already
changed a device or hands it back untouched, and the scheduler lets running jobs end. Exit 0.
A role that dies on its own (a port in use, a crash) stops the others and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from core.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("api", "collector", "worker", "scheduler")


def parse_roles(values: Iterable[str] | None, settings: Settings) -> list[str]:
    """``--only`` values (repeatable, or comma lists) to roles in canonical order; none given:
    every role (the scheduler only if ``scheduler_enabled``)."""
    given = [p.strip().lower() for v in values or () for p in v.split(",") if p.strip()]
    unknown = sorted(set(given) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    if not given:
        return [r for r in ROLES if r != "scheduler" or settings.scheduler_enabled]
    return [r for r in ROLES if r in given]


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its own shutdown, which would kill the process before
    the other roles finish; the signals are handled by :class:`Service` instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Service:
    """The roles of one process, started together and stopped together."""

    roles: list[str]
    settings: Settings
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    thread_stop: threading.Event = field(default_factory=threading.Event)
    server: _Server | None = None

    def request_stop(self, why: str = "signal") -> None:
        if not self.stop.is_set():
            log.info("stopping: no new work is taken", extra={"reason": why})
        self.stop.set()
        self.thread_stop.set()
        if self.server is not None:
            self.server.should_exit = True

    async def run(self) -> int:
        """Run until stopped; 0 after a requested stop, 1 if a role failed."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        starters: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "api": self._api,
            "collector": self._collector,
            "worker": self._worker,
            "scheduler": self._scheduler,
        }
        tasks: dict[asyncio.Task[None], str] = {
            asyncio.create_task(starters[r](), name=r): r for r in self.roles
        }
        log.info("edgewarden serve started", extra={"roles": self.roles})
        failed = False
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                role = tasks[task]
                exc = task.exception()
                if exc is not None:
                    log.error("role %s failed: %s", role, exc, exc_info=exc)
                    failed = True
                elif not self.stop.is_set():
                    log.error("role %s ended before a stop was requested", role)
                    failed = True
            if failed or not self.stop.is_set():
                self.request_stop("a role ended")
        log.info("edgewarden serve stopped", extra={"roles": self.roles, "failed": failed})
        return 1 if failed else 0

    # --- roles ----------------------------------------------------------------------------

    async def _api(self) -> None:
        from api.app import create_app

        config = uvicorn.Config(
            create_app(self.database_url),
            host=self.host,
            port=self.port,
            log_config=None,  # api.logs routes uvicorn's loggers (JSON access log)
            log_level=self.settings.log_level.lower(),
            timeout_graceful_shutdown=15,
        )
        self.server = _Server(config)
        if self.stop.is_set():
            return
        dispatcher = asyncio.create_task(self._dispatcher(), name="webhook-dispatcher")
        try:
            # uvicorn calls sys.exit on a bind failure; the other roles must still stop
            with contextlib.suppress(SystemExit):
                await self.server.serve()  # returns after draining in-flight requests
            if not self.server.started:
                raise RuntimeError(f"the API could not start on {self.host}:{self.port}")
        finally:
            if not self.stop.is_set():
                self.request_stop("api ended")
            await dispatcher

    async def _dispatcher(self) -> None:
        """The webhook dispatcher runs beside the API; its failure is logged, not fatal (the
        deliveries stay pending in the database for the next start)."""
        try:
            from api.webhooks.dispatcher import run_dispatcher  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError as exc:
            log.warning("webhook dispatcher not available (%s): webhooks are not delivered", exc)
            return
        try:
            await run_dispatcher(self.database_url, self.stop, self.settings)
        except Exception:
            log.exception("webhook dispatcher failed; deliveries stay queued")

    async def _collector(self) -> None:
        from collector.netflow.listener import serve as serve_netflow

        await serve_netflow(self.stop, database_url=self.database_url)

    async def _worker(self) -> None:
        from enforcer.worker import Worker

        worker = Worker(self.database_url, settings=self.settings)
        await asyncio.to_thread(worker.run, self.thread_stop)

    async def _scheduler(self) -> None:
        from api.scheduler import Scheduler

        scheduler = Scheduler(self.database_url, settings=self.settings)
        scheduler.start()
        try:
            await self.stop.wait()
        finally:
            await asyncio.to_thread(scheduler.shutdown, True)


async def run_service(
    roles: list[str], settings: Settings, database_url: str, host: str, port: int
) -> int:
    service = Service(roles, settings, database_url, host, port)
    return await service.run()
