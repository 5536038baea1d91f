"""asyncio UDP listeners feeding the pipeline in batches.

Datagrams are queued (bounded; overflow counted) and handed to :meth:`Pipeline.process` in
batches of up to ``batch_size`` on the event loop; aggregates are written to the database in
a worker thread every ``flush_interval`` seconds so receiving never waits for SQL. The socket
gets a large receive buffer (SO_RCVBUFFORCE as root) to ride out bursts such as softflowd's
end-of-capture flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from collector.netflow.pipeline import Pipeline

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def open_socket(host: str, port: int, rcvbuf: int = 64 << 20, force: bool = True) -> socket.socket:
    """A bound non-blocking UDP socket; ``force`` lets root exceed net.core.rmem_max."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if not force:
            raise OSError
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:  # not root (or not asked): capped by net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    sock.bind((host, port))
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: NetflowListener) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.service.enqueue(data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        log.warning("NetFlow socket error: %s", exc)


class NetflowListener:
    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        ports: Sequence[int],
        *,
        batch_size: int = 1024,
        flush_interval: float = 5.0,
        max_queue: int = 200_000,
        rcvbuf: int = 64 << 20,
        force_rcvbuf: bool = True,
    ) -> None:
        self.rcvbuf = rcvbuf
        self.force_rcvbuf = force_rcvbuf
        self.pipeline = pipeline
        self.host = host
        self.ports = list(ports)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.queue: list[tuple[bytes, str]] = []
        self.bound: list[int] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._wake = asyncio.Event()

    def enqueue(self, data: bytes, addr: str) -> None:
        if len(self.queue) >= self.max_queue:
            self.pipeline.stats.queue_dropped += 1
            return
        self.queue.append((data, addr))
        if len(self.queue) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for port in self.ports:
            sock = open_socket(self.host, port, self.rcvbuf, self.force_rcvbuf)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
            self._transports.append(transport)
            self.bound.append(sock.getsockname()[1])
        log.info("NetFlow/IPFIX listening on %s ports %s", self.host, self.bound)

    def drain(self) -> int:
        """Process everything queued now, in batches; returns datagrams processed."""
        done = 0
        while self.queue:
            chunk = self.queue[: self.batch_size]
            del self.queue[: self.batch_size]
            self.pipeline.process(chunk)
            done += len(chunk)
        return done

    async def flush(self) -> int:
        self.drain()
        aggregates, alerts = self.pipeline.take()
        self.pipeline.save_templates()
        if not aggregates and not alerts:
            return 0
        return await asyncio.to_thread(self.pipeline.write, aggregates, alerts)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; flushes once more on the way out."""
        if not self._transports:
            await self.start()
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self.flush_interval
        writer: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.05)
                self._wake.clear()
                self.drain()
                # the write runs beside receiving (never awaited here): a slow database
                # must not stop the socket from being drained; one write at a time
                if loop.time() >= next_flush and (writer is None or writer.done()):
                    next_flush = loop.time() + self.flush_interval
                    writer = asyncio.create_task(self._flush_logged())
        finally:
            for t in self._transports:
                t.close()
            self._transports.clear()
            if writer is not None:
                with contextlib.suppress(Exception):
                    await writer
            with contextlib.suppress(Exception):
                await self.flush()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("NetFlow flush failed; aggregates of this round lost")


async def serve(stop: asyncio.Event, *, database_url: str | None = None) -> None:
    """Entry point for ``edgewarden serve``: both listeners from settings until ``stop``."""
    from core.db import session_factory
    from core.settings import get_settings

    settings = get_settings()
    pipeline = Pipeline(
        session_factory(database_url),
        settings.default_policy,
        template_path=Path(settings.documents_dir).parent / "netflow-templates.json",
    )
    ports = [settings.netflow_port, settings.ipfix_port]
    listener = NetflowListener(pipeline, settings.netflow_host, ports)
    await listener.run(stop)
