"""`edgewarden serve`: the API and the NetFlow listeners in one process (the embedded default)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its own shutdown, which would kill the process before
    the collector flushes; the signals are handled in :func:`_run` instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run(host: str, port: int, log_level: str, with_collector: bool) -> None:
    from api.app import create_app
    from collector.netflow.listener import serve as serve_netflow

    server = _Server(uvicorn.Config(create_app(), host=host, port=port, log_level=log_level))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    stop = asyncio.Event()
    collector = asyncio.create_task(serve_netflow(stop)) if with_collector else None
    try:
        await server.serve()  # returns on SIGINT/SIGTERM after draining requests
        if server.started is False:
            raise SystemExit(1)
    finally:
        stop.set()
        if collector is not None:
            await collector


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option(help="API listen address")] = None,
        port: Annotated[int | None, typer.Option(help="API listen port")] = None,
        collector: Annotated[
            bool, typer.Option(help="also run the NetFlow/IPFIX listeners")
        ] = True,
    ) -> None:
        """Run the REST API and the NetFlow listeners; migrations run at start."""
        from core import migrate
        from core.crypto import secret_box
        from core.settings import get_settings

        settings = get_settings()
        secret_box(settings)  # refuse to start without a key: device secrets need it
        migrate.upgrade()
        asyncio.run(
            _run(
                host or settings.api_host,
                port or settings.api_port,
                settings.log_level.lower(),
                collector,
            )
        )
