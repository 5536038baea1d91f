"""The collector's sub-commands (``edgewarden flows ...``), registered through the
``edgewarden.commands`` entry point so core's CLI imports nothing of ours."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from collector.snmp import cli as snmp_cli

flows_app = typer.Typer(help="NetFlow v5/v9/IPFIX tools.", no_args_is_help=True)

_BATCH = 2048


@flows_app.command("decode")
def decode(
    file: Annotated[Path, typer.Argument(help="pcap or pcapng of NetFlow/IPFIX datagrams")],
    port: Annotated[
        list[int] | None,
        typer.Option("--port", "-p", help="only UDP datagrams to this port (repeatable)"),
    ] = None,
) -> None:
    """Print one JSON object per flow record (times are UTC epoch milliseconds).

    Templates are learned from the capture itself; data that precedes its template in the
    capture is held and decoded once the template appears. A summary goes to stderr."""
    from collector.netflow.decoder import Decoder
    from collector.netflow.pcap import PcapError, PcapStats, read_udp

    if not file.is_file():
        typer.echo(f"error: {file}: no such file", err=True)
        raise typer.Exit(2)
    ports = set(port or ())
    decoder = Decoder()
    pstats = PcapStats()
    count = 0
    out = sys.stdout
    pending: list[tuple[bytes, str]] = []

    def flush() -> int:
        batch = decoder.decode(pending)
        pending.clear()
        for rec in batch.iter_dicts():
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return len(batch)

    try:
        for dgram in read_udp(file, pstats):
            if ports and dgram.dst_port not in ports:
                continue
            pending.append((dgram.payload, dgram.src))
            if len(pending) >= _BATCH:
                count += flush()
        count += flush()
    except PcapError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except BrokenPipeError:  # `| head` closed the pipe
        return
    stats = decoder.stats
    summary = {
        "packets": pstats.packets,
        "udp_datagrams": pstats.udp,
        "records": count,
        "decode_errors": dict(stats.errors),
        "template_misses": stats.template_misses,
        "undecoded_sets": decoder.pending_sets(),
        "sequence_gaps": sum(stats.sequence_gaps.values()),
    }
    typer.echo(json.dumps(summary), err=True)


def register(app: typer.Typer) -> None:
    """Entry point for core's CLI: adds the ``flows`` group and ``sweep``."""
    app.add_typer(flows_app, name="flows")
    snmp_cli.register(app)
