"""The one small interface every vendor driver implements.

A driver renders the command templates of its device type (``enforcer/templates/<type>/``),
runs them over a netmiko connection with its vendor's error pattern, and reads the device's
answer to decide whether the action took effect. Drivers hold no state and no secrets; the
caller owns the connection (one SSH session per device at a time)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from netmiko import BaseConnection, ConnectHandler
from netmiko.exceptions import ConfigInvalidException

from core.models import ActionKind
from enforcer.channel import exchange, prompt_patterns, read_until
from enforcer.errors import CommandRejected
from enforcer.targets import BLOCK_PREFIXES, SHUTDOWN_INTERFACE, Target, interface_aliases

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SAFE_LINE = re.compile(r"^[\x20-\x7e]+$")
# Device terminals wrap at 80 columns, which breaks netmiko's command-echo check.
MAX_LINE = 79


@dataclass(frozen=True)
class Verdict:
    """What a read of the device says about the target: ``ok`` means it is in the wanted
    state; ``detail`` says why not in words an operator can act on."""

    ok: bool
    detail: str
    output: str = ""


@dataclass(frozen=True)
class Batch:
    """Commands sent together and what the device answered."""

    label: str
    commands: list[str]
    output: str


class Driver:
    """Base driver: rendering and parsing shared by CLI-style vendors.

    Subclasses set ``device_type`` (the netmiko device type and template folder),
    ``error_pattern`` and ``admin_down`` (how ``display interface brief`` marks an
    administratively-down interface); a vendor whose output differs overrides a parser."""

    device_type: ClassVar[str]
    error_pattern: ClassVar[str]
    needs_enable: ClassVar[bool] = False
    needs_save: ClassVar[bool] = True

    def __init__(self) -> None:
        folder = TEMPLATES / self.device_type
        if not folder.is_dir():
            raise FileNotFoundError(f"no template folder {folder}")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            keep_trailing_newline=False,
        )

    # --- rendering ------------------------------------------------------------------------

    def _render(self, name: str, target: Target, **extra: Any) -> list[str]:
        context: dict[str, Any] = {
            "interface": target.interface,
            "prefixes": target.prefix_objects(),
            "institution": target.institution,
            **extra,
        }
        text = self._env.get_template(name).render(**context)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        for line in lines:
            if not _SAFE_LINE.match(line):  # pragma: no cover - targets are validated first
                raise ValueError(f"template {name} rendered an unsafe line {line!r}")
            if len(line) > MAX_LINE:  # pragma: no cover - names are length-checked first
                raise ValueError(f"template {name} rendered a line over {MAX_LINE} columns")
        return lines

    def render(self, kind: ActionKind, target: Target) -> list[str]:
        """The configuration commands that carry out ``kind`` on ``target``."""
        return self._render(f"{kind}_{target.method}.j2", target)

    def backup_commands(self, target: Target) -> list[str]:
        return self._render(f"backup_{target.method}.j2", target)

    def verify_commands(self, target: Target) -> list[str]:
        return self._render(f"verify_{target.method}.j2", target)

    def rollback_commands(self, target: Target, backup: str, current: str) -> list[str]:
        """Commands that put back the state the backup showed, given what the device shows
        now (both read with the backup commands); empty when nothing changed."""
        if target.method == SHUTDOWN_INTERFACE:
            was = self.config_shutdown(backup)
            if was == self.config_shutdown(current):
                return []
            return self._render("rollback_shutdown_interface.j2", target, was_shutdown=was)
        before, now = self.blackholes(backup), self.blackholes(current)
        wanted = target.prefix_objects()
        add = [p for p in wanted if p.cidr in before and p.cidr not in now]
        remove = [p for p in wanted if p.cidr in now and p.cidr not in before]
        if not add and not remove:
            return []
        return self._render("rollback_block_prefixes.j2", target, add=add, remove=remove)

    # --- parsing --------------------------------------------------------------------------

    def has_error(self, output: str) -> str | None:
        match = re.search(self.error_pattern, output, flags=re.M)
        return match.group(0).strip() if match else None

    @staticmethod
    def config_shutdown(config: str) -> bool:
        """Whether an interface's configuration block holds a bare ``shutdown`` line."""
        return any(line.strip() == "shutdown" for line in config.splitlines())

    def admin_down(self, brief: str, interface: str) -> bool | None:
        """From ``display interface brief``: True/False, or None if the interface is absent."""
        aliases = interface_aliases(interface)
        for line in brief.splitlines():
            fields = line.split()
            if len(fields) < 2:
                continue
            name = re.sub(r"\(.*\)$", "", fields[0]).lower()
            if name in aliases:
                return self.brief_is_admin_down(fields)
        return None

    def brief_is_admin_down(self, fields: list[str]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def blackholes(config: str) -> set[str]:
        """CIDRs of static routes to NULL0 in ``config`` (any vendor's spelling)."""
        found: set[str] = set()
        for line in config.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] not in ("ip", "ipv6"):
                continue
            if words[1] not in ("route-static", "route"):
                continue
            rest = words[2:]
            try:
                if "/" in rest[0]:
                    net = ipaddress.ip_network(rest[0], strict=False)
                    hop = rest[1] if len(rest) > 1 else ""
                else:
                    net = ipaddress.ip_network(f"{rest[0]}/{rest[1]}", strict=False)
                    hop = rest[2] if len(rest) > 2 else ""
            except (ValueError, IndexError):
                continue
            if hop.lower() == "null0":
                found.add(str(net))
        return found

    def check(self, kind: ActionKind, target: Target, output: str) -> Verdict:
        """Judge the verification output: cut means admin down / all prefixes blackholed,
        restore means the opposite. Anything unreadable is a failure, never a success."""
        error = self.has_error(output)
        if error:
            return Verdict(False, f"the verification command was refused: {error}", output)
        want_cut = kind == ActionKind.CUT
        if target.method == BLOCK_PREFIXES:
            present = self.blackholes(output)
            wanted = {p.cidr for p in target.prefix_objects()}
            if want_cut:
                missing = sorted(wanted - present)
                if missing:
                    return Verdict(False, f"blackhole routes missing for {missing}", output)
                return Verdict(True, f"blackhole routes present for {sorted(wanted)}", output)
            left = sorted(wanted & present)
            if left:
                return Verdict(False, f"blackhole routes still present for {left}", output)
            return Verdict(True, f"no blackhole routes for {sorted(wanted)}", output)
        assert target.interface is not None
        down = self.interface_state(output, target.interface)
        if down is None:
            return Verdict(False, f"{target.interface} does not appear in the output", output)
        if want_cut:
            if down:
                return Verdict(True, f"{target.interface} is administratively down", output)
            return Verdict(False, f"{target.interface} is still up after shutdown", output)
        if down:
            return Verdict(False, f"{target.interface} is still administratively down", output)
        return Verdict(True, f"{target.interface} is no longer administratively down", output)

    def interface_state(self, output: str, interface: str) -> bool | None:
        """Admin-down state from the verification output (brief table by default)."""
        return self.admin_down(output, interface)

    # --- talking to the device ------------------------------------------------------------

    def connect(self, params: dict[str, Any], timeout: float) -> BaseConnection:
        """Open a logged-in, prepared netmiko session (``params`` are ConnectHandler's)."""
        conn = ConnectHandler(**params, **self.connect_options())
        if self.needs_enable:
            try:
                conn.enable()
            except Exception:
                conn.paramiko_cleanup()
                raise
        return conn

    def connect_options(self) -> dict[str, Any]:
        """Extra netmiko ConnectHandler arguments for this vendor."""
        return {}

    def close(self, conn: BaseConnection) -> None:
        """Log out after a successful session."""
        conn.disconnect()

    def show(self, conn: BaseConnection, commands: list[str], timeout: float) -> str:
        return "\n".join(
            str(conn.send_command(c, read_timeout=timeout, strip_prompt=False)) for c in commands
        )

    def backup(self, conn: BaseConnection, target: Target, timeout: float) -> Batch:
        """Read the configuration the action is about to change."""
        commands = self.backup_commands(target)
        output = self.show(conn, commands, timeout)
        if target.method == BLOCK_PREFIXES:
            # Only the static-route lines matter (and the full configuration may hold secrets).
            output = "\n".join(
                line
                for line in output.splitlines()
                if line.split()[:2] in (["ip", "route-static"], ["ipv6", "route-static"])
                or line.split()[:2] in (["ip", "route"], ["ipv6", "route"])
            )
        return Batch("backup", commands, output)

    def apply(self, conn: BaseConnection, commands: list[str], timeout: float) -> Batch:
        """Send configuration commands; a device error raises :class:`CommandRejected`."""
        try:
            output = conn.send_config_set(
                commands,
                cmd_verify=True,
                error_pattern=self.error_pattern,
                read_timeout=timeout,
            )
        except ConfigInvalidException as exc:
            raise CommandRejected(str(exc)) from None
        error = self.has_error(output)
        if error:  # pragma: no cover - netmiko raises first
            raise CommandRejected(error)
        return Batch("apply", commands, str(output))

    def save(self, conn: BaseConnection, timeout: float) -> Batch:
        """Make the change survive a reboot (answering the vendor's confirmation)."""
        output = str(conn.save_config())
        error = self.has_error(output)
        if error:
            raise CommandRejected(f"save failed: {error}")
        return Batch("save", ["<save>"], output)

    def verify(
        self, conn: BaseConnection, kind: ActionKind, target: Target, timeout: float
    ) -> Verdict:
        output = self.show(conn, self.verify_commands(target), timeout)
        return self.check(kind, target, output)


# The first prompt after login, in user view (``<R1>``) or, on some devices, system view.
_LOGIN_PROMPT = re.compile(r"(?:^|\n)[ \t]*(?:<([^<>\s]+)>|\[[~*]?([^\[\]\s-]+)[^\[\]\n]*\])\s*$")
_CONTINUE = re.compile(r"to continue", re.I)


class SystemViewDriver(Driver):
    """VRP and Comware: every exchange waits for the device's own prompt, never for silence.

    Each line goes through :func:`enforcer.channel.exchange`: sent, its echo awaited (netmiko's
    ``cmd_verify``), then the prompt of the view it leads to (``<R1>`` user view, ``[R1...]``
    system and interface views; both unambiguous). netmiko's generic ``config_mode`` /
    ``exit_config_mode`` confirm the mode by waiting for two seconds of silence, several times
    per batch (about 9 s per cut), and its ``send_command`` polls with fixed sleeps (25–35 ms
    per command where the device answers in 1 ms); so after netmiko's SSH login this driver
    does the vendor's session preparation itself (find the prompt, turn paging off) and reads
    with ``select`` on the channel. Errors are still found with the vendor's error pattern
    after every line; a rejected line stops the batch, as netmiko's ``send_config_set`` does."""

    paging_command: ClassVar[str]
    save_command: ClassVar[str] = "save"
    # The save's confirmation question, answered with ``save_answer``; None: no question.
    save_question: ClassVar[str | None] = None
    save_answer: ClassVar[str] = "y"
    ansi_escape_codes: ClassVar[bool] = False

    def connect(self, params: dict[str, Any], timeout: float) -> BaseConnection:
        conn = ConnectHandler(**params, **self.connect_options(), auto_connect=False)
        conn.ansi_escape_codes = self.ansi_escape_codes
        try:
            conn.establish_connection()
            self._prepare(conn, timeout)
        except Exception:
            conn.paramiko_cleanup()
            raise
        return conn

    def _prepare(self, conn: BaseConnection, timeout: float) -> None:
        """Find the prompt, learn the device name from it and turn paging off.

        A RETURN first, as netmiko does (part of the greeting may already have been read by
        netmiko's login handler); an answer that arrives after the prompt was matched is
        harmless, because every exchange waits for its own command's echo first."""

        def seen(out: str) -> bool:
            return bool(_LOGIN_PROMPT.search(out) or _CONTINUE.search(out))

        conn.write_channel(conn.RETURN)
        output = read_until(conn, seen, timeout)
        if not _LOGIN_PROMPT.search(output):  # "Press Y or ENTER to continue"
            conn.write_channel(conn.RETURN)
            output = read_until(conn, lambda out: bool(_LOGIN_PROMPT.search(out)), timeout)
        match = _LOGIN_PROMPT.search(output)
        assert match is not None
        conn.base_prompt = match.group(1) or match.group(2)
        exchange(conn, self.paging_command, self._patterns(conn)[2], timeout)

    @staticmethod
    def _patterns(
        conn: BaseConnection,
    ) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
        return prompt_patterns(conn.base_prompt)

    def _send(
        self, conn: BaseConnection, command: str, until: re.Pattern[str], timeout: float
    ) -> str:
        return exchange(conn, command, until, timeout)

    def show(self, conn: BaseConnection, commands: list[str], timeout: float) -> str:
        _, _, either = self._patterns(conn)
        return "\n".join(self._send(conn, c, either, timeout) for c in commands)

    def apply(self, conn: BaseConnection, commands: list[str], timeout: float) -> Batch:
        _, system, either = self._patterns(conn)
        out = ["system-view", self._send(conn, "system-view", system, timeout)]
        error = self.has_error(out[-1])
        if error:
            raise CommandRejected(f"system-view refused: {error}")
        for command in commands:
            answer = self._send(conn, command, either, timeout)
            out += [command, answer]
            error = self.has_error(answer)
            if error:
                self._return(conn, timeout)
                raise CommandRejected(f"command {command!r} rejected: {error}")
        out += ["return", self._return(conn, timeout)]
        return Batch("apply", commands, "\n".join(out))

    def save(self, conn: BaseConnection, timeout: float) -> Batch:
        user, _, _ = self._patterns(conn)
        if self.save_question is None:
            output = self._send(conn, self.save_command, user, timeout)
        else:
            question = re.compile(rf"{self.save_question}|{user.pattern}")
            output = self._send(conn, self.save_command, question, timeout)
            if not user.search(output):
                output += "\n" + self._send(conn, self.save_answer, user, timeout)
        error = self.has_error(output)
        if error:
            raise CommandRejected(f"save failed: {error}")
        return Batch("save", [self.save_command], output)

    def close(self, conn: BaseConnection) -> None:
        """``quit`` from user view ends the session; netmiko's generic disconnect would first
        probe for config mode by waiting two seconds for silence."""
        try:
            conn.write_channel("quit" + conn.RETURN)
        finally:
            conn.paramiko_cleanup()

    def _return(self, conn: BaseConnection, timeout: float) -> str:
        """Back to user view from any view (``return`` works in all of them)."""
        user, _, _ = self._patterns(conn)
        return self._send(conn, "return", user, timeout)
