"""Detection rules as data: which kinds of finding exist, how they are recognised, how sure a
finding must be before it may be enforced automatically, and which kinds count as strikes.

The rules are the ``detection`` section of a policy file (``rules/policies/*.yaml``); the
NetFlow collector classifies flows with :class:`PortSignature` lists and ``ignore_addresses``,
and the engine applies ``kinds`` (severity, corroboration, counting)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.models import ObservationSource

Severity = Literal["low", "medium", "high", "critical"]
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # fits Detection.kind / Case.kind (32 chars)

_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortSignature(_Strict):
    """A protocol and destination ports that identify software (RDP, IKE...). Empty ``ports``
    means every port of ``protocol`` (ESP, GRE have none)."""

    name: str
    protocol: int = Field(ge=0, le=255)
    ports: list[int] = Field(default_factory=list)

    @field_validator("ports")
    @classmethod
    def _ports_in_range(cls, ports: list[int]) -> list[int]:
        bad = [p for p in ports if not 0 <= p <= 65535]
        if bad:
            raise ValueError(f"ports out of range 0-65535: {bad}")
        return ports

    def matches(self, protocol: int, port: int | None) -> bool:
        if protocol != self.protocol:
            return False
        return not self.ports or (port is not None and port in self.ports)


class Corroboration(_Strict):
    """When a single finding is sure enough for ``auto`` enforcement (DESIGN.md, "Enforcement
    safety rails"). Corroborated when every threshold given is met, or when another source
    saw the same kind at the same institution within ``second_source_within_s``, or when the
    finding comes from a source listed in ``trusted_sources`` (an active probe hit, a person)."""

    min_flows: int | None = Field(default=None, ge=1)
    min_octets: int | None = Field(default=None, ge=1)
    min_duration_s: float | None = Field(default=None, ge=0)
    second_source: bool = False
    second_source_within_s: int = Field(default=3600, ge=1)
    trusted_sources: list[ObservationSource] = Field(default_factory=list)

    @property
    def thresholds(self) -> dict[str, float]:
        given = {
            "flows": self.min_flows,
            "octets": self.min_octets,
            "duration_s": self.min_duration_s,
        }
        return {k: v for k, v in given.items() if v is not None}


class KindRule(_Strict):
    """One kind of finding: what it means, where the rule comes from and how it is weighed."""

    description: str = Field(min_length=1)
    article: str = Field(min_length=1)
    severity: Severity = "medium"
    counts: bool = False
    detect_min_flows: int = Field(
        default=1, ge=1, description="NetFlow observations with fewer flows are not findings"
    )
    corroboration: Corroboration = Corroboration()


class DetectionRules(_Strict):
    """The ``detection`` section of a policy. ``kinds`` lists every kind the policy handles;
    an observation of any other kind produces no detection."""

    kinds: dict[str, KindRule]
    remote_control: list[PortSignature] = Field(default_factory=list)
    internet_vpn: list[PortSignature] = Field(default_factory=list)
    ignore_addresses: list[str] = Field(default_factory=list)
    max_hosts_per_link: dict[str, int] = Field(
        default_factory=dict,
        description="hosts (distinct IPs in ARP) one link may carry, per institution kind or "
        "'default'; more is a network_extension finding (the line serves others)",
    )

    @field_validator("max_hosts_per_link")
    @classmethod
    def _host_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        known = {"default", "hospital", "pharmacy", "ltc", "applicant"}
        bad = sorted(set(limits) - known)
        if bad:
            raise ValueError(f"unknown institution kinds {bad}; use {sorted(known)}")
        low = sorted(k for k, v in limits.items() if v < 1)
        if low:
            raise ValueError(f"limits must be at least 1: {low}")
        return limits

    def host_limit(self, institution_kind: str) -> int | None:
        """Most hosts one link of an institution of this kind may carry; None: no limit."""
        return self.max_hosts_per_link.get(institution_kind, self.max_hosts_per_link.get("default"))

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: dict[str, KindRule]) -> dict[str, KindRule]:
        import re

        bad = [k for k in kinds if not re.match(KIND_PATTERN, k)]
        if bad:
            raise ValueError(f"kind names must match {KIND_PATTERN}: {bad}")
        return kinds

    @field_validator("ignore_addresses")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        problems = []
        for v in values:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as exc:
                problems.append(f"{v!r}: {exc}")
        if problems:
            raise ValueError("not an address or CIDR: " + "; ".join(problems))
        return values

    @cached_property
    def _ignored(self) -> tuple[_IpNetwork, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.ignore_addresses)

    @property
    def strike_kinds(self) -> list[str]:
        """The kinds that count as strikes (one finding = one strike)."""
        return [k for k, rule in self.kinds.items() if rule.counts]

    def is_ignored(self, address: str | None) -> bool:
        """True for an address inside ``ignore_addresses`` (never counted, never a finding)."""
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self._ignored)

    def classify_port(self, protocol: int, dst_port: int | None) -> tuple[str, str] | None:
        """``(kind, signature name)`` when a flow's protocol/port is remote-control software or
        an internet VPN, else None. Remote control is checked first."""
        for kind, signatures in (
            ("remote_control", self.remote_control),
            ("internet_vpn", self.internet_vpn),
        ):
            for sig in signatures:
                if sig.matches(protocol, dst_port):
                    return kind, sig.name
        return None


def load_detection_rules(
    policy_name: str, *, search_dirs: list[Path] | tuple[Path, ...] = ()
) -> DetectionRules:
    """The detection rules of the named policy (``rules/policies/<name>.yaml`` or a file of
    that name in ``search_dirs`` / ``EDGEWARDEN_POLICY_DIRS``)."""
    from rules.policy import PolicyStore, default_store

    store = PolicyStore(search_dirs) if search_dirs else default_store()
    return store.load(policy_name).detection
