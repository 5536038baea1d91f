"""``edgewarden sweep``: one SNMP sweep now, a progress bar on a terminal (a plain line per
device otherwise, for logs), a per-device summary table, exit 1 if any device failed."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_STYLE = {"ok": "green", "partial": "yellow"}


def sweep(
    device: Annotated[
        list[str] | None,
        typer.Option("--device", "-d", help="only this device (repeatable); default: all enabled"),
    ] = None,
) -> None:
    """Run one SNMP sweep now and print a per-device summary (exit 1 if any device failed)."""
    from collector.snmp.sweep import DeviceResult, run_sweep
    from core.settings import get_settings

    out = Console(soft_wrap=True)
    if not out.is_terminal:  # logs and pipes: a table wide enough to read
        out = Console(soft_wrap=True, width=200)
    err = Console(stderr=True, soft_wrap=True)
    bar = Progress(
        TextColumn("SNMP sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        disable=not err.is_terminal,
    )
    task = bar.add_task("", total=None)

    def progress(res: DeviceResult, done: int, total: int) -> None:
        if err.is_terminal:
            bar.update(task, completed=done, total=total, description=f"{res.name} {res.status}")
        else:
            why = f" {res.error}" if res.error else ""
            err.print(
                f"{done}/{total} {res.name} {res.status} {res.varbinds} varbinds "
                f"{res.seconds:.2f}s{why}",
                markup=False,
                highlight=False,
            )

    settings = get_settings()
    with bar:
        result = asyncio.run(
            run_sweep(settings.database_url, device_names=device or None, progress=progress)
        )
    table = Table(title=f"sweep {result.sweep_id}: {result.status}")
    for col in (
        "device",
        "status",
        "sysName",
        "ifaces",
        "ARP",
        "routes",
        "varbinds",
        "obs",
        "detections",
        "s",
        "reason",
    ):
        table.add_column(col, overflow="fold")
    for r in result.devices:
        style = _STYLE.get(str(r.status), "red")
        table.add_row(
            r.name,
            f"[{style}]{r.status}[/]",
            r.sys_name or "",
            str(r.interfaces),
            str(r.arp_entries),
            str(r.routes),
            str(r.varbinds),
            str(r.observations),
            str(r.detections),
            f"{r.seconds:.2f}",
            r.error or "",
        )
    out.print(table)
    ok = len(result.devices) - len(result.failed)
    out.print(
        f"{ok}/{len(result.devices)} devices ok, {result.varbinds} varbinds, "
        f"{result.observations} observations, {result.detections} new detections, "
        f"{result.wall_seconds:.1f} s",
        markup=False,
        highlight=False,
    )
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
