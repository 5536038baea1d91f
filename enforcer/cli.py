"""``edgewarden enforcement ...``: the kill switch, the queue, dry-run and the worker.

core's CLI discovers :func:`register` through the ``edgewarden.commands`` entry point; errors
are :class:`core.errors.EdgeWardenError` subclasses, printed as one line with exit code 2."""

from __future__ import annotations

import getpass
import logging
import signal
import threading
from typing import Annotated

import typer


def _me() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database
        return "cli"


ActorOpt = Annotated[str, typer.Option("--actor", help="who is acting (for the audit log)")]


def register(app: typer.Typer) -> None:
    """Add the ``enforcement`` group to the main app."""
    enf = typer.Typer(
        help="Enforcement: kill switch, action queue, dry-run, worker.", no_args_is_help=True
    )

    @enf.command("pause")
    def pause_cmd(
        reason: Annotated[str, typer.Option("--reason", help="why (audited)")],
        actor: ActorOpt = "",
    ) -> None:
        """Kill switch: stop all enforcement within a second, on every worker."""
        from core.db import session_scope
        from enforcer import control

        with session_scope() as s:
            status = control.pause(s, actor or _me(), reason)
        typer.echo(status.render())

    @enf.command("resume")
    def resume_cmd(
        reason: Annotated[str, typer.Option("--reason", help="why (audited)")] = "",
        actor: ActorOpt = "",
    ) -> None:
        """Lift the kill switch."""
        from core.db import session_scope
        from enforcer import control

        with session_scope() as s:
            status = control.resume(s, actor or _me(), reason)
        typer.echo(status.render())

    @enf.command("status")
    def status_cmd() -> None:
        """Kill switch, circuit breaker and queue counts."""
        from core.db import session_scope
        from enforcer import control

        with session_scope() as s:
            typer.echo(control.status(s).render())

    @enf.command("reset-breaker")
    def reset_breaker_cmd(
        reason: Annotated[str, typer.Option("--reason", help="why (audited)")],
        actor: ActorOpt = "",
    ) -> None:
        """Close the circuit breaker so automatic cuts may run again."""
        from core.db import session_scope
        from enforcer import control

        with session_scope() as s:
            typer.echo(control.reset_breaker(s, actor or _me(), reason).render())

    @enf.command("list")
    def list_cmd(
        state: Annotated[
            list[str] | None, typer.Option("--state", help="filter by state (repeatable)")
        ] = None,
        limit: Annotated[int, typer.Option(help="newest N")] = 50,
    ) -> None:
        """Actions, newest first: id, state, kind, mode, link, device, attempts, error."""
        from core.db import session_scope
        from core.errors import ValidationFailed
        from core.models import ActionState
        from enforcer import queue

        try:
            states = [ActionState(x) for x in state or []]
        except ValueError:
            raise ValidationFailed(
                f"unknown state in {state}: use {', '.join(s.value for s in ActionState)}"
            ) from None
        with session_scope() as s:
            rows = queue.list_actions(s, states or None, limit)
            typer.echo("id\tstate\tkind\tmode\tlink\tdevice\tattempts\tapproved_by\tlast_error")
            for a in rows:
                typer.echo(
                    f"{a.id}\t{a.state}\t{a.kind}\t{a.mode}\t{a.link_id}\t{a.device.name}\t"
                    f"{a.attempts}\t{a.approved_by or '-'}\t{a.last_error or ''}"
                )

    @enf.command("dry-run")
    def dry_run_cmd(action_id: Annotated[int, typer.Argument(help="action id")]) -> None:
        """Print the exact commands the action would send, without connecting."""
        from core.db import session_scope
        from enforcer import queue

        with session_scope() as s:
            for line in queue.dry_run(s, action_id):
                typer.echo(line)

    @enf.command("approve")
    def approve_cmd(
        action_id: Annotated[int, typer.Argument(help="action id")],
        actor: ActorOpt = "",
        reason: Annotated[str, typer.Option(help="why (audited)")] = "",
    ) -> None:
        """A person approves a proposed action."""
        from core.db import session_scope
        from enforcer import queue

        with session_scope() as s:
            action = queue.approve(s, action_id, actor or _me(), reason)
            typer.echo(f"action {action.id} approved by {action.approved_by}")

    @enf.command("cancel")
    def cancel_cmd(
        action_id: Annotated[int, typer.Argument(help="action id")],
        reason: Annotated[str, typer.Option("--reason", help="why (audited)")],
        actor: ActorOpt = "",
    ) -> None:
        """Withdraw an action that is not running."""
        from core.db import session_scope
        from enforcer import queue

        with session_scope() as s:
            queue.cancel(s, action_id, actor or _me(), reason)
            typer.echo(f"action {action_id} cancelled")

    @enf.command("retry")
    def retry_cmd(
        action_id: Annotated[int, typer.Argument(help="action id")],
        actor: ActorOpt = "",
        reason: Annotated[str, typer.Option(help="why (audited)")] = "",
    ) -> None:
        """Re-approve a failed action."""
        from core.db import session_scope
        from enforcer import queue

        with session_scope() as s:
            queue.retry(s, action_id, actor or _me(), reason)
            typer.echo(f"action {action_id} approved again")

    @enf.command("worker")
    def worker_cmd(
        name: Annotated[
            str | None, typer.Option(help="worker name (stable across restarts; default host)")
        ] = None,
        once: Annotated[bool, typer.Option(help="one pass, then exit")] = False,
    ) -> None:
        """Run the worker until SIGTERM/SIGINT; the in-flight action is finished if it
        already changed a device, else handed back."""
        from core import migrate
        from enforcer.worker import Worker

        logging.getLogger("enforcer").setLevel(logging.INFO)
        migrate.upgrade()
        worker = Worker(name=name)
        if once:
            report = worker.run_once()
            for o in report.reconciled + report.outcomes:
                typer.echo(f"action {o.action_id}: {o.state} ({o.detail})")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        typer.echo(f"enforcement worker {worker.name} running", err=True)
        worker.run(stop)

    app.add_typer(enf, name="enforcement")
