"""`edgewarden demo` (the README's first command) and `edgewarden lab up`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        keep: Annotated[
            bool, typer.Option(help="leave the lab and the service running for the browser")
        ] = False,
        workdir: Annotated[
            Path | None, typer.Option(help="keep the database, logs and report here")
        ] = None,
        timeout: Annotated[float, typer.Option(help="seconds each step may take")] = 90.0,
    ) -> None:
        """Play the Jincheng three-strike story on a simulated edge, end to end."""
        from lab.demo import run

        raise typer.Exit(run(workdir, keep, timeout))
