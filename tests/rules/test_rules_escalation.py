"""Table-driven escalation tests: each row is a story told to the engine and the state it must
end in, with the article it checks. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest

from core.models import ActionKind, ActionMode, ActionState, InstitutionStatus, Role
from rules.errors import TransitionRefused
from tests.rules.conftest import T0, World, days


@dataclass(frozen=True)
class Find:
    kind: str = "outbound_internet"
    at: datetime = T0
    corroborated: bool = True


@dataclass(frozen=True)
class Doc:
    kind: str


@dataclass(frozen=True)
class Act:
    event: str
    role: Role = Role.CITY_ADMIN
    in_scope: bool = True
    refused: str | None = None  # a part of the refusal message, when the engine must refuse


@dataclass(frozen=True)
class Renew:
    start: date
    end: date


@dataclass(frozen=True)
class Expect:
    strikes: list[int]  # strike of every case, oldest first
    step: str  # of the latest case
    state: str
    is_open: bool
    status: InstitutionStatus = InstitutionStatus.ACTIVE
    actions: list[tuple[ActionKind, ActionMode, ActionState]] = field(default_factory=list)
    detections_in_last_case: int | None = None


CUT_AUTO = (ActionKind.CUT, ActionMode.AUTO, ActionState.APPROVED)
CUT_APPROVE = (ActionKind.CUT, ActionMode.APPROVE, ActionState.PROPOSED)
RESTORE = (ActionKind.RESTORE, ActionMode.APPROVE, ActionState.APPROVED)

FIRST_HANDLED = [Find(), Doc("written_explanation"), Act("reconnect", Role.COUNTY_OPERATOR)]
SECOND_HANDLED = [
    *FIRST_HANDLED,
    Find(at=T0 + days(30)),
    Doc("rectification_report"),
    Act("reconnect"),
]
THIRD = [*SECOND_HANDLED, Find(at=T0 + days(60))]


@dataclass(frozen=True)
class Row:
    id: str
    article: str
    policy: str
    script: list[object]
    expect: Expect
    agreement: tuple[date, date] | None = (date(2025, 1, 1), date(2025, 12, 31))


ROWS = [
    Row(
        "first-finding",
        "Jincheng art. 14: first finding → cut at once and a written explanation",
        "jincheng",
        [Find()],
        Expect([1], "first_finding", "cut", True, actions=[CUT_AUTO]),
    ),
    Row(
        "first-finding-reconnected-by-county",
        "Jincheng art. 14 + art. 4: explanation filed, county approves reconnection",
        "jincheng",
        FIRST_HANDLED,
        Expect([1], "first_finding", "reconnected", False, actions=[CUT_AUTO, RESTORE]),
    ),
    Row(
        "second-finding",
        "Jincheng art. 14: second finding → cut and rectification",
        "jincheng",
        [*FIRST_HANDLED, Find(at=T0 + days(30))],
        Expect([1, 2], "second_finding", "cut", True, actions=[CUT_AUTO, RESTORE, CUT_AUTO]),
    ),
    Row(
        "second-reconnect-needs-city",
        "Jincheng art. 14: 整改完毕并得到市医疗保障局确认后方可再次接入 — county may not",
        "jincheng",
        [
            *FIRST_HANDLED,
            Find(at=T0 + days(30)),
            Doc("rectification_report"),
            Act("reconnect", Role.COUNTY_OPERATOR, refused="needs city_admin"),
            Act("reconnect", Role.CITY_ADMIN),
        ],
        Expect(
            [1, 2],
            "second_finding",
            "reconnected",
            False,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE],
        ),
    ),
    Row(
        "third-with-consequences",
        "Jincheng art. 14: third finding with bad consequences → terminate and blacklist",
        "jincheng",
        [*THIRD, Act("consequences_found")],
        Expect(
            [1, 2, 3],
            "third_finding",
            "blacklisted",
            False,
            status=InstitutionStatus.BLACKLISTED,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO],
        ),
    ),
    Row(
        "third-without-consequences",
        "Jincheng art. 14: third finding without bad consequences → as the second",
        "jincheng",
        [
            *THIRD,
            Act("no_consequences"),
            Act("reconnect", refused="rectification_report"),
            Doc("rectification_report"),
            Act("reconnect", Role.COUNTY_OPERATOR, refused="needs city_admin"),
            Act("reconnect"),
        ],
        Expect(
            [1, 2, 3],
            "second_finding",
            "reconnected",
            False,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO, RESTORE],
        ),
    ),
    Row(
        "third-determination-is-the-citys",
        "Jincheng art. 14: the city bureau determines bad consequences, not a county",
        "jincheng",
        [*THIRD, Act("consequences_found", Role.COUNTY_OPERATOR, refused="needs city_admin")],
        Expect(
            [1, 2, 3],
            "third_finding",
            "awaiting_determination",
            True,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO],
        ),
    ),
    Row(
        "detections-during-open-case",
        "Jincheng art. 14: one finding = one strike; later detections join the open case",
        "jincheng",
        [Find(), Find(at=T0 + days(1)), Find("dual_homed", at=T0 + days(2))],
        Expect([1], "first_finding", "cut", True, actions=[CUT_AUTO], detections_in_last_case=3),
    ),
    Row(
        "finding-after-the-window",
        "Jincheng art. 14: strikes count within the agreement year; a new year starts at 1",
        "jincheng",
        [
            *SECOND_HANDLED,
            Find(at=datetime(2026, 2, 1, tzinfo=UTC)),
        ],
        Expect(
            [1, 2, 1],
            "first_finding",
            "cut",
            True,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO],
        ),
    ),
    Row(
        "window-is-the-agreement-term",
        "Jincheng art. 14: the agreement year (Jul–Jun) spans calendar years; renewal resets",
        "jincheng",
        [
            Find(at=datetime(2025, 8, 1, tzinfo=UTC)),
            Doc("written_explanation"),
            Act("reconnect"),
            Find(at=datetime(2026, 3, 1, tzinfo=UTC)),  # same agreement year → strike 2
            Doc("rectification_report"),
            Act("reconnect"),
            Renew(date(2026, 7, 1), date(2027, 6, 30)),
            Find(at=datetime(2026, 8, 1, tzinfo=UTC)),  # new agreement → strike 1
        ],
        Expect(
            [1, 2, 1],
            "first_finding",
            "cut",
            True,
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO],
        ),
        agreement=(date(2025, 7, 1), date(2026, 6, 30)),
    ),
    Row(
        "reconnect-refused-without-document",
        "Jincheng art. 14: reconnect only after the written explanation is filed",
        "jincheng",
        [Find(), Act("reconnect", Role.COUNTY_OPERATOR, refused="written_explanation")],
        Expect([1], "first_finding", "cut", True, actions=[CUT_AUTO]),
    ),
    Row(
        "reconnect-refused-outside-county",
        "Jincheng art. 4, 14: a county bureau acts for its own area only (属地原则)",
        "jincheng",
        [
            Find(),
            Doc("written_explanation"),
            Act("reconnect", Role.COUNTY_OPERATOR, in_scope=False, refused="outside"),
            Act("reconnect", Role.VIEWER, refused="needs"),
        ],
        Expect([1], "first_finding", "cut", True, actions=[CUT_AUTO]),
    ),
    Row(
        "blacklisted-never-reconnected",
        "Jincheng art. 14: 终止其定点服务协议并纳入黑名单 — no later path reconnects",
        "jincheng",
        [
            *THIRD,
            Act("consequences_found"),
            Act("reconnect", refused="not an event"),
            Find(at=T0 + days(90)),
            Act("no_consequences"),
            Doc("rectification_report"),
            Act("reconnect", refused="never reconnected"),
        ],
        Expect(
            [1, 2, 3, 4],
            "second_finding",
            "cut",
            True,
            status=InstitutionStatus.BLACKLISTED,
            # the fourth finding asks for the cut again (the link must stay cut), never a restore
            actions=[CUT_AUTO, RESTORE, CUT_AUTO, RESTORE, CUT_AUTO, CUT_AUTO],
        ),
    ),
    Row(
        "uncorroborated-cut-waits-for-approval",
        "Jincheng art. 14 cut, DESIGN safety rails: auto only for corroborated evidence",
        "jincheng",
        [Find(corroborated=False)],
        Expect([1], "first_finding", "cut", True, actions=[CUT_APPROVE]),
    ),
    Row(
        "jilin-personal-data-leak-cut-at-once",
        "Jilin art. 35: 造成个人信息泄露的，应及时切断其与医保网络之间的连接",
        "jilin",
        [Find("personal_data_leak")],
        Expect([0], "incident", "cut", True, actions=[CUT_AUTO]),
    ),
    Row(
        "jilin-incident-summary-report",
        "Jilin art. 34, 36: handled with a record, closed only with the summary report",
        "jilin",
        [
            Find("security_incident"),
            Doc("incident_record"),
            Act("handled", Role.COUNTY_OPERATOR),
            Act("close", Role.COUNTY_OPERATOR, refused="summary_report"),
            Doc("summary_report"),
            Act("close", Role.COUNTY_OPERATOR),
        ],
        Expect([0], "incident", "closed", False, actions=[CUT_AUTO, RESTORE]),
    ),
    Row(
        "jilin-unsigned-revoked",
        "Jilin art. 10: 未签订协议的，医保经办机构应及时取消其网络权限",
        "jilin",
        [Find("unsigned")],
        Expect(
            [0], "revoke", "revoked", True, status=InstitutionStatus.REVOKED, actions=[CUT_APPROVE]
        ),
    ),
    Row(
        "jilin-no-strike-count",
        "Jilin art. 28, 39: no strike ladder; every finding is handled the same way",
        "jilin",
        [
            Find(corroborated=True),
            Doc("rectification_report"),
            Act("reconnect", Role.COUNTY_OPERATOR),
            Find(at=T0 + days(10)),
        ],
        Expect([0, 0], "violation", "open", True, actions=[CUT_APPROVE, RESTORE, CUT_APPROVE]),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_escalation(world: World, row: Row) -> None:
    """Each row cites its article in ``row.article``."""
    assert row.article
    inst = world.institution(row.policy, agreement=row.agreement)
    now = T0
    for op in row.script:
        if isinstance(op, Find):
            now = op.at
            assert world.find(inst, op.kind, at=op.at, corroborated=op.corroborated) is not None
        elif isinstance(op, Doc):
            world.doc(world.cases(inst)[-1], op.kind, at=now)
        elif isinstance(op, Renew):
            inst.agreement_start, inst.agreement_end = op.start, op.end
        elif isinstance(op, Act):
            case = world.cases(inst)[-1]
            before = world.counts()
            if op.refused is None:
                world.act(case, op.event, op.role, in_scope=op.in_scope, at=now)
            else:
                with pytest.raises(TransitionRefused, match=op.refused):
                    world.act(case, op.event, op.role, in_scope=op.in_scope, at=now)
                assert world.counts() == before, "a refused transition must change nothing"
        world.session.flush()

    cases = world.cases(inst)
    last = cases[-1]
    e = row.expect
    assert [c.strike for c in cases] == e.strikes
    assert (last.step, last.state, last.is_open) == (e.step, e.state, e.is_open)
    world.session.refresh(inst)
    assert inst.status == e.status
    assert [(a.kind, a.mode, a.state) for a in world.actions(inst)] == e.actions
    if e.detections_in_last_case is not None:
        dets = [d for d in last.events if d.detection_id is not None]
        assert len(dets) == e.detections_in_last_case
        assert [ev.event for ev in last.events] == ["open"] + ["evidence"] * (len(dets) - 1)
    world.session.commit()
