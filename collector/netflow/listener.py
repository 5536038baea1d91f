"""UDP listeners feeding the pipeline in batches.

By default each socket is read by its own receiver process (``rxproc.py``: ``recvmmsg``
into preallocated buffers, whole batches over a pipe), so the GIL of this process — held
for long stretches by the database writer and the decoder — never keeps the socket from
being read; the child holds what this process cannot take yet (bounded, drops counted) and
its counters arrive with the batches. With ``processes=False`` (or where a child cannot be
started) a receiver thread per socket does the same in this process. A pipe reader thread
(or the receiver thread) hands whole batches to the event loop, which decodes them with
:meth:`Pipeline.process`; the queue between them is bounded (``max_queue`` datagrams): the
pipe reader waits for room (back-pressure into the child's backlog), a receiver thread drops
whole batches and counts them. Aggregates are written to the database in a worker thread
every ``flush_interval`` seconds so decoding never waits for SQL. The socket gets a large
receive buffer (SO_RCVBUFFORCE as root) to ride out bursts such as softflowd's end-of-capture
flush. Stopping drains: the receivers read their sockets empty, everything queued is decoded
and written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from collector.netflow.aggregate import Drained
from collector.netflow.pipeline import Pipeline
from collector.netflow.recv import batch_receiver
from collector.netflow.rxproc import ReceiverProcess

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


class NetflowListener:
    """One receiver thread per socket, decoding on the event loop in whole batches."""

    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        ports: Sequence[int],
        *,
        batch_size: int = 1024,
        flush_interval: float = 5.0,
        max_queue: int = 50_000,
        rcvbuf: int = 64 << 20,
        force_rcvbuf: bool = True,
        switch_interval: float | None = 0.0005,
        recvmmsg: bool = True,
        processes: bool = True,
        backlog: int = 64 << 20,
    ) -> None:
        self.processes = processes  # a receiver process per socket (else a thread)
        self.backlog = backlog  # bytes a receiver process holds while we are busy
        self.start_timeout = 30.0  # seconds start() waits for the receiver processes
        self.yield_above = 4 * batch_size  # queued datagrams that hold the writer back
        self.yield_max = 0.5  # seconds the writer waits before each chunk, at most
        self.switch_interval = switch_interval
        self.recvmmsg = recvmmsg  # False: one recvfrom per datagram (also where no recvmmsg)
        self.rcvbuf = rcvbuf
        self.force_rcvbuf = force_rcvbuf
        self.pipeline = pipeline
        self.host = host
        self.ports = list(ports)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        # batches handed over by the receiver threads (deque append/popleft are thread-safe)
        self._batches: deque[list[tuple[bytes, str]]] = deque()
        self._queued = 0  # datagrams in _batches; changed under _lock
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when drain() made room
        self._abort = False  # stop waiting for room (shutdown overran its deadline)
        self._children: dict[int, ReceiverProcess] = {}  # socket index -> its process
        self._write_lock = threading.Lock()
        self.bound: list[int] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def receivers(self) -> list[ReceiverProcess]:
        """The receiver processes now running (none with ``processes=False``)."""
        return list(self._children.values())

    @property
    def queued(self) -> int:
        """Datagrams received but not yet decoded."""
        return self._queued

    def enqueue(self, data: bytes, addr: str) -> None:
        """Queue one datagram (for callers without a socket, e.g. tests or a replay)."""
        self._hand_over([(data, addr)])

    def _hand_over(self, batch: list[tuple[bytes, str]]) -> None:
        with self._lock:
            if self._queued + len(batch) > self.max_queue:
                self.pipeline.stats.queue_dropped += len(batch)
                return
            self._queued += len(batch)
        self._batches.append(batch)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._wake.set)

    def _hand_over_wait(self, batch: list[tuple[bytes, str]]) -> None:
        """Queue a batch from a receiver process, waiting for room (the pipe and then the
        child's bounded backlog hold the rest meanwhile)."""
        with self._room:
            while self._queued and self._queued + len(batch) > self.max_queue:
                if self._abort:
                    self.pipeline.stats.queue_dropped += len(batch)
                    return
                self._room.wait(0.1)
            self._queued += len(batch)
        self._batches.append(batch)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._wake.set)

    def _child_stats(self, index: int, counters: dict[str, int]) -> None:
        self.pipeline.stats.receivers[f"{self.host}:{self.bound[index]}"] = counters

    def _spawn(self, index: int) -> None:
        sock = self._sockets[index]
        self._children[index] = ReceiverProcess(
            sock,
            self._hand_over_wait,
            lambda counters: self._child_stats(index, counters),
            batch=self.batch_size,
            backlog=self.backlog,
        )

    def _supervise(self) -> None:
        """Restart a receiver process that died (the socket stays bound in this process)."""
        for index, child in list(self._children.items()):
            if child.proc.poll() is not None and not self._stopping.is_set():
                log.error(
                    "NetFlow receiver process %d exited with %s; restarting it",
                    child.pid,
                    child.proc.returncode,
                )
                child.join(timeout=1)
                self._spawn(index)

    def _receive(self, sock: socket.socket) -> None:
        rx = batch_receiver(sock) if self.recvmmsg else None
        if rx is None:
            self._receive_each(sock)
            return
        size = self.batch_size
        stopping = self._stopping
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        batch: list[tuple[bytes, str]] = []
        while not stopping.is_set():
            try:
                got = rx.receive()
            except OSError as exc:
                if stopping.is_set():
                    break
                log.warning("NetFlow socket error: %s", exc)
                stopping.wait(0.1)  # no busy loop on a persistent error
                continue
            if not got:
                if batch:
                    self._hand_over(batch)
                    batch = []
                poller.poll(100)
                continue
            batch += got
            if len(batch) >= size:
                self._hand_over(batch)
                batch = []
        if batch:
            self._hand_over(batch)

    def _receive_each(self, sock: socket.socket) -> None:
        """Tight recvfrom loop (the GIL is released while the kernel copies): a batch is
        handed over when it is full or the socket is empty, so Python work per datagram is
        one call and one append."""
        recv = sock.recvfrom
        size = self.batch_size
        stopping = self._stopping
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        batch: list[tuple[bytes, str]] = []
        append = batch.append
        while not stopping.is_set():
            try:
                data, addr = recv(65535)
            except BlockingIOError:
                if batch:
                    self._hand_over(batch)
                    batch = []
                    append = batch.append
                poller.poll(100)
                continue
            except OSError as exc:
                if stopping.is_set():
                    break
                log.warning("NetFlow socket error: %s", exc)
                stopping.wait(0.1)  # no busy loop on a persistent error
                continue
            append((data, addr[0]))
            if len(batch) >= size:
                self._hand_over(batch)
                batch = []
                append = batch.append
        if batch:
            self._hand_over(batch)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        if self.switch_interval is not None:
            # process-wide: a thread that gives the GIL up for a syscall waits up to one
            # switch interval to get it back while another thread computes (the database
            # writer, the decoder); at the default 5 ms the receiver starved and the
            # socket overflowed during database writes
            sys.setswitchinterval(min(sys.getswitchinterval(), self.switch_interval))
        self._abort = False
        for port in self.ports:
            sock = open_socket(self.host, port, self.rcvbuf, self.force_rcvbuf)
            self._sockets.append(sock)
            self.bound.append(sock.getsockname()[1])
        for index, sock in enumerate(self._sockets):
            if self.processes:
                try:
                    self._spawn(index)
                    continue
                except OSError as exc:
                    log.warning("NetFlow receiver process failed (%s); using a thread", exc)
            t = threading.Thread(
                target=self._receive,
                args=(sock,),
                name=f"netflow-rx-{sock.getsockname()[1]}",
                daemon=True,
            )
            self._threads.append(t)
            t.start()
        # the sockets are bound already (the kernel queues meanwhile), but a flood could
        # overflow their buffers while a child is still importing: wait until each is reading
        children = list(self._children.values())
        await asyncio.to_thread(lambda: [c.ready.wait(self.start_timeout) for c in children])
        log.info(
            "NetFlow/IPFIX listening on %s ports %s (receiver processes: %s)",
            self.host,
            self.bound,
            [c.pid for c in self._children.values()] or "none",
        )

    async def _stop_children(self, timeout: float = 30.0) -> None:
        """Ask every receiver process to drain and exit, decoding what they hand over
        meanwhile (their reader threads wait for room in the queue)."""
        self._stopping.set()
        for child in self._children.values():
            child.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(c.reading for c in self._children.values()):
            if loop.time() > deadline:
                log.error("NetFlow receiver processes did not finish within %.0f s", timeout)
                self._abort = True
                break
            self.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.02)
            self._wake.clear()

    def _stop_receivers(self) -> None:
        self._stopping.set()
        for child in self._children.values():
            child.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        for sock in self._sockets:
            sock.close()
        self._children.clear()
        self._threads.clear()
        self._sockets.clear()

    def drain(self) -> int:
        """Decode everything queued now, batch by batch; returns datagrams processed."""
        done = 0
        batches = self._batches
        while batches:
            # the receivers hand over whatever the socket held, often a few datagrams;
            # decoding has a fixed cost per call, so small hand-overs are joined first
            batch = batches.popleft()
            while batches and len(batch) < self.batch_size:
                batch = batch + batches.popleft()
            with self._room:
                self._queued -= len(batch)
                self._room.notify_all()
            self.pipeline.process(batch)
            done += len(batch)
        return done

    async def flush(self) -> int:
        self.drain()
        aggregates, alerts = self.pipeline.take()
        self.pipeline.save_templates()
        return await asyncio.to_thread(self._write, aggregates, alerts)

    def _write(self, aggregates: Drained, alerts: list[str], wait: bool = True) -> int:
        """Store (in the writer thread), then refresh the classification tables when due;
        ``wait``: let decoding catch up between chunks (not from the loop thread itself)."""
        with self._write_lock:  # one writer at a time (SQLite would report "locked")
            pause = self._yield_to_decoder if wait else None
            written = self.pipeline.write(aggregates, alerts, pause)
            self.pipeline.reload_if_due()
            return written

    def _yield_to_decoder(self) -> None:
        """Before each chunk of a database write: while decoding is behind (more than
        ``yield_above`` datagrams queued), wait up to ``yield_max`` seconds. The writer and
        the decoder share this process's GIL; aggregates only wait in memory (bounded keys),
        but datagrams that wait too long are dropped, so decoding goes first during a flood."""
        deadline = time.monotonic() + self.yield_max
        while (
            self._queued > self.yield_above
            and not self._stopping.is_set()
            and time.monotonic() < deadline
        ):
            time.sleep(0.002)

    def flush_now(self) -> int:
        """Synchronous flush from the loop thread; waits for a write already running."""
        self.drain()
        aggregates, alerts = self.pipeline.take()
        self.pipeline.save_templates()
        return self._write(aggregates, alerts, wait=False)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; flushes once more on the way out."""
        if not self._sockets:
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
                self._supervise()
                # the write runs beside receiving (never awaited here): a slow database
                # must not stop the socket from being drained; one write at a time
                if loop.time() >= next_flush and (writer is None or writer.done()):
                    next_flush = loop.time() + self.flush_interval
                    writer = asyncio.create_task(self._flush_logged())
        finally:
            await self._stop_children()
            await asyncio.to_thread(self._stop_receivers)
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
        reload_interval=settings.netflow_reload_s,
    )
    ports = [settings.netflow_port, settings.ipfix_port]
    listener = NetflowListener(pipeline, settings.netflow_host, ports)
    await listener.run(stop)
