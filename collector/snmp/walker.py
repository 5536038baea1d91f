"""Walk several table columns at once with GETBULK, one request carrying every unfinished
column, and stop each column on the first sign of trouble.

A column ends at the first OID outside it or at endOfMibView. An OID that does not increase
(an agent looping or answering out of order) ends the column as incomplete with a reason; so
does an error or a timeout in the middle of a walk. The caller decides what an incomplete
table means (e.g. ARP entries missing from an incomplete table are not marked gone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from collector.snmp.ber import END_OF_MIB_VIEW, Oid, SnmpExceptionValue, Value, VarBind
from collector.snmp.errors import SnmpAgentError, SnmpError

# A response is capped at this many varbinds (columns × repetitions) so that one request stays
# well inside a UDP datagram on a real network; agents may return fewer (truncation is fine).
MAX_VARBINDS_PER_REQUEST = 200
# A runaway agent (an ever-increasing table) cannot keep a device's walk busy forever.
MAX_ROWS_PER_COLUMN = 500_000


class BulkClient(Protocol):
    async def get_bulk(
        self, oids: Sequence[Oid], non_repeaters: int = 0, max_repetitions: int = 25
    ) -> list[VarBind]: ...


@dataclass
class Column:
    """One column's rows as (index suffix, value), in the agent's order."""

    oid: Oid
    rows: list[tuple[Oid, Value]] = field(default_factory=list)
    complete: bool = False
    problem: str | None = None


@dataclass
class Walk:
    """The columns of one walk, filled in as responses arrive (usable after a cancellation)."""

    columns: dict[str, Column]
    varbinds: int = 0
    requests: int = 0
    error: SnmpError | None = None

    @property
    def problems(self) -> list[str]:
        return [f"{n}: {c.problem}" for n, c in self.columns.items() if c.problem]

    def complete(self, *names: str) -> bool:
        return all(self.columns[n].complete for n in names)


def new_walk(columns: dict[str, Oid]) -> Walk:
    return Walk({name: Column(oid) for name, oid in columns.items()})


async def walk_columns(client: BulkClient, walk: Walk, *, max_repetitions: int) -> Walk:
    """Fill ``walk`` until every column ended; never raises SnmpError (see ``walk.error``)."""
    cursor: dict[str, Oid] = {n: c.oid for n, c in walk.columns.items() if not c.complete}
    reps = max(1, max_repetitions)
    while cursor:
        names = list(cursor)
        per_request = max(1, min(reps, MAX_VARBINDS_PER_REQUEST // len(names)))
        try:
            vbs = await client.get_bulk([cursor[n] for n in names], 0, per_request)
        except SnmpAgentError as exc:
            if exc.status == 1 and per_request > 1:  # tooBig: ask for less
                reps = max(1, per_request // 2)
                continue
            walk.error = exc
            _fail(walk, cursor, str(exc))
            return walk
        except SnmpError as exc:
            walk.error = exc
            _fail(walk, cursor, str(exc))
            return walk
        walk.requests += 1
        walk.varbinds += len(vbs)
        if not vbs:
            _fail(walk, cursor, "empty GETBULK response")
            return walk
        width = len(names)
        for i, (oid, value) in enumerate(vbs):
            name = names[i % width]
            last = cursor.get(name)
            if last is None:  # this column ended earlier in the same response
                continue
            col = walk.columns[name]
            base = col.oid
            n = len(base)
            if oid[:n] != base or (
                isinstance(value, SnmpExceptionValue) and value is END_OF_MIB_VIEW
            ):
                col.complete = True
                del cursor[name]
                continue
            if oid <= last:
                col.problem = (
                    f"OID not increasing ({_dotted(oid)} after {_dotted(last)}): "
                    "agent loops or answers out of order"
                )
                del cursor[name]
                continue
            col.rows.append((oid[n:], value))
            cursor[name] = oid
            if len(col.rows) >= MAX_ROWS_PER_COLUMN:
                col.problem = f"more than {MAX_ROWS_PER_COLUMN} rows: walk stopped"
                del cursor[name]
    return walk


def _fail(walk: Walk, cursor: dict[str, Oid], reason: str) -> None:
    for name in cursor:
        walk.columns[name].problem = f"stopped after {len(walk.columns[name].rows)} rows: {reason}"
    cursor.clear()


def _dotted(oid: Oid) -> str:
    return ".".join(map(str, oid))
