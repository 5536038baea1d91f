"""Many datagrams per system call: ``recvmmsg(2)`` through ctypes, on Linux.

Why: a ``recvfrom`` loop gives the GIL up and takes it back once per datagram; while the
decoder or the database writer computes, each take-back can wait a switch interval, so the
receiver fell behind and the kernel dropped datagrams at ~2M records/s. ``recvmmsg`` fills up
to ``slots`` preallocated buffers per call with the GIL released (ctypes releases it around
foreign calls), then Python only copies the payloads out. Where libc has no ``recvmmsg``,
:func:`batch_receiver` returns None and the listener keeps its ``recvfrom`` loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
from collections.abc import Callable

import numpy as np

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
_SOCKADDR = 28  # room for sockaddr_in6


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _libc_recvmmsg() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _libc_recvmmsg()


class BatchReceiver:
    """Receives up to ``slots`` datagrams of at most ``size`` bytes per call from a
    non-blocking UDP socket; returns [] when nothing is waiting."""

    def __init__(self, sock: socket.socket, slots: int = 64, size: int = 65535) -> None:
        assert _RECVMMSG is not None
        self.fd = sock.fileno()
        self.slots = slots
        self.size = size
        self.data = ctypes.create_string_buffer(slots * size)
        self.names = ctypes.create_string_buffer(slots * _SOCKADDR)
        self.iovs = (_Iovec * slots)()
        self.msgs = (_Mmsghdr * slots)()
        base = ctypes.addressof(self.data)
        names = ctypes.addressof(self.names)
        for i in range(slots):
            self.iovs[i].iov_base = base + i * size
            self.iovs[i].iov_len = size
            hdr = self.msgs[i].msg_hdr
            hdr.msg_name = names + i * _SOCKADDR
            hdr.msg_namelen = _SOCKADDR
            hdr.msg_iov = ctypes.pointer(self.iovs[i])
            hdr.msg_iovlen = 1
        # msg_len and msg_flags of every slot, read as arrays after each call
        raw = (ctypes.c_char * ctypes.sizeof(self.msgs)).from_address(ctypes.addressof(self.msgs))
        table = np.frombuffer(memoryview(raw).cast("B"), np.uint8)
        table = table.reshape(slots, ctypes.sizeof(_Mmsghdr))
        len_at = _Mmsghdr.msg_len.offset
        flags_at = _Msghdr.msg_flags.offset
        namelen_at = _Msghdr.msg_namelen.offset
        self._lens = table[:, len_at : len_at + 4].view(np.uint32).reshape(-1)
        self._flags = table[:, flags_at : flags_at + 4].view(np.int32).reshape(-1)
        self._namelens = table[:, namelen_at : namelen_at + 4].view(np.uint32).reshape(-1)
        self._view = memoryview(self.data).cast("B")
        self._names = memoryview(self.names).cast("B")
        self._addr_cache: dict[bytes, str] = {}
        self.truncated = 0  # datagrams longer than ``size`` (dropped)

    def _call(self) -> int:
        """One recvmmsg; the number of datagrams now in the slots (0: none waiting)."""
        assert _RECVMMSG is not None
        self._namelens[:] = _SOCKADDR  # the kernel shrinks msg_namelen to what it wrote
        n = _RECVMMSG(self.fd, ctypes.addressof(self.msgs), self.slots, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, "recvmmsg failed")
        return int(n)

    def receive_views(self) -> tuple[list[int], list[bytes], list[memoryview]]:
        """The datagrams waiting now as (lengths, raw sockaddrs, payload views): the views
        point into the receive buffer and are valid until the next call, so a caller that
        packs them (the receiver process) copies each payload once."""
        n = self._call()
        if not n:
            return [], [], []
        lens = self._lens[:n].tolist()
        flags = self._flags[:n].tolist()
        view, names, size = self._view, self._names, self.size
        out_lens: list[int] = []
        out_names: list[bytes] = []
        out_views: list[memoryview] = []
        for i in range(n):
            if flags[i] & MSG_TRUNC:
                self.truncated += 1
                continue
            out_lens.append(lens[i])
            out_names.append(bytes(names[i * _SOCKADDR : i * _SOCKADDR + _SOCKADDR]))
            out_views.append(view[i * size : i * size + lens[i]])
        return out_lens, out_names, out_views

    def receive(self) -> list[tuple[bytes, str]]:
        """The datagrams waiting now (up to ``slots``), as (payload, source address)."""
        n = self._call()
        if not n:
            return []
        lens = self._lens[:n].tolist()
        flags = self._flags[:n].tolist()
        view, names, size = self._view, self._names, self.size
        cache = self._addr_cache
        out: list[tuple[bytes, str]] = []
        for i in range(n):
            if flags[i] & MSG_TRUNC:
                self.truncated += 1
                continue
            name = bytes(names[i * _SOCKADDR : i * _SOCKADDR + _SOCKADDR])
            addr = cache.get(name)
            if addr is None:
                addr = address(name)
                if len(cache) < 65536:
                    cache[name] = addr
            start = i * size
            out.append((bytes(view[start : start + lens[i]]), addr))
        return out


def address(name: bytes) -> str:
    """Text of a sockaddr_in / sockaddr_in6 (family in host byte order, Linux)."""
    family = struct.unpack_from("=H", name)[0]
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, name[8:24])
    return socket.inet_ntop(socket.AF_INET, name[4:8])


def batch_receiver(sock: socket.socket, slots: int = 64) -> BatchReceiver | None:
    """A :class:`BatchReceiver` for ``sock``, or None where recvmmsg is unavailable."""
    if _RECVMMSG is None:
        return None
    return BatchReceiver(sock, slots)
