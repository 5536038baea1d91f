"""Monthly statistics per county for the inspections of Jincheng art. 4(4) / Jilin art. 4(4).

Counts per county (the institution's county) and month, in Beijing time:

- ``violations``: cases opened in the month (every kind but ``link_down``, which is a fault);
- ``strikes``: those of them that count as a strike (Jincheng art. 14);
- ``cuts`` / ``reconnections``: cut and restore actions verified on the device in the month;
- ``reports_due``: 24-hour summary-report deadlines falling in the month;
- ``overdue_reports``: of those, the ones met late or not met and already past due.

A county operator sees only its own counties (属地原则); a city-wide caller also gets a total."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.reports.context import REPORT_DEADLINE_KIND, ZONE
from core.actors import Actor
from core.errors import ValidationFailed
from core.models import (
    ActionKind,
    ActionState,
    Case,
    County,
    Deadline,
    EnforcementAction,
    Institution,
)
from core.timeutil import as_utc, utcnow

COLUMNS = (
    ("county_code", "县区代码"),
    ("county_name", "县区"),
    ("month", "月份"),
    ("violations", "违规案件数"),
    ("strikes", "计次违规数"),
    ("cuts", "断网次数"),
    ("reconnections", "恢复接入次数"),
    ("reports_due", "应交总结报告数"),
    ("overdue_reports", "逾期总结报告数"),
)


@dataclass
class CountyMonth:
    county_code: str
    county_name: str
    month: str
    violations: int = 0
    strikes: int = 0
    cuts: int = 0
    reconnections: int = 0
    reports_due: int = 0
    overdue_reports: int = 0


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → [start, end) as aware UTC, the month taken in Beijing time."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValidationFailed(f"month must be YYYY-MM, not {month!r}")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=ZONE)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=ZONE)
    return as_utc(start), as_utc(end)


def _scope(stmt: Any, actor: Actor) -> Any:
    if actor.city_wide:
        return stmt
    return stmt.where(County.code.in_(sorted(actor.county_codes)))


def monthly(
    session: Session, month: str, actor: Actor, *, now: datetime | None = None
) -> list[CountyMonth]:
    """One row per county the caller may see (zero rows included), plus a city total."""
    start, end = month_bounds(month)
    now = as_utc(now) if now is not None else utcnow()
    rows: dict[str, CountyMonth] = {}
    counties = session.execute(
        _scope(select(County.code, County.name).order_by(County.code), actor)
    ).all()
    for code, name in counties:
        rows[code] = CountyMonth(code, name, month)

    cases = session.execute(
        _scope(
            select(County.code, Case.kind, Case.counts)
            .join(Institution, Institution.id == Case.institution_id)
            .join(County, County.id == Institution.county_id)
            .where(Case.opened_at >= start, Case.opened_at < end),
            actor,
        )
    ).all()
    for code, kind, counts in cases:
        if kind == "link_down" or code not in rows:
            continue
        rows[code].violations += 1
        rows[code].strikes += int(bool(counts))

    actions = session.execute(
        _scope(
            select(County.code, EnforcementAction.kind)
            .join(Case, Case.id == EnforcementAction.case_id)
            .join(Institution, Institution.id == Case.institution_id)
            .join(County, County.id == Institution.county_id)
            .where(
                EnforcementAction.state == ActionState.VERIFIED,
                EnforcementAction.finished_at >= start,
                EnforcementAction.finished_at < end,
            ),
            actor,
        )
    ).all()
    for code, kind in actions:
        if code not in rows:
            continue
        if kind == ActionKind.CUT:
            rows[code].cuts += 1
        else:
            rows[code].reconnections += 1

    deadlines = session.execute(
        _scope(
            select(County.code, Deadline.due_at, Deadline.met_at)
            .join(Case, Case.id == Deadline.case_id)
            .join(Institution, Institution.id == Case.institution_id)
            .join(County, County.id == Institution.county_id)
            .where(
                Deadline.kind == REPORT_DEADLINE_KIND,
                Deadline.due_at >= start,
                Deadline.due_at < end,
            ),
            actor,
        )
    ).all()
    for code, due, met in deadlines:
        if code not in rows:
            continue
        rows[code].reports_due += 1
        late = as_utc(met) > as_utc(due) if met is not None else now > as_utc(due)
        rows[code].overdue_reports += int(late)

    out = list(rows.values())
    if actor.city_wide:
        total = CountyMonth("", "全市合计", month)
        for r in out:
            for name in (
                "violations",
                "strikes",
                "cuts",
                "reconnections",
                "reports_due",
                "overdue_reports",
            ):
                setattr(total, name, getattr(total, name) + getattr(r, name))
        out.append(total)
    return out


def to_csv(rows: list[CountyMonth]) -> bytes:
    """UTF-8 with a BOM, so Excel on a Chinese Windows opens it without mojibake."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([zh for _, zh in COLUMNS])
    for r in rows:
        d = asdict(r)
        writer.writerow([d[key] for key, _ in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(rows: list[CountyMonth]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = (rows[0].month if rows else "统计")[:31]
    ws.append([zh for _, zh in COLUMNS])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r in rows:
        d = asdict(r)
        ws.append([d[key] for key, _ in COLUMNS])
    for letter, width in zip("ABCDEFGHI", (12, 16, 10, 12, 12, 10, 14, 16, 16), strict=True):
        ws.column_dimensions[letter].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
