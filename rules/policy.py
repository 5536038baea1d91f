"""Escalation policies as data: the schema of ``rules/policies/*.yaml`` and where they are found.

A policy names, for every step and transition, the article it enforces. The engine reads
only this structure; nothing in code knows a city or a regulation by name, so a new policy is
a new file (DESIGN.md, "Escalation policy")."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.models import ActionKind, ActionMode, Institution, InstitutionStatus, Role
from core.settings import get_settings
from rules.detection import DetectionRules
from rules.errors import PolicyError

BUILTIN_DIR = Path(__file__).resolve().parent / "policies"
POLICY_DIRS_ENV = "EDGEWARDEN_POLICY_DIRS"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # fits Case.policy / County.policy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DeadlineSpec(_Strict):
    """Something owed by a time: met when a Document of kind ``document`` is on the case.
    ``Deadline.kind`` holds the document kind."""

    document: str = Field(min_length=1, max_length=64)
    hours: float = Field(gt=0)
    description: str = Field(min_length=1)
    article: str = Field(min_length=1)


class OpenSpec(_Strict):
    """What happens when a case opens at this step."""

    state: str = Field(min_length=1, max_length=64)
    actions: list[ActionKind] = Field(default_factory=list)
    cut_mode: ActionMode = ActionMode.APPROVE
    required_documents: list[str] = Field(default_factory=list)
    deadlines: list[DeadlineSpec] = Field(default_factory=list)
    institution_status: InstitutionStatus | None = None


class TransitionSpec(_Strict):
    """An event a person may cause: who, from which states, with which documents, and what it
    does (state, actions, status, step change, closing)."""

    from_: list[str] = Field(alias="from", min_length=1)
    to: str = Field(min_length=1, max_length=64)
    roles: list[Role] = Field(min_length=1)
    article: str = Field(min_length=1)
    description: str = ""
    requires_documents: list[str] = Field(default_factory=list)
    actions: list[ActionKind] = Field(default_factory=list)
    goto_step: str | None = None
    institution_status: InstitutionStatus | None = None
    set_consequences: bool | None = None
    closes: bool = False
    ends_handling: bool = False

    @field_validator("roles")
    @classmethod
    def _acting_roles(cls, roles: list[Role]) -> list[Role]:
        passive = [r.value for r in roles if r in (Role.VIEWER, Role.AUDITOR)]
        if passive:
            raise ValueError(f"roles {passive} can never act on a case")
        return roles


class StepSpec(_Strict):
    title: str = Field(min_length=1)
    article: str = Field(min_length=1)
    on_open: OpenSpec
    transitions: dict[str, TransitionSpec] = Field(default_factory=dict)


class StrikeRung(_Strict):
    """Finding number ``strike`` (and above, for the last rung) goes to ``step``."""

    strike: int = Field(ge=1)
    step: str


class WindowSpec(_Strict):
    """The period strikes are counted in. ``agreement_term`` uses the institution's service
    agreement dates and falls back to ``fallback`` when they are missing or do not cover the
    finding."""

    kind: Literal["agreement_term", "calendar_year", "forever"] = "agreement_term"
    fallback: Literal["calendar_year", "forever"] = "calendar_year"
    article: str = Field(min_length=1)


class VendorSpec(_Strict):
    """Third-party vendors must fix findings in time or be suspended."""

    fix_hours: float = Field(gt=0)
    article: str = Field(min_length=1)


class Policy(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1)
    source: str = Field(min_length=1, description="the regulation this file implements")
    timezone: str = "Asia/Shanghai"
    detection: DetectionRules
    window: WindowSpec
    strikes: list[StrikeRung] = Field(default_factory=list)
    kind_steps: dict[str, str] = Field(default_factory=dict)
    steps: dict[str, StepSpec]
    on_handling_end: list[DeadlineSpec] = Field(default_factory=list)
    no_reconnect_statuses: list[InstitutionStatus] = Field(
        default_factory=lambda: [InstitutionStatus.BLACKLISTED]
    )
    final_statuses: list[InstitutionStatus] = Field(
        default_factory=lambda: [InstitutionStatus.BLACKLISTED]
    )
    no_reconnect_article: str = Field(min_length=1)
    vendors: VendorSpec | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        problems: list[str] = []
        numbers = [r.strike for r in self.strikes]
        if numbers and (numbers[0] != 1 or numbers != sorted(set(numbers))):
            problems.append(f"strikes must start at 1 and increase: {numbers}")
        for rung in self.strikes:
            if rung.step not in self.steps:
                problems.append(f"strike {rung.strike}: unknown step {rung.step!r}")
        for kind, rule in self.detection.kinds.items():
            if rule.counts and not self.strikes:
                problems.append(f"kind {kind!r} counts as a strike but the policy has no strikes")
            if rule.counts and kind in self.kind_steps:
                problems.append(f"kind {kind!r} counts as a strike: it takes the strike ladder")
            if not rule.counts and kind not in self.kind_steps:
                problems.append(f"kind {kind!r} does not count: name its step in kind_steps")
        for kind, step_name in self.kind_steps.items():
            if kind not in self.detection.kinds:
                problems.append(f"kind_steps: {kind!r} is not a detection kind")
            if step_name not in self.steps:
                problems.append(f"kind_steps: {kind!r} goes to unknown step {step_name!r}")
        entered: dict[str, set[str]] = {name: set() for name in self.steps}
        for name, step in self.steps.items():
            for event, t in step.transitions.items():
                if t.goto_step is not None:
                    if t.goto_step not in self.steps:
                        problems.append(f"{name}.{event}: unknown goto_step {t.goto_step!r}")
                    else:
                        entered[t.goto_step].add(t.to)
        for name, step in self.steps.items():
            states = {step.on_open.state} | entered[name]
            states |= {t.to for t in step.transitions.values() if t.goto_step is None}
            for event, t in step.transitions.items():
                unknown = sorted(set(t.from_) - states)
                if unknown:
                    problems.append(f"{name}.{event}: from states {unknown} are never reached")
                if t.goto_step in self.steps:
                    target = self.steps[t.goto_step]
                    usable = {target.on_open.state} | {
                        s for tt in target.transitions.values() for s in tt.from_
                    }
                    if t.to not in usable:
                        problems.append(
                            f"{name}.{event}: state {t.to!r} has no exit in step {t.goto_step!r}"
                        )
                if ActionKind.RESTORE in t.actions and t.institution_status in (
                    self.no_reconnect_statuses
                ):
                    problems.append(f"{name}.{event}: restores a link of a barred institution")
            if ActionKind.RESTORE in step.on_open.actions:
                problems.append(f"{name}.on_open: a case never opens by reconnecting")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- queries the engine and the CLI use -------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def step_for_strike(self, strike: int) -> str:
        chosen = self.strikes[0].step
        for rung in self.strikes:
            if strike >= rung.strike:
                chosen = rung.step
        return chosen

    def step_for_kind(self, kind: str, strike: int) -> str:
        rule = self.detection.kinds[kind]
        return self.step_for_strike(strike) if rule.counts else self.kind_steps[kind]

    def window_for(self, institution: Institution, at: datetime) -> tuple[date | None, date | None]:
        """The counting window (local dates, inclusive) holding a finding made at ``at``."""
        day = at.astimezone(self.zone).date()
        kind: str = self.window.kind
        if kind == "agreement_term":
            start, end = institution.agreement_start, institution.agreement_end
            if start is not None and end is not None and start <= day <= end:
                return start, end
            kind = self.window.fallback
        if kind == "calendar_year":
            return date(day.year, 1, 1), date(day.year, 12, 31)
        return None, None

    def window_bounds(
        self, start: date | None, end: date | None
    ) -> tuple[datetime | None, datetime | None]:
        """The window as aware datetimes [from, until) for comparing with stored times."""
        lo = datetime.combine(start, time.min, self.zone) if start else None
        hi = datetime.combine(end + timedelta(days=1), time.min, self.zone) if end else None
        return lo, hi


def _format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(file)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return out


def parse_policy(text: str, origin: str, expected_name: str | None = None) -> Policy:
    """Validate a policy document; every problem is listed with where it is."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{origin}: not valid YAML", [str(exc)]) from None
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy is a mapping at the top level")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{origin}: invalid policy", _format_errors(exc)) from None
    if expected_name is not None and policy.name != expected_name:
        raise PolicyError(
            f"{origin}: file declares name {policy.name!r}, expected {expected_name!r}"
        )
    return policy


def load_policy_file(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_policy(text, str(path), expected_name=path.stem)


class PolicyStore:
    """Finds ``<name>.yaml`` in the given directories, then ``EDGEWARDEN_POLICY_DIRS``
    (os.pathsep-separated), then the built-in ``rules/policies``; caches what it loaded."""

    def __init__(self, extra_dirs: Iterable[Path | str] = (), *, use_env: bool = True) -> None:
        dirs = [Path(d) for d in extra_dirs]
        env = os.environ.get(POLICY_DIRS_ENV, "") if use_env else ""
        dirs += [Path(d) for d in env.split(os.pathsep) if d]
        self.dirs: tuple[Path, ...] = (*dirs, BUILTIN_DIR)
        self._cache: dict[str, Policy] = {}

    def path_of(self, name: str) -> Path:
        if not re.match(NAME_PATTERN, name):
            raise PolicyError(f"{name!r} is not a policy name")
        for d in self.dirs:
            path = d / f"{name}.yaml"
            if path.is_file():
                return path
        raise PolicyError(
            f"no policy named {name!r}", [f"looked in {', '.join(str(d) for d in self.dirs)}"]
        )

    def load(self, name: str) -> Policy:
        if name not in self._cache:
            self._cache[name] = load_policy_file(self.path_of(name))
        return self._cache[name]

    def names(self) -> list[str]:
        found: set[str] = set()
        for d in self.dirs:
            if d.is_dir():
                found |= {p.stem for p in d.glob("*.yaml") if re.match(NAME_PATTERN, p.stem)}
        return sorted(found)

    def for_institution(self, institution: Institution) -> Policy:
        """The policy of the institution's county (inherited from parents), else the default."""
        name = institution.county.effective_policy() or get_settings().default_policy
        return self.load(name)


@lru_cache(maxsize=1)
def _default_store(env_value: str) -> PolicyStore:
    return PolicyStore()


def default_store() -> PolicyStore:
    """The process-wide store; a new one is made when EDGEWARDEN_POLICY_DIRS changes."""
    return _default_store(os.environ.get(POLICY_DIRS_ENV, ""))


def resolve_store(store: PolicyStore | Sequence[Path] | None) -> PolicyStore:
    if store is None:
        return default_store()
    if isinstance(store, PolicyStore):
        return store
    return PolicyStore(store)
