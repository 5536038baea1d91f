"""The UDP receiver in its own process, handing whole batches to the collector over a pipe.

Why: in one process the database writer (SQLite upsert + rules engine, Python) holds the GIL
for long stretches and the receiver thread waited for it while the kernel's socket buffer
overflowed (end to end lossless at 1.5M records/s, 2.5M with writes held off). Here a child
process does nothing but ``recvmmsg`` into preallocated buffers and writes one frame per
batch (a few hundred datagrams: lengths, source ids, payloads joined) to a pipe; the kernel
schedules it against the collector, no GIL is shared. What the collector cannot take yet
waits in the child, bounded by ``backlog`` bytes; beyond that whole batches are dropped and
counted. The child's counters travel the same pipe (a stats frame every second and at the
end), so the main process's /metrics shows them.

The parent binds the socket (so a busy port fails at once, in the parent) and passes it,
the pipe's write end and a control pipe's read end to ``python -m collector.netflow.rxproc``.
Closing the control pipe (or the parent dying) stops the child: it reads the socket until
it is empty, writes everything it holds, a last stats frame, and exits; the parent reads to
end of file. The child ignores SIGINT/SIGTERM: a signal to the whole process group (Ctrl-C,
systemd) must not kill it before the parent has asked for the final drain.

Wire format (native byte order, the same machine): a 12-byte header ``kind, a, b``; kind 1
data: a = datagrams, b = payload bytes, then a x u32 lengths, a x u16 source ids, the
payloads; kind 2 source: a = id, b = text length, then the address text; kind 3 stats: b =
JSON length, then JSON; kind 4 reset: forget all source ids (the table is full).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import IO

import numpy as np

log = logging.getLogger(__name__)

HEADER = struct.Struct("=B3xII")
DATA, SOURCE, STATS, RESET = 1, 2, 3, 4
F_SETPIPE_SZ = 1031
MAX_SOURCES = 65535
_ROOT = Path(__file__).resolve().parents[2]

Batch = list[tuple[bytes, str]]


# -- child ------------------------------------------------------------------------------------
class _Packer:
    """Builds frames; keeps the source-id table (bounded: reset when full)."""

    def __init__(self) -> None:
        self.ids: dict[Hashable, int] = {}
        self.lens: list[int] = []
        self.srcs: list[int] = []
        self.parts: list[bytes] = []
        self.control: list[bytes] = []  # source / reset frames that must precede the data

    def add(
        self,
        lens: list[int],
        keys: list[Hashable],
        payload: bytes,
        text: Callable[[Hashable], str],
    ) -> None:
        ids = self.ids
        srcs = self.srcs
        for key in keys:
            sid = ids.get(key)
            if sid is None:
                if len(ids) >= MAX_SOURCES:
                    self.flush_into(self.control)  # data with old ids goes out first
                    self.control.append(HEADER.pack(RESET, 0, 0))
                    ids.clear()
                sid = ids[key] = len(ids)
                raw = text(key).encode()
                self.control.append(HEADER.pack(SOURCE, sid, len(raw)) + raw)
            srcs.append(sid)
        self.lens += lens
        self.parts.append(payload)

    @property
    def count(self) -> int:
        return len(self.lens)

    def flush_into(self, out: list[bytes]) -> None:
        if not self.lens:
            return
        payload = b"".join(self.parts)
        out.append(
            HEADER.pack(DATA, len(self.lens), len(payload))
            + np.asarray(self.lens, np.uint32).tobytes()
            + np.asarray(self.srcs, np.uint16).tobytes()
            + payload
        )
        self.lens, self.srcs, self.parts = [], [], []

    def take(self) -> list[bytes]:
        """The frames to send now, in order (sources before the data that uses them)."""
        out, self.control = self.control, []
        self.flush_into(out)
        return out


def _kernel_drops(inode: int) -> int:
    """The kernel's drop counter of the UDP socket with this inode (/proc/net/udp, udp6)."""
    want = str(inode)
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(name) as fh:
            for line in fh.readlines()[1:]:
                cols = line.split()
                if len(cols) > 12 and cols[9] == want:
                    return int(cols[-1])
    return 0


class _Child:
    def __init__(self, sock: socket.socket, out: int, ctrl: int, batch: int, backlog: int):
        from collector.netflow.recv import address, batch_receiver

        self.sock = sock
        self.out = out
        self.ctrl = ctrl
        self.batch = batch
        self.backlog = backlog
        self.rx = batch_receiver(sock)
        self.address = address
        self.packer = _Packer()
        self.pending: deque[memoryview] = deque()
        self.pending_bytes = 0
        self.inode = os.fstat(sock.fileno()).st_ino
        self.stats = {"datagrams": 0, "bytes": 0, "dropped": 0, "truncated": 0, "kernel": 0}
        self.stats["pid"] = os.getpid()

    def _receive_some(self) -> int:
        """Reads until the socket is empty or a batch is full; returns datagrams read."""
        packer = self.packer
        got = 0
        while packer.count < self.batch:
            if self.rx is not None:
                lens, names, views = self.rx.receive_views()
                if not lens:
                    break
                packer.add(lens, list(names), b"".join(views), self._sockaddr_text)
            else:  # no recvmmsg in libc: one recvfrom per datagram
                try:
                    data, addr = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                lens = [len(data)]
                packer.add(lens, [addr[0]], data, str)
            got += len(lens)
            self.stats["datagrams"] += len(lens)
            self.stats["bytes"] += sum(lens)
        return got

    def _sockaddr_text(self, key: Hashable) -> str:
        assert isinstance(key, bytes)
        return self.address(key)

    def _queue(self, frames: list[bytes], droppable: bool) -> None:
        for frame in frames:
            if droppable and frame[0] == DATA and self.pending_bytes + len(frame) > self.backlog:
                self.stats["dropped"] += HEADER.unpack_from(frame)[1]
                continue
            self.pending.append(memoryview(frame))
            self.pending_bytes += len(frame)

    def _write(self) -> None:
        """Writes what the pipe takes now (the write end is non-blocking)."""
        pending = self.pending
        while pending:
            head = pending[0]
            try:
                n = os.write(self.out, head)
            except BlockingIOError:
                return
            self.pending_bytes -= n
            if n == len(head):
                pending.popleft()
            else:
                pending[0] = head[n:]

    def _stats_frame(self) -> bytes:
        if self.rx is not None:
            self.stats["truncated"] = self.rx.truncated
        self.stats["kernel"] = _kernel_drops(self.inode)
        raw = json.dumps(self.stats).encode()
        return HEADER.pack(STATS, 0, len(raw)) + raw

    def run(self, stats_interval: float, drain_limit: float) -> None:
        with contextlib.suppress(BrokenPipeError):  # the parent is gone: nobody to tell
            self._run(stats_interval, drain_limit)

    def _run(self, stats_interval: float, drain_limit: float) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self.ctrl, select.POLLIN)
        out_registered = False
        self._queue([self._stats_frame()], droppable=False)  # "ready" for the parent
        self._write()
        next_stats = time.monotonic() + stats_interval
        while True:
            got = self._receive_some()
            if self.packer.count >= self.batch or (not got and self.packer.count):
                self._queue(self.packer.take(), droppable=True)
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + stats_interval
                self._queue([self._stats_frame()], droppable=False)
            if self.pending:
                self._write()
            if got:
                continue
            want_out = bool(self.pending)
            if want_out != out_registered:
                if want_out:
                    poller.register(self.out, select.POLLOUT)
                else:
                    poller.unregister(self.out)
                out_registered = want_out
            timeout = max(1, int((next_stats - time.monotonic()) * 1000))
            events = poller.poll(timeout)
            if any(fd == self.ctrl for fd, _ in events):
                break  # the parent closed the control pipe (or died): stop
        self._final(drain_limit)

    def _final(self, drain_limit: float) -> None:
        """Everything the kernel holds for the socket, everything pending, last stats."""
        deadline = time.monotonic() + drain_limit
        while time.monotonic() < deadline:
            if not self._receive_some():
                break
            if self.packer.count >= self.batch:
                self._queue(self.packer.take(), droppable=False)
        self._queue(self.packer.take(), droppable=False)
        self._queue([self._stats_frame()], droppable=False)
        os.set_blocking(self.out, True)
        with contextlib.suppress(BrokenPipeError):  # the parent is gone: nobody to tell
            for frame in self.pending:
                _write_all(self.out, frame)
        os.close(self.out)


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]


def _set_pipe_size(fd: int, size: int) -> None:
    """As large a pipe as allowed (root may exceed /proc/sys/fs/pipe-max-size)."""
    for want in (size, 1 << 20):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, want)
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="NetFlow receiver (started by the listener)")
    parser.add_argument("--sock", type=int, required=True)
    parser.add_argument("--out", type=int, required=True)
    parser.add_argument("--ctrl", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--backlog", type=int, default=64 << 20)
    parser.add_argument("--stats-interval", type=float, default=1.0)
    parser.add_argument("--drain-limit", type=float, default=5.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.sock)
    sock.setblocking(False)
    os.set_blocking(args.out, False)
    child = _Child(sock, args.out, args.ctrl, args.batch, args.backlog)
    child.run(args.stats_interval, args.drain_limit)


# -- parent -----------------------------------------------------------------------------------
class ReceiverProcess:
    """The parent's handle on one receiver child: spawns it for a bound socket and reads its
    frames in a thread, calling ``deliver(batch)`` per data frame (which may block: the pipe
    then fills and the child holds the rest) and ``on_stats(counters)`` per stats frame."""

    def __init__(
        self,
        sock: socket.socket,
        deliver: Callable[[Batch], None],
        on_stats: Callable[[dict[str, int]], None],
        *,
        batch: int = 1024,
        backlog: int = 64 << 20,
        pipe_size: int = 16 << 20,
        stats_interval: float = 1.0,
    ) -> None:
        self.deliver = deliver
        self.on_stats = on_stats
        rfd, wfd = os.pipe()
        _set_pipe_size(wfd, pipe_size)
        cr, cw = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "collector.netflow.rxproc"),
                    *("--sock", str(sock.fileno()), "--out", str(wfd), "--ctrl", str(cr)),
                    *("--batch", str(batch), "--backlog", str(backlog)),
                    *("--stats-interval", str(stats_interval)),
                ],
                pass_fds=(sock.fileno(), wfd, cr),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            for fd in (rfd, cw):
                os.close(fd)
            raise
        finally:
            os.close(wfd)
            os.close(cr)
        self._ctrl: int | None = cw
        self._reader_file: IO[bytes] = open(rfd, "rb", buffering=1 << 20)  # noqa: SIM115
        self.sources: dict[int, str] = {}
        self.ready = threading.Event()  # set by the child's first stats frame
        self.thread = threading.Thread(
            target=self._read, name=f"netflow-rx-pipe-{self.proc.pid}", daemon=True
        )
        self.thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        f = self._reader_file
        read = f.read
        sources = self.sources
        try:
            while True:
                head = read(HEADER.size)
                if len(head) < HEADER.size:
                    break
                kind, a, b = HEADER.unpack(head)
                if kind == DATA:
                    lens = np.frombuffer(read(4 * a), np.uint32).astype(np.int64)
                    ids = np.frombuffer(read(2 * a), np.uint16).tolist()
                    payload = read(b)
                    ends = np.cumsum(lens)
                    starts = (ends - lens).tolist()
                    batch = [
                        (payload[s:e], sources[i])
                        for s, e, i in zip(starts, ends.tolist(), ids, strict=True)
                    ]
                    self.deliver(batch)
                elif kind == SOURCE:
                    sources[a] = read(b).decode()
                elif kind == STATS:
                    self.on_stats(json.loads(read(b)))
                    self.ready.set()
                elif kind == RESET:
                    sources.clear()
                else:
                    log.error("NetFlow receiver pipe: unknown frame kind %d; closing", kind)
                    break
        except Exception:
            log.exception("NetFlow receiver pipe reader failed")
        finally:
            self.ready.set()  # a child that died before its first frame: nobody waits
            f.close()

    def stop(self) -> None:
        """Ask the child to drain and exit (closing the control pipe); non-blocking."""
        if self._ctrl is not None:
            os.close(self._ctrl)
            self._ctrl = None

    @property
    def reading(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for the child and the reader; a child that does not exit is killed by PID."""
        self.stop()
        self.thread.join(timeout)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("NetFlow receiver process %d did not exit; killing it", self.proc.pid)
            self.proc.kill()
            self.proc.wait()
        self.thread.join(timeout)


if __name__ == "__main__":
    main()
