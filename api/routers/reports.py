"""The 24-hour summary report, the evidence pack and the monthly statistics.

Generating a report records a Report row and an audit entry; when a person who may act on
the case (city admin, or the county operator of its county) generates it, the case's
summary-report deadline is met. Read-only roles may read reports but meet no deadline."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from api.auth import SessionDep
from api.deps import IdPath, ReaderDep
from api.reports.pack import build_pack
from api.reports.render import MEDIA_TYPES, generate
from api.reports.stats import monthly, to_csv, to_xlsx
from api.routers.documents import scoped_case
from core.actors import Actor
from core.models import Role
from core.settings import get_settings

router = APIRouter(tags=["reports"])


def _may_meet(actor: Actor) -> bool:
    return actor.role in (Role.CITY_ADMIN, Role.COUNTY_OPERATOR)


@router.get("/cases/{case_id}/report", response_class=Response)
def case_report(
    case_id: IdPath,
    session: SessionDep,
    actor: ReaderDep,
    format: Annotated[Literal["md", "html", "pdf", "docx"], Query()] = "md",
) -> Response:
    case = scoped_case(session, actor, case_id)
    data, report = generate(
        session,
        case.id,
        format,
        actor=actor.name,
        settings=get_settings(),
        meets_deadline=_may_meet(actor),
    )
    return Response(
        data,
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="case-{case.id}-report.{format}"',
            "X-Report-Id": str(report.id),
            "X-Content-SHA256": report.sha256,
        },
    )


@router.get("/cases/{case_id}/pack", response_class=Response)
def case_pack(case_id: IdPath, session: SessionDep, actor: ReaderDep) -> Response:
    case = scoped_case(session, actor, case_id)
    data = build_pack(
        session,
        case.id,
        actor=actor.name,
        settings=get_settings(),
        meets_deadline=_may_meet(actor),
    )
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="case-{case.id}-evidence.zip"'},
    )


class CountyMonthOut(BaseModel):
    county_code: str
    county_name: str
    month: str
    violations: int
    strikes: int
    cuts: int
    reconnections: int
    reports_due: int
    overdue_reports: int


@router.get("/statistics", response_model=list[CountyMonthOut])
def statistics(
    session: SessionDep,
    actor: ReaderDep,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, Beijing time")],
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> object:
    rows = monthly(session, month, actor)
    if format == "json":
        return [CountyMonthOut(**r.__dict__) for r in rows]
    if format == "csv":
        return Response(
            to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="statistics-{month}.csv"'},
        )
    return Response(
        to_xlsx(rows),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="statistics-{month}.xlsx"'},
    )
