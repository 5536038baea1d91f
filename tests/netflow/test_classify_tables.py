"""The merged lookup tables answer exactly what each prefix table answers on its own.

Mixed IPv4/IPv6 batches are looked up in one table over a shared 64-bit key space (IPv4 by
the lower half of its mapped address, IPv6 by its /64). IPv6 prefixes that cover that part
of the key space (::/0, 0::/16, ::ffff:0:0/96's neighbours) must still never answer for an
IPv4 address, and IPv6 addresses there must still get the IPv6 answer.
"""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.netflow.batch import FlowBatch, parse_address
from collector.netflow.classify import IntervalTable, SideTable, _Keys

# IPv4 keys live at 0xffff << 32 + address, where IPv6 /64s 0:ffff:xxxx:xxxx:: live too
V6_NEAR_MAPPED = ["::/0", "::/8", "0:ffff::/32", "0:ffff:a00::/40", "0:ffff:1:2::/64", "::/96"]

v4_prefix = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
    lambda t: str(ipaddress.IPv4Network((t[0], t[1]), strict=False))
)
v6_prefix = st.one_of(
    st.sampled_from(V6_NEAR_MAPPED),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 64)).map(
        lambda t: str(ipaddress.IPv6Network((t[0], t[1]), strict=False))
    ),
)
address = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a))),
    st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a))),
    st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv6Address((0xFFFF << 32) | a))),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)).map(
        lambda t: str(ipaddress.IPv6Address((((0xFFFF << 32) | t[0]) << 64) | t[1]))
    ),
    st.sampled_from(["0:ffff:1:2::5", "0:ffff:a00:1::", "::1", "::", "10.0.0.1", "0.0.0.0"]),
)


@settings(max_examples=200, deadline=None)
@given(
    tables=st.lists(
        st.lists(st.tuples(st.one_of(v4_prefix, v6_prefix), st.integers(1, 9)), max_size=6),
        min_size=1,
        max_size=2,
    ),
    addrs=st.lists(address, min_size=1, max_size=30),
)
def test_merged_lookup_equals_per_table_lookup(
    tables: list[list[tuple[str, int]]], addrs: list[str]
) -> None:
    halves = [parse_address(a) for a in addrs]
    n = len(halves)
    cols = {name: np.zeros(n, np.uint64) for name in ("src_hi", "src_lo")}
    cols["src_hi"][:] = [h for h, _ in halves]
    cols["src_lo"][:] = [lo for _, lo in halves]
    cols["version"] = np.full(n, 10, np.uint16)
    batch = FlowBatch(cols)
    keys = _Keys.of(batch, "src")
    interval_tables = [IntervalTable.from_prefixes(t) for t in tables]
    merged = SideTable(interval_tables).lookup(keys)
    for i, table in enumerate(interval_tables):
        assert merged[i].tolist() == table.lookup(keys).tolist(), (tables[i], addrs)
