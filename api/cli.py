"""`edgewarden serve`."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option(help="listen address")] = None,
        port: Annotated[int | None, typer.Option(help="listen port")] = None,
    ) -> None:
        """Run the REST API (more roles join as they land); migrations run at start."""
        import uvicorn

        from api.app import create_app
        from core import migrate
        from core.crypto import secret_box
        from core.settings import get_settings

        settings = get_settings()
        secret_box(settings)  # refuse to start without a key: device secrets need it
        migrate.upgrade()
        uvicorn.run(
            create_app(),
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=settings.log_level.lower(),
        )
