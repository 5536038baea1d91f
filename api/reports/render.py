"""Render the summary report as Markdown, HTML, PDF or DOCX, and record what was generated.

PDF goes HTML → WeasyPrint (pango renders the Noto CJK OpenType fonts of Debian's
``fonts-noto-cjk``, which reportlab cannot); DOCX is built with python-docx from the same
context, so every format carries the same figures. Each generated file is stored
content-addressed under ``reports_dir``, gets a ``Report`` row with its SHA-256 and an audit
entry, and — when a person who may act on the case generates it — meets the case's 24-hour
report deadline (Jincheng art. 17: the deadline starts when handling ends)."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Literal

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.reports.context import REPORT_DEADLINE_KIND, ReportContext, gather
from core import audit
from core.documents import BlobStore
from core.errors import ValidationFailed
from core.models import Deadline, Report
from core.settings import Settings
from core.timeutil import as_utc, utcnow

Format = Literal["md", "html", "pdf", "docx"]
FORMATS: tuple[Format, ...] = ("md", "html", "pdf", "docx")
MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
CJK_FONT = "Noto Sans CJK SC"

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html.j2"]),
    trim_blocks=False,
    keep_trailing_newline=True,
)
_env.filters["md"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")


def check_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise ValidationFailed(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def render_markdown(ctx: ReportContext) -> str:
    return _env.get_template("report.md.j2").render(r=ctx)


def render_html(ctx: ReportContext) -> str:
    return _env.get_template("report.html.j2").render(r=ctx)


def render_pdf(ctx: ReportContext) -> bytes:
    from weasyprint import HTML  # imported late: pango loads in ~0.3 s

    pdf: bytes = HTML(string=render_html(ctx)).write_pdf()
    return pdf


def render_docx(ctx: ReportContext) -> bytes:
    from docx import Document as Docx
    from docx.oxml.ns import qn
    from docx.shared import Pt

    doc = Docx()
    for style_name in ("Normal", "Heading 1", "Heading 2", "Heading 3", "Title"):
        style = doc.styles[style_name]
        style.font.name = CJK_FONT
        rpr = style.element.get_or_add_rPr()
        rpr.get_or_add_rFonts().set(qn("w:eastAsia"), CJK_FONT)
    doc.styles["Normal"].font.size = Pt(10)

    def table(header: list[str], rows: list[list[object]]) -> None:
        t = doc.add_table(rows=1, cols=len(header))
        t.style = "Table Grid"
        for cell, text in zip(t.rows[0].cells, header, strict=True):
            cell.text = text
        for row in rows:
            cells = t.add_row().cells
            for cell, value in zip(cells, row, strict=True):
                cell.text = str(value)

    doc.add_heading(ctx.title, level=0)
    c, i, d = ctx.case, ctx.institution, ctx.deadline
    table(
        ["项目", "内容"],
        [
            ["案件编号", c["id"]],
            ["适用规程", c["policy"]],
            ["违规类型", f"{c['kind_zh']}（{c['kind']}）"],
            ["第几次发现", f"第{c['strike']}次"],
            ["案件状态", c["state"] + ("" if c["is_open"] else "（已结案）")],
            ["定点医药机构", f"{i['name']}（{i['code']}）"],
            ["所属县区", f"{i['county_name']}（{i['county_code']}）"],
            ["立案时间", c["opened_at"]],
            ["处置结束时间", c["handling_ended_at"]],
            ["报告生成时间", f"{ctx.generated_local}（{ctx.generated_by}）"],
            ["24小时报告期限", f"{d['due']}：{d['text']}"],
        ],
    )

    doc.add_heading("一、事件起因", level=1)
    doc.add_paragraph(
        f"{i['name']}（{i['code']}）被发现{c['kind_zh']}，为本协议期内第{c['strike']}次发现。证据如下。"
    )
    doc.add_heading("检测记录", level=2)
    table(
        ["检测", "时间", "类型", "来源", "已佐证", "证据"],
        [
            [r["id"], r["at"], r["kind_zh"], r["source"], r["corroborated"], r["evidence"]]
            for r in ctx.detections
        ],
    )
    doc.add_heading("流量与观测记录", level=2)
    if ctx.observations:
        table(
            ["源地址", "目的地址", "端口", "协议", "流数", "字节数", "首次", "末次"],
            [
                [
                    o["src"],
                    o["dst"],
                    o["port"],
                    o["protocol"],
                    o["flows"],
                    o["octets"],
                    o["first"],
                    o["last"],
                ]
                for o in ctx.observations
            ],
        )
    else:
        doc.add_paragraph("无流量观测记录。")
    doc.add_heading("ARP 表项", level=2)
    if ctx.arp:
        table(
            ["IP 地址", "MAC 地址", "链路", "首次", "末次", "在线"],
            [[a["ip"], a["mac"], a["link"], a["first"], a["last"], a["active"]] for a in ctx.arp],
        )
    else:
        doc.add_paragraph("无 ARP 记录。")
    doc.add_heading("主动探测命中", level=2)
    if ctx.probe_hits:
        for p in ctx.probe_hits:
            doc.add_paragraph(f"检测 {p['id']}，{p['at']}：{p['evidence']}", style="List Bullet")
    else:
        doc.add_paragraph("无探测命中。")

    doc.add_heading("二、处置过程", level=1)
    table(["时间", "类别", "经过"], [[t.at_local, t.category, t.text] for t in ctx.timeline])

    doc.add_heading("三、影响范围", level=1)
    links = "；".join(f"{ln['name']}（{ln['kind']}，当前 {ln['state']}）" for ln in ctx.links)
    for line in (
        f"机构：{i['name']}（{i['code']}），{i['county_name']}（{i['county_code']}），"
        f"当前状态 {i['status']}",
        f"链路：{links or '无'}",
        f"断网时长合计：{ctx.total_cut_text}",
        *(f"{cut.link}：{cut.text}" for cut in ctx.cuts),
        f"涉及终端：{'、'.join(ctx.terminals) or '无'}",
        f"涉及 IP：{'、'.join(ctx.ips) or '无'}",
    ):
        doc.add_paragraph(line, style="List Bullet")

    doc.add_heading("四、整改措施", level=1)
    rem = ctx.remediation
    if rem["rectification"]:
        names = "；".join(
            f"《{r['filename']}》（文书 {r['id']}，{r['at']}，SHA-256 {r['sha256'][:16]}…）"
            for r in rem["rectification"]
        )
        doc.add_paragraph(f"已收到整改报告：{names}。")
    else:
        doc.add_paragraph("尚未收到整改报告。")
    if rem["explanation"]:
        names = "；".join(f"《{r['filename']}》（文书 {r['id']}）" for r in rem["explanation"])
        doc.add_paragraph(f"已收到书面情况说明：{names}。")
    doc.add_paragraph(
        f"整改措施说明：{rem['text']}" if rem["text"] else "经办人尚未填写整改措施说明。"
    )

    doc.add_heading("附：已归档文书", level=1)
    table(
        ["文书", "类型", "文件名", "SHA-256", "上传人", "时间"],
        [
            [r["id"], r["kind_zh"], r["filename"], r["sha256"], r["uploaded_by"], r["at"]]
            for r in ctx.documents
        ],
    )
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def render(ctx: ReportContext, fmt: Format) -> bytes:
    if fmt == "md":
        return render_markdown(ctx).encode("utf-8")
    if fmt == "html":
        return render_html(ctx).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(ctx)
    return render_docx(ctx)


def meet_report_deadline(session: Session, case_id: int, *, actor: str, at: datetime) -> bool:
    """Mark the case's open summary-report deadline met; True if one was open."""
    deadline = session.scalars(
        select(Deadline).where(
            Deadline.case_id == case_id,
            Deadline.kind == REPORT_DEADLINE_KIND,
            Deadline.met_at.is_(None),
        )
    ).first()
    if deadline is None:
        return False
    deadline.met_at = at
    late = at > as_utc(deadline.due_at)
    audit.record(
        session,
        actor=actor,
        action="deadline.met",
        object_type="deadline",
        object_id=deadline.id,
        reason=f"summary report generated{' after the deadline' if late else ''}",
        data={"case": case_id, "kind": REPORT_DEADLINE_KIND, "late": late},
    )
    return True


def generate(
    session: Session,
    case_id: int,
    fmt: str,
    *,
    actor: str,
    settings: Settings,
    meets_deadline: bool = True,
    now: datetime | None = None,
) -> tuple[bytes, Report]:
    """Render the report for ``case_id``, store it, and record a Report row and its audit.

    ``meets_deadline``: False for read-only roles, whose reading is not the county's report."""
    fmt = check_format(fmt)
    when = as_utc(now) if now is not None else utcnow()
    if meets_deadline:
        meet_report_deadline(session, case_id, actor=actor, at=when)
    ctx = gather(session, case_id, actor=actor, now=when)
    data = render(ctx, fmt)
    sha, path = BlobStore(Path(settings.reports_dir)).put(data)
    report = Report(
        case_id=case_id,
        format=fmt,
        sha256=sha,
        path=str(path),
        generated_by=actor,
        generated_at=when,
    )
    session.add(report)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="report.generated",
        object_type="report",
        object_id=report.id,
        reason=f"24-hour summary report of case {case_id} ({fmt})",
        data={"case": case_id, "format": fmt, "sha256": sha, "size": len(data)},
    )
    return data, report
