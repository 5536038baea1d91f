"""Template compilation and the per-exporter template cache.

A v9/IPFIX template is compiled once into a numpy structured dtype (one named field per
information element we use, everything else skipped by offset), so a data set of N records
is decoded with a single ``np.frombuffer`` and a handful of column operations. NetFlow v5's
fixed record is expressed as such a template too, so all versions share one conversion path.

Templates are keyed by (exporter address, version, source id / observation domain, template
id): the same template ID from two exporters never collides. The cache can be saved to and
loaded from a JSON file so a restart decodes data without waiting for a template refresh.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

VARLEN = 0xFFFF

# Information elements (IANA IPFIX numbers; v9 field types 1-127 are the same numbers).
IE_OCTETS = 1
IE_PACKETS = 2
IE_PROTOCOL = 4
IE_TOS = 5
IE_TCP_FLAGS = 6
IE_SRC_PORT = 7
IE_SRC_V4 = 8
IE_INPUT_IF = 10
IE_DST_PORT = 11
IE_DST_V4 = 12
IE_OUTPUT_IF = 14
IE_LAST_UPTIME = 21
IE_FIRST_UPTIME = 22
IE_SRC_V6 = 27
IE_DST_V6 = 28
IE_ICMP_V4 = 32
IE_SAMPLING_INTERVAL = 34
IE_SAMPLER_RANDOM_INTERVAL = 50
IE_OCTETS_TOTAL = 85
IE_PACKETS_TOTAL = 86
IE_ICMP_V6 = 139
IE_START_S = 150
IE_END_S = 151
IE_START_MS = 152
IE_END_MS = 153
IE_START_US = 154
IE_END_US = 155
IE_START_NS = 156
IE_END_NS = 157
IE_START_DELTA_US = 158
IE_END_DELTA_US = 159
IE_SYS_INIT_MS = 160
IE_SAMPLING_PACKET_INTERVAL = 305
IE_SAMPLING_PACKET_SPACE = 306
IE_SAMPLING_SIZE = 309
IE_SAMPLING_POPULATION = 310

# Elements the decoder reads, with the lengths it accepts (None: any unsigned length 1..8).
USED_IES: dict[int, tuple[int, ...] | None] = {
    IE_OCTETS: None,
    IE_PACKETS: None,
    IE_PROTOCOL: (1,),
    IE_TOS: (1,),
    IE_TCP_FLAGS: (1, 2),
    IE_SRC_PORT: (2,),
    IE_SRC_V4: (4,),
    IE_INPUT_IF: None,
    IE_DST_PORT: (2,),
    IE_DST_V4: (4,),
    IE_OUTPUT_IF: None,
    IE_LAST_UPTIME: (4,),
    IE_FIRST_UPTIME: (4,),
    IE_SRC_V6: (16,),
    IE_DST_V6: (16,),
    IE_ICMP_V4: (2,),
    IE_SAMPLING_INTERVAL: None,
    IE_SAMPLER_RANDOM_INTERVAL: None,
    IE_OCTETS_TOTAL: None,
    IE_PACKETS_TOTAL: None,
    IE_ICMP_V6: (2,),
    IE_START_S: (4,),
    IE_END_S: (4,),
    IE_START_MS: (8,),
    IE_END_MS: (8,),
    IE_START_US: (8,),
    IE_END_US: (8,),
    IE_START_NS: (8,),
    IE_END_NS: (8,),
    IE_START_DELTA_US: (4,),
    IE_END_DELTA_US: (4,),
    IE_SYS_INIT_MS: (8,),
    IE_SAMPLING_PACKET_INTERVAL: None,
    IE_SAMPLING_PACKET_SPACE: None,
    IE_SAMPLING_SIZE: None,
    IE_SAMPLING_POPULATION: None,
}


class TemplateError(ValueError):
    """A template that cannot be used (zero length, bad field length)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


FieldSpec = tuple[int, int, int]  # (element id, length, enterprise number; 0 = IANA)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A template turned into a numpy dtype plus what it carries."""

    fields: tuple[FieldSpec, ...]
    scope_count: int
    is_options: bool
    dtype: np.dtype  # fixed part (all fields for fixed-length templates)
    lengths: dict[int, int]  # used element id -> length
    reclen: int  # record length, or minimum record length when variable
    variable: bool
    # For variable-length templates: (fixed bytes to copy, is_var) segments in wire order.
    segments: tuple[tuple[int, bool], ...] = ()
    plain: bool = False  # fixed-length data template: the decoder's fast path

    def has(self, ie: int) -> bool:
        return ie in self.lengths


def _format(length: int) -> Any:
    if length == 1:
        return "u1"
    if length in (2, 4, 8):
        return f">u{length}"
    return ("u1", (length,))


@lru_cache(maxsize=4096)
def compile_template(
    fields: tuple[FieldSpec, ...], scope_count: int = 0, is_options: bool = False
) -> Compiled:
    """Compile a template; raises TemplateError for templates that cannot describe records."""
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    lengths: dict[int, int] = {}
    segments: list[tuple[int, bool]] = []
    offset = 0  # offset inside the fixed part
    run = 0
    variable = False
    for i, (ie, length, enterprise) in enumerate(fields):
        if length == VARLEN:
            variable = True
            segments.append((run, False))
            segments.append((0, True))
            run = 0
            continue
        is_scope = is_options and i < scope_count
        if enterprise == 0 and not is_scope and ie in USED_IES and ie not in lengths and length:
            allowed = USED_IES[ie]
            if (allowed is None and length > 8) or (allowed is not None and length not in allowed):
                raise TemplateError("template_field_length")
            names.append(f"e{ie}")
            formats.append(_format(length))
            offsets.append(offset)
            lengths[ie] = length
        offset += length
        run += length
    segments.append((run, False))
    reclen = offset + sum(1 for s in segments if s[1])
    if reclen <= 0:
        raise TemplateError("template_zero_length")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
    if variable:
        segs = tuple((n, v) for n, v in segments if v or n)
        return Compiled(fields, scope_count, is_options, dtype, lengths, reclen, True, segs)
    return Compiled(
        fields, scope_count, is_options, dtype, lengths, reclen, False, (), not is_options
    )


# NetFlow v5's fixed 48-byte record as a template (enterprise 1 marks fields we skip).
V5_FIELDS: tuple[FieldSpec, ...] = (
    (IE_SRC_V4, 4, 0),
    (IE_DST_V4, 4, 0),
    (15, 4, 1),  # next hop
    (IE_INPUT_IF, 2, 0),
    (IE_OUTPUT_IF, 2, 0),
    (IE_PACKETS, 4, 0),
    (IE_OCTETS, 4, 0),
    (IE_FIRST_UPTIME, 4, 0),
    (IE_LAST_UPTIME, 4, 0),
    (IE_SRC_PORT, 2, 0),
    (IE_DST_PORT, 2, 0),
    (0, 1, 1),  # pad1
    (IE_TCP_FLAGS, 1, 0),
    (IE_PROTOCOL, 1, 0),
    (IE_TOS, 1, 0),
    (16, 2, 1),  # src_as
    (17, 2, 1),  # dst_as
    (9, 1, 1),  # src_mask
    (13, 1, 1),  # dst_mask
    (0, 2, 1),  # pad2
)
V5_TEMPLATE = compile_template(V5_FIELDS)
assert V5_TEMPLATE.reclen == 48


@dataclass(slots=True)
class DomainState:
    """What an exporter's options data told us about one source id / observation domain."""

    sampling: int = 0  # 0: not announced
    sys_init_ms: int = -1  # IPFIX systemInitTimeMilliseconds; -1: not announced


TemplateKey = tuple[str, int, int, int]  # (exporter address, version, domain, template id)
DomainKey = tuple[str, int, int]  # (exporter address, version, domain)


@dataclass
class TemplateCache:
    """Templates and options state per exporter, bounded, optionally persisted as JSON."""

    max_templates: int = 65536
    templates: OrderedDict[TemplateKey, Compiled] = field(default_factory=OrderedDict)
    domains: dict[DomainKey, DomainState] = field(default_factory=dict)
    # the same templates indexed per domain: one dict fetch per datagram, one per set
    by_domain: dict[DomainKey, dict[int, Compiled]] = field(default_factory=dict)
    dirty: bool = False
    evicted: int = 0
    # bumped on every change a decoder must see (templates, options state): the batch path
    # re-judges the rest of a batch's sets only when this moved
    changes: int = 0

    def get(self, key: TemplateKey) -> Compiled | None:
        return self.templates.get(key)

    def put(self, key: TemplateKey, compiled: Compiled) -> None:
        old = self.templates.get(key)
        if old is compiled:
            return
        self.templates[key] = compiled
        self.by_domain.setdefault(key[:3], {})[key[3]] = compiled
        self.dirty = True
        self.changes += 1
        while len(self.templates) > self.max_templates:
            gone, _ = self.templates.popitem(last=False)
            self._unindex(gone)
            self.evicted += 1

    def _unindex(self, key: TemplateKey) -> None:
        per = self.by_domain.get(key[:3])
        if per is not None:
            per.pop(key[3], None)
            if not per:
                del self.by_domain[key[:3]]

    def withdraw(self, key: TemplateKey) -> None:
        if self.templates.pop(key, None) is not None:
            self._unindex(key)
            self.dirty = True
            self.changes += 1

    def withdraw_all(self, domain: DomainKey, options: bool) -> None:
        doomed = [
            k for k, c in self.templates.items() if k[:3] == domain and c.is_options == options
        ]
        for k in doomed:
            del self.templates[k]
            self._unindex(k)
        if doomed:
            self.dirty = True
            self.changes += 1

    def domain(self, key: DomainKey) -> DomainState:
        state = self.domains.get(key)
        if state is None:
            if len(self.domains) >= self.max_templates:
                self.domains.pop(next(iter(self.domains)))
                self.changes += 1
            state = self.domains[key] = DomainState()
        return state

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "templates": [
                {
                    "exporter": k[0],
                    "version": k[1],
                    "domain": k[2],
                    "id": k[3],
                    "scope_count": c.scope_count,
                    "options": c.is_options,
                    "fields": [list(f) for f in c.fields],
                }
                for k, c in self.templates.items()
            ],
            "domains": [
                {
                    "exporter": k[0],
                    "version": k[1],
                    "domain": k[2],
                    "sampling": s.sampling,
                    "sys_init_ms": s.sys_init_ms,
                }
                for k, s in self.domains.items()
            ],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".templates-")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_json(), fh)
        os.replace(tmp, target)
        self.dirty = False

    @classmethod
    def load(cls, path: str | os.PathLike[str], max_templates: int = 65536) -> TemplateCache:
        """Load a saved cache; a missing file gives an empty cache, a corrupt one raises."""
        cache = cls(max_templates=max_templates)
        p = Path(path)
        if not p.exists():
            return cache
        data = json.loads(p.read_text())
        for t in data.get("templates", []):
            fields = tuple((int(a), int(b), int(c)) for a, b, c in t["fields"])
            try:
                compiled = compile_template(fields, int(t["scope_count"]), bool(t["options"]))
            except TemplateError:
                continue
            key = (str(t["exporter"]), int(t["version"]), int(t["domain"]), int(t["id"]))
            cache.put(key, compiled)
        for d in data.get("domains", []):
            key2 = (str(d["exporter"]), int(d["version"]), int(d["domain"]))
            cache.domains[key2] = DomainState(int(d["sampling"]), int(d["sys_init_ms"]))
        cache.dirty = False
        return cache
