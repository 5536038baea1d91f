"""``edgewarden policy ...``: validate a policy file, explain an institution's standing.

core's CLI discovers :func:`register` through the ``edgewarden.commands`` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from core.errors import EdgeWardenError
from rules.errors import PolicyError


def register(app: typer.Typer) -> None:
    """Add the ``policy`` group to the main app."""
    policy_app = typer.Typer(
        help="Escalation policies (rules/policies/*.yaml).", no_args_is_help=True
    )

    @policy_app.command("check")
    def check(
        file: Annotated[Path, typer.Argument(help="a policy YAML file")],
    ) -> None:
        """Validate FILE and print a readable summary of the policy."""
        from rules.explain import describe_policy
        from rules.policy import load_policy_file

        try:
            policy = load_policy_file(file)
        except PolicyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(describe_policy(policy))
        typer.echo(f"\n{file}: OK")

    @policy_app.command("explain")
    def explain_cmd(
        institution: Annotated[str, typer.Argument(help="national 医保 code, e.g. H14050200001")],
    ) -> None:
        """Strikes, open cases, and what the next finding would do and why (with articles)."""
        from core.db import session_scope
        from core.models import Institution
        from rules.explain import explain

        try:
            with session_scope() as session:
                inst = session.scalar(select(Institution).where(Institution.code == institution))
                if inst is None:
                    typer.echo(f"error: no institution with code {institution!r}", err=True)
                    raise typer.Exit(1)
                typer.echo(explain(session, inst).render())
        except EdgeWardenError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    @policy_app.command("list")
    def list_cmd() -> None:
        """The policies found (EDGEWARDEN_POLICY_DIRS, then the built-in ones)."""
        from rules.policy import default_store

        store = default_store()
        for name in store.names():
            typer.echo(f"{name}\t{store.path_of(name)}")

    app.add_typer(policy_app, name="policy")
