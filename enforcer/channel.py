"""Prompt-driven exchanges over a netmiko SSH session, without netmiko's fixed poll sleeps.

netmiko reads by polling: ``send_command`` sleeps 25 ms between reads and, without an
``expect_string``, first probes for the prompt (another ~35 ms); ``read_until_pattern`` sleeps
10 ms; connecting sleeps 100 ms before the vendor's session preparation, which probes the prompt
twice more. On a device that answers in a millisecond a cut's dozen exchanges spend almost all
their time in those sleeps. Here a read waits on the SSH channel itself (``select`` on the
paramiko channel) and returns as soon as the device's answer is complete.

Nothing is waited for by silence or by a fixed time: every exchange sends one line, waits for
that line's echo (what netmiko's ``cmd_verify`` checks, so input and output never drift apart)
and then for an explicit prompt after it. netmiko still owns the session: login, host keys,
``read_channel`` (line-feed normalisation, ANSI stripping, session log) and ``write_channel``."""

from __future__ import annotations

import re
import select
import time
from collections.abc import Callable

import paramiko
from netmiko import BaseConnection
from netmiko.exceptions import ReadException, ReadTimeout

# One select() never waits longer than this, so a closed channel is noticed promptly.
_MAX_WAIT = 0.5


def _wait_readable(conn: BaseConnection, timeout: float) -> None:
    """Block until the channel has data (or is closed), at most ``timeout`` seconds."""
    chan = conn.remote_conn
    if not isinstance(chan, paramiko.Channel):
        raise ReadException("the session has no open SSH channel")
    if (chan.closed or chan.eof_received) and not chan.recv_ready():
        raise ReadException("the device closed the session")
    select.select([chan], [], [], timeout)


def read_until(conn: BaseConnection, done: Callable[[str], bool], timeout: float) -> str:
    """Read until ``done(output)``; netmiko's ``ReadTimeout`` after ``timeout`` seconds
    (the queue treats it as a session that stopped answering)."""
    deadline = time.monotonic() + timeout
    output = conn.read_channel()
    while not done(output):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = output[-200:]
            raise ReadTimeout(f"no expected answer within {timeout:g} s; last output: {tail!r}")
        _wait_readable(conn, min(remaining, _MAX_WAIT))
        output += conn.read_channel()
    return output


def exchange(conn: BaseConnection, command: str, until: re.Pattern[str], timeout: float) -> str:
    """Send one line; return the device's answer after the line's echo, up to and including
    the first match of ``until`` (a prompt or a question) after that echo."""
    command = command.strip()

    def done(output: str) -> bool:
        start = output.find(command)
        return start >= 0 and until.search(output, start + len(command)) is not None

    conn.write_channel(command + conn.RETURN)
    output = read_until(conn, done, timeout)
    answer = output[output.find(command) + len(command) :]
    return answer[1:] if answer.startswith("\n") else answer


def prompt_patterns(name: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(user view ``<NAME>``, system view ``[NAME]``/``[NAME-...]``, either) for a VRP or
    Comware device called ``name``; each must stand at the start of a line and end the output."""
    n = re.escape(name)
    user = re.compile(rf"(?:^|\n)<{n}>\s*$")
    system = re.compile(rf"(?:^|\n)\[{n}(?:-[^\]\n]*)?\]\s*$")
    either = re.compile(rf"(?:^|\n)(?:<{n}>|\[{n}(?:-[^\]\n]*)?\])\s*$")
    return user, system, either
