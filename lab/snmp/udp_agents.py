"""Misbehaving SNMP agents, each run as its own process by lab.snmp.agents.

    python -m lab.snmp.udp_agents silent [PORT]
    python -m lab.snmp.udp_agents dying UPSTREAM_PORT ANSWER_FIRST
    python -m lab.snmp.udp_agents broken loop|out_of_order SNMPREC_FILE BROKEN_PREFIX

Each binds a UDP port on 127.0.0.1 chosen by the kernel (no race with a parallel test run),
prints ``PORT <n>`` on stdout and serves until SIGTERM. They run as separate processes so their
CPU never counts against the poller being measured and ``stop()`` can end them by PID.
"""

from __future__ import annotations

import bisect
import contextlib
import select
import socket
import sys
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MAX_VARBINDS = 200  # cap on one GETBULK answer


def _bind(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    return sock


def silent(port: int = 0) -> None:
    """Receive and drop everything: a device that never answers."""
    sock = _bind(port)
    while True:
        sock.recv(65535)


def dying(upstream_port: int, answer_first: int) -> None:
    """Forward the first ``answer_first`` datagrams to the upstream agent (and relay its
    answers), then drop every later request: an agent that dies mid-walk. Every datagram
    counts, including SNMPv3 engine discovery."""
    sock = _bind()
    upstream = (HOST, upstream_port)
    by_client: dict[tuple[str, int], socket.socket] = {}
    by_fd: dict[int, tuple[tuple[str, int], socket.socket]] = {}
    forwarded = 0
    while True:
        ready, _, _ = select.select([sock, *(s for _, s in by_fd.values())], [], [])
        for r in ready:
            if r is sock:
                data, client = sock.recvfrom(65535)
                if forwarded >= answer_first:
                    continue
                forwarded += 1
                up = by_client.get(client)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.connect(upstream)
                    by_client[client] = up
                    by_fd[up.fileno()] = (client, up)
                up.send(data)
            else:
                client, up = by_fd[r.fileno()]
                with contextlib.suppress(ConnectionRefusedError):  # upstream gone: stay quiet
                    sock.sendto(up.recv(65535), client)


class _Table:
    """The records of an .snmprec file with a successor function that misbehaves on purpose
    in every column under ``prefix`` (a column: the OIDs sharing ``prefix`` plus one arc):
    ``loop`` returns to the column's first row after its last one (a walk never ends),
    ``out_of_order`` serves the column's rows pairwise swapped (every row once, but the
    second before the first). Outside ``prefix`` it is a correct agent."""

    def __init__(self, path: Path, mode: str, prefix: str) -> None:
        from pysnmp.proto import api

        from lab.snmp.snmprec import decode, oid_key, read_snmprec

        v2c = api.v2c
        types: dict[str, Any] = {
            "2": v2c.Integer32,
            "4": v2c.OctetString,
            "6": v2c.ObjectIdentifier,
            "64": v2c.IpAddress,
            "65": v2c.Counter32,
            "66": v2c.Gauge32,
            "67": v2c.TimeTicks,
            "70": v2c.Counter64,
        }
        recs = read_snmprec(path)
        self.keys = [oid_key(r.oid) for r in recs]
        self.values = [types[r.tag.removesuffix("x")](decode(r)) for r in recs]
        self.mode = mode
        pk = oid_key(prefix)
        a = bisect.bisect_left(self.keys, pk)
        b = a
        while b < len(self.keys) and self.keys[b][: len(pk)] == pk:
            b += 1
        if b - a < 2:
            raise SystemExit(f"fewer than two records under {prefix} in {path}")
        # successor of each record index inside the subtree, and of the OID just before it
        self.succ: dict[int, int | None] = {}
        self.entry: dict[int, int] = {}  # first index of a column -> index served first
        start = a
        while start < b:
            col = self.keys[start][: len(pk) + 1]
            stop = start
            while stop < b and self.keys[stop][: len(pk) + 1] == col:
                stop += 1
            order = list(range(start, stop))
            if mode == "out_of_order":
                for i in range(0, len(order) - 1, 2):
                    order[i], order[i + 1] = order[i + 1], order[i]
            after: int | None = stop if stop < len(self.keys) else None
            for p, idx in enumerate(order):
                self.succ[idx] = order[p + 1] if p + 1 < len(order) else after
            if mode == "loop":
                self.succ[stop - 1] = start
            self.entry[start] = order[0]
            start = stop

    def get(self, key: tuple[int, ...]) -> int | None:
        i = bisect.bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else None

    def next(self, key: tuple[int, ...]) -> int | None:
        """Index of the record served after ``key`` (None: end of MIB view)."""
        exact = self.get(key)
        if exact is not None and exact in self.succ:
            return self.succ[exact]
        j = bisect.bisect_right(self.keys, key)
        if j >= len(self.keys):
            return None
        return self.entry.get(j, j)


def broken(mode: str, snmprec: Path, prefix: str) -> None:
    """Answer SNMPv2c GET/GETNEXT/GETBULK (any community) from ``snmprec``, broken inside
    ``prefix`` as _Table describes. Messages are built with pysnmp's message classes."""
    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api

    table = _Table(snmprec, mode, prefix)
    v2c = api.v2c
    sock = _bind()
    while True:
        data, client = sock.recvfrom(65535)
        try:
            if int(api.decodeMessageVersion(data)) != api.SNMP_VERSION_2C:
                continue
            msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
        except Exception:  # malformed or not SNMP: drop, like an agent would
            continue
        req = v2c.apiMessage.get_pdu(msg)
        rsp_msg = v2c.apiMessage.get_response(msg)
        rsp = v2c.apiMessage.get_pdu(rsp_msg)
        oids = [tuple(oid) for oid, _ in v2c.apiPDU.get_varbinds(req)]
        out: list[tuple[Any, Any]] = []

        def step(key: tuple[int, ...], out: list[tuple[Any, Any]] = out) -> tuple[int, ...] | None:
            """Append the successor of ``key``; None once the MIB view ended."""
            i = table.next(key)
            if i is None:
                out.append((v2c.ObjectIdentifier(key), v2c.EndOfMibView()))
                return None
            out.append((v2c.ObjectIdentifier(table.keys[i]), table.values[i]))
            return table.keys[i]

        if req.isSameTypeWith(v2c.GetRequestPDU()):
            for key in oids:
                i = table.get(key)
                val = table.values[i] if i is not None else v2c.NoSuchInstance()
                out.append((v2c.ObjectIdentifier(key), val))
        elif req.isSameTypeWith(v2c.GetNextRequestPDU()):
            for key in oids:
                step(key)
        elif req.isSameTypeWith(v2c.GetBulkRequestPDU()):
            n = min(int(v2c.apiBulkPDU.get_non_repeaters(req)), len(oids))
            m = max(int(v2c.apiBulkPDU.get_max_repetitions(req)), 0)
            for key in oids[:n]:
                step(key)
            cur = list(oids[n:])
            ended = [False] * len(cur)
            for _ in range(m):
                if not cur or len(out) + len(cur) > MAX_VARBINDS or all(ended):
                    break
                for c, key in enumerate(cur):
                    if ended[c]:  # RFC 3416: an ended column keeps answering endOfMibView
                        out.append((v2c.ObjectIdentifier(key), v2c.EndOfMibView()))
                        continue
                    nxt = step(key)
                    if nxt is None:
                        ended[c] = True
                    else:
                        cur[c] = nxt
        else:
            continue
        v2c.apiPDU.set_varbinds(rsp, out)
        sock.sendto(encoder.encode(rsp_msg), client)


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else ""
    if kind == "silent" and len(argv) <= 2:
        silent(int(argv[1]) if len(argv) == 2 else 0)
    elif kind == "dying" and len(argv) == 3:
        dying(int(argv[1]), int(argv[2]))
    elif kind == "broken" and len(argv) == 4 and argv[1] in ("loop", "out_of_order"):
        broken(argv[1], Path(argv[2]), argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
