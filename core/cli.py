"""The `edgewarden` command. Core's own commands live here; every other package adds its
group through the ``edgewarden.commands`` entry point (so core imports nothing of ours)."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import EdgeWardenError, ValidationFailed
from core.models import Role

app = typer.Typer(
    name="edgewarden",
    help="Edge Warden: watch the medical-insurance backbone's edge and enforce its access rules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
inventory_app = typer.Typer(help="Inventory import and export (CSV or YAML).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(inventory_app, name="inventory")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def progress_bar(console: Console | None = None) -> Progress:
    """A progress bar that stays readable in a plain log (no live redraw without a tty)."""
    console = console or err
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from core import migrate

    migrate.upgrade(None, revision)
    out.print(f"database at revision {migrate.current_revision()}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the database)."""
    from core import migrate

    migrate.downgrade(None, revision)
    out.print(f"database at revision {migrate.current_revision()}")


@app.command("secret-key")
def secret_key() -> None:
    """Print a new key for EDGEWARDEN_SECRET_KEY."""
    from core.crypto import generate_key

    print(generate_key())


def _ensure_schema() -> None:
    from core import migrate

    migrate.upgrade()


@inventory_app.command("import")
def inventory_import(
    file: Annotated[Path, typer.Argument(help="YAML (.yaml/.yml) or CSV (.csv) file")],
    actor: Annotated[str, typer.Option(help="who is importing, for the audit log")] = "cli",
) -> None:
    """Validate FILE and import it; any bad row means nothing is written."""
    from core.db import session_scope
    from core.inventory import import_file
    from core.inventory.fileio import read_file

    _ensure_schema()
    total = len(read_file(file))
    with progress_bar() as bar, session_scope() as session:
        task = bar.add_task(f"importing {file.name}", total=total * 2)
        result = import_file(session, file, actor=actor, progress=lambda n: bar.advance(task, n))
    created = ", ".join(f"{k} {v}" for k, v in result.created.items()) or "nothing"
    updated = ", ".join(f"{k} {v}" for k, v in result.updated.items()) or "nothing"
    out.print(f"imported {result.rows} rows from {file}: created {created}; updated {updated}")


@inventory_app.command("export")
def inventory_export(
    fmt: Annotated[str, typer.Option("--format", help="yaml or csv")] = "yaml",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
) -> None:
    """Write the inventory; secrets appear only as encrypted `enc:` tokens."""
    from core.db import session_scope
    from core.inventory import export_text

    if fmt not in ("yaml", "csv"):
        raise ValidationFailed(f"unknown format {fmt!r}: use yaml or csv")
    _ensure_schema()
    with session_scope() as session:
        text = export_text(session, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="viewer, county_operator, city_admin or auditor")],
    county: Annotated[list[str] | None, typer.Option(help="county code (repeatable)")] = None,
    name: Annotated[str | None, typer.Option(help="user name (default: generated)")] = None,
) -> None:
    """Create a token; it is printed once, alone on the last line, and only its hash is kept."""
    from core.db import session_scope
    from core.tokens import create_token

    _ensure_schema()
    with session_scope() as session:
        user, token = create_token(session, role=role, counties=county or [], name=name)
        out.print(f"token for {user.name} (role {role.value}); it is shown only once:")
    print(token)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit chain; exit 1 naming the first bad entry if it was tampered with."""
    from core.audit import verify
    from core.db import session_scope

    with session_scope() as session:
        result = verify(session)
    if result.ok:
        out.print(f"audit chain intact: {result.checked} entries")
        return
    err.print(f"audit chain BROKEN at entry {result.first_bad_id}: {result.problem}")
    raise typer.Exit(1)


def _load_plugins() -> None:
    for ep in entry_points(group="edgewarden.commands"):
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            # A package that has no commands yet; not an error.
            if exc.name and exc.name.startswith(ep.value.split(":")[0].split(".")[0]):
                continue
            raise
        register(app)


def main() -> None:
    """Entry point: operator-facing errors become one line and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _load_plugins()
        app()
    except ValidationFailed as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        sys.exit(2)
    except EdgeWardenError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
