"""`edgewarden serve`: the API, the NetFlow listeners, the enforcement worker and the scheduler
in one process (the embedded default), or the roles named by ``--only``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option(help="API listen address")] = None,
        port: Annotated[int | None, typer.Option(help="API listen port")] = None,
        only: Annotated[
            list[str] | None,
            typer.Option(
                help="run only these roles: api, collector, worker, scheduler "
                "(repeat, or a comma list); default: all",
                show_default=False,
            ),
        ] = None,
        collector: Annotated[
            bool, typer.Option(help="also run the NetFlow/IPFIX listeners (without --only)")
        ] = True,
    ) -> None:
        """Run the service; migrations run at start. SIGTERM/SIGINT stop it gracefully."""
        from api import logs
        from api.service import parse_roles, run_service
        from core import migrate
        from core.crypto import secret_box
        from core.settings import get_settings

        settings = get_settings()
        try:
            roles = parse_roles(only, settings)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--only") from None
        if not only and not collector:
            roles.remove("collector")
        secret_box(settings)  # refuse to start without a key: device secrets need it
        logs.configure(settings)
        migrate.upgrade()
        code = asyncio.run(
            run_service(
                roles,
                settings,
                settings.database_url,
                host or settings.api_host,
                port or settings.api_port,
            )
        )
        raise typer.Exit(code)
