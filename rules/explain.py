"""Readable summaries: what a policy says (``policy check``) and where an institution stands
under it (``policy explain``): strikes, open cases, and what the next finding would do and why,
citing the article. Plain text so the CLI, the API and reports can reuse it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Case, Deadline, Institution
from core.timeutil import as_utc, utcnow
from rules.engine import (
    StoreArg,
    allowed_events,
    documents_present,
    open_case_for,
    strikes_in_window,
)
from rules.policy import Policy, resolve_store


def describe_policy(policy: Policy) -> str:
    """A policy as a person reads it: kinds, strike ladder, steps and their transitions."""
    out = [
        f"policy {policy.name}: {policy.title}",
        f"source: {policy.source}",
        f"window: {policy.window.kind} (fallback {policy.window.fallback}) — "
        f"{policy.window.article}",
        "",
        "detection kinds:",
    ]
    for kind, rule in policy.detection.kinds.items():
        counts = "counts as a strike" if rule.counts else f"→ step {policy.kind_steps[kind]}"
        c = rule.corroboration
        ways = []
        if c.thresholds:
            ways.append(" and ".join(f"{k} ≥ {v:g}" for k, v in c.thresholds.items()))
        if c.second_source:
            ways.append(f"a second source within {c.second_source_within_s} s")
        if c.trusted_sources:
            ways.append("one report from " + "/".join(str(s) for s in c.trusted_sources))
        corr = " | ".join(ways)
        out.append(f"  {kind:<20} {rule.severity:<8} {counts}; {rule.article}")
        out.append(f"  {'':<20} auto enforcement needs: {corr or 'never corroborated'}")
    out.append(
        f"  signatures: {len(policy.detection.remote_control)} remote-control, "
        f"{len(policy.detection.internet_vpn)} internet-VPN; "
        f"{len(policy.detection.ignore_addresses)} ignored prefixes"
    )
    out.append("")
    if policy.strikes:
        out.append("strikes:")
        last = policy.strikes[-1].strike
        for rung in policy.strikes:
            label = f"{rung.strike}+" if rung.strike == last else str(rung.strike)
            out.append(f"  finding {label:<3} → {rung.step}")
    else:
        out.append("strikes: none (each finding is handled on its own)")
    out.append("")
    out.append("steps:")
    for name, step in policy.steps.items():
        o = step.on_open
        out.append(f"  {name}: {step.title}")
        out.append(f"    article: {step.article}")
        acts = ", ".join(f"{a} ({o.cut_mode})" for a in o.actions) or "none"
        out.append(f"    on open: state {o.state}; actions: {acts}")
        if o.required_documents:
            out.append(f"    documents required: {', '.join(o.required_documents)}")
        if o.institution_status:
            out.append(f"    institution status → {o.institution_status}")
        for d in o.deadlines:
            out.append(f"    deadline: {d.document} within {d.hours:g} h ({d.article})")
        for event, t in step.transitions.items():
            extra = []
            if t.requires_documents:
                extra.append(f"needs {', '.join(t.requires_documents)}")
            if t.actions:
                extra.append(", ".join(str(a) for a in t.actions))
            if t.goto_step:
                extra.append(f"continues as {t.goto_step}")
            if t.institution_status:
                extra.append(f"status → {t.institution_status}")
            if t.closes:
                extra.append("closes")
            roles = "/".join(r.value for r in t.roles)
            out.append(
                f"    {event}: {'|'.join(t.from_)} → {t.to} by {roles}"
                + (f"; {'; '.join(extra)}" if extra else "")
            )
            out.append(f"      {t.article}")
    if policy.on_handling_end:
        out.append("")
        out.append("when handling ends:")
        for d in policy.on_handling_end:
            out.append(f"  {d.document} within {d.hours:g} h — {d.description} ({d.article})")
    out.append("")
    barred = ", ".join(s.value for s in policy.no_reconnect_statuses)
    out.append(f"never reconnected: {barred} — {policy.no_reconnect_article}")
    if policy.vendors:
        out.append(f"vendors: fix findings within {policy.vendors.fix_hours:g} h or be suspended")
        out.append(f"  {policy.vendors.article}")
    return "\n".join(out)


@dataclass
class CaseView:
    id: int
    kind: str
    strike: int
    step: str
    state: str
    documents_missing: list[str]
    next_events: list[str]


@dataclass
class Explanation:
    institution: str
    policy: str
    status: str
    window: tuple[date | None, date | None]
    strikes: int
    open_cases: list[CaseView] = field(default_factory=list)
    next_finding: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)

    def render(self) -> str:
        start, end = self.window
        span = f"{start} – {end}" if start and end else "no limit"
        out = [
            f"{self.institution} — policy {self.policy}, status {self.status}",
            f"strikes in the current window ({span}): {self.strikes}",
        ]
        if self.open_cases:
            out.append("open cases:")
            for c in self.open_cases:
                strike = f"strike {c.strike}, " if c.strike else ""
                out.append(f"  case {c.id}: {c.kind}, {strike}step {c.step}, state {c.state}")
                if c.documents_missing:
                    out.append(f"    documents missing: {', '.join(c.documents_missing)}")
                for line in c.next_events:
                    out.append(f"    next: {line}")
        else:
            out.append("open cases: none")
        for line in self.overdue:
            out.append(f"OVERDUE: {line}")
        out.append("on the next finding:")
        out.extend(f"  {line}" for line in self.next_finding)
        return "\n".join(out)


def explain(
    session: Session,
    institution: Institution,
    *,
    now: datetime | None = None,
    store: StoreArg = None,
) -> Explanation:
    when = as_utc(now) if now is not None else utcnow()
    policy = resolve_store(store).for_institution(institution)
    result = Explanation(
        institution=f"{institution.code} {institution.name}",
        policy=policy.name,
        status=str(institution.status),
        window=policy.window_for(institution, when),
        strikes=strikes_in_window(session, institution, policy, when),
    )
    cases = session.scalars(
        select(Case)
        .where(Case.institution_id == institution.id, Case.is_open.is_(True))
        .order_by(Case.id)
    ).all()
    for case in cases:
        present = documents_present(session, case)
        case_policy = resolve_store(store).load(case.policy)
        lines = []
        for event, t in allowed_events(case, case_policy).items():
            need = [d for d in t.requires_documents if d not in present]
            roles = "/".join(r.value for r in t.roles)
            wait = f" once {', '.join(need)} is filed" if need else ""
            lines.append(f"{event} by {roles}{wait} → {t.to} ({t.article})")
        result.open_cases.append(
            CaseView(
                id=case.id,
                kind=case.kind,
                strike=case.strike,
                step=case.step,
                state=case.state,
                documents_missing=[d for d in case.required_documents if d not in present],
                next_events=lines,
            )
        )
        overdue = session.scalars(
            select(Deadline).where(
                Deadline.case_id == case.id,
                Deadline.met_at.is_(None),
                Deadline.due_at <= when,
            )
        ).all()
        result.overdue += [f"case {case.id}: {d.description}" for d in overdue]

    strike_kinds = policy.detection.strike_kinds
    if strike_kinds:
        kinds = ", ".join(strike_kinds)
        joined = open_case_for(session, institution.id, policy, strike_kinds[0])
        n = result.strikes + 1
        step = policy.steps[policy.step_for_strike(n)]
        if joined is not None:
            result.next_finding.append(
                f"{kinds}: joins open case {joined.id} as evidence, no new strike "
                f"({policy.steps[joined.step].article})"
            )
            result.next_finding.append(
                f"  after case {joined.id} closes: strike {n} → {step.title} ({step.article})"
            )
        else:
            result.next_finding.append(f"{kinds}: strike {n} → {step.title} ({step.article})")
    by_step: dict[str, list[str]] = {}
    for kind, step_name in policy.kind_steps.items():
        joined = open_case_for(session, institution.id, policy, kind)
        if joined is not None:
            result.next_finding.append(f"{kind}: joins open case {joined.id} as evidence")
        else:
            by_step.setdefault(step_name, []).append(kind)
    for step_name, kinds_of_step in by_step.items():
        step = policy.steps[step_name]
        result.next_finding.append(f"{', '.join(kinds_of_step)}: {step.title} ({step.article})")
    if institution.status in policy.no_reconnect_statuses:
        result.next_finding.append(
            f"reconnection is refused while {institution.status.value} "
            f"({policy.no_reconnect_article})"
        )
    return result
