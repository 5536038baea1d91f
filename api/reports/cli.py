"""``edgewarden report|document|pack|stats``: the paper trail from the command line.

core's CLI discovers :func:`register` through the ``edgewarden.commands`` entry point. The
CLI acts as the system actor ``cli`` (the operator at the NOC console, city authority)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

CLI_ACTOR = "cli"


def _write(data: bytes, output: Path | None, default_name: str) -> None:
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        return
    path = output or Path(default_name)
    path.write_bytes(data)
    typer.echo(f"wrote {path} ({len(data)} bytes)", err=True)


def register(app: typer.Typer) -> None:
    """Add ``report``, ``document``, ``pack`` and ``stats`` to the main app."""

    @app.command("report")
    def report(
        case_id: Annotated[int, typer.Argument(help="case id")],
        fmt: Annotated[str, typer.Option("--format", help="md, html, pdf or docx")] = "md",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="file, or - for stdout")
        ] = None,
    ) -> None:
        """The 24-hour summary report of a case (Jincheng art. 17, Jilin art. 36)."""
        from api.reports.render import check_format, generate
        from core.db import session_scope
        from core.settings import get_settings

        fmt = check_format(fmt)
        with session_scope() as session:
            data, rep = generate(session, case_id, fmt, actor=CLI_ACTOR, settings=get_settings())
        if output is None and fmt == "md":
            output = Path("-")
        _write(data, output, f"case-{case_id}-report.{fmt}")
        typer.echo(f"report {rep.id} sha256 {rep.sha256}", err=True)

    document_app = typer.Typer(help="Documents filed on a case.", no_args_is_help=True)

    @document_app.command("upload")
    def upload(
        case_id: Annotated[int, typer.Argument(help="case id")],
        file: Annotated[Path, typer.Argument(help="PDF, DOCX, PNG or JPEG")],
        kind: Annotated[str, typer.Option(help="e.g. written_explanation, rectification_report")],
        note: Annotated[str, typer.Option(help="a note for the file")] = "",
        actor: Annotated[str, typer.Option(help="who files it, for the audit log")] = CLI_ACTOR,
    ) -> None:
        """File a document on a case; it is stored by SHA-256 and never replaced."""
        from api.reports.context import allowed_document_kinds
        from core.db import session_scope
        from core.documents import add_document
        from core.errors import NotFound
        from core.models import Case
        from core.settings import get_settings

        data = file.read_bytes()
        with session_scope() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            doc = add_document(
                session,
                case=case,
                kind=kind,
                filename=file.name,
                data=data,
                actor=actor,
                settings=get_settings(),
                allowed_kinds=allowed_document_kinds(case),
                note=note,
            )
            typer.echo(f"document {doc.id} ({doc.kind}, {doc.content_type}) sha256 {doc.sha256}")

    app.add_typer(document_app, name="document")

    @app.command("pack")
    def pack(
        target: Annotated[str, typer.Argument(help="CASE_ID, or the word verify")],
        zip_file: Annotated[Path | None, typer.Argument(help="with verify: the ZIP")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="ZIP file")] = None,
    ) -> None:
        """`pack CASE_ID` writes the evidence ZIP; `pack verify ZIP` checks one (exit 1 if not)."""
        from api.reports.pack import build_pack, verify_pack
        from core.db import session_scope
        from core.errors import ValidationFailed
        from core.settings import get_settings

        if target == "verify":
            if zip_file is None:
                raise ValidationFailed("usage: edgewarden pack verify ZIP")
            check = verify_pack(zip_file)
            if check.ok:
                typer.echo(
                    f"pack OK: {check.files} files and {check.audit_entries} audit entries "
                    f"verify; manifest sha256 {check.manifest_sha256}"
                )
                return
            typer.echo(f"pack does NOT verify ({len(check.problems)} problems):", err=True)
            for problem in check.problems:
                typer.echo(f"  {problem}", err=True)
            raise typer.Exit(1)
        if not target.isdigit():
            raise ValidationFailed(f"{target!r} is not a case id (or use: pack verify ZIP)")
        case_id = int(target)
        with session_scope() as session:
            data = build_pack(session, case_id, actor=CLI_ACTOR, settings=get_settings())
        _write(data, output, f"case-{case_id}-evidence.zip")

    @app.command("stats")
    def stats(
        month: Annotated[str, typer.Option(help="YYYY-MM (Beijing time)")],
        fmt: Annotated[str, typer.Option("--format", help="csv or xlsx")] = "csv",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="file, or - for stdout")
        ] = None,
    ) -> None:
        """Violations, cuts, reconnections and overdue reports per county for one month."""
        from api.reports.stats import monthly, to_csv, to_xlsx
        from core.actors import Actor
        from core.db import session_scope
        from core.errors import ValidationFailed

        if fmt not in ("csv", "xlsx"):
            raise ValidationFailed(f"unknown format {fmt!r}: use csv or xlsx")
        with session_scope() as session:
            rows = monthly(session, month, Actor.system(CLI_ACTOR))
        data = to_csv(rows) if fmt == "csv" else to_xlsx(rows)
        if output is None and fmt == "csv":
            output = Path("-")
        _write(data, output, f"statistics-{month}.{fmt}")
