"""The record of what was said to a device, with every secret masked.

Transcripts, backups and verification outputs are stored with the action and shown to
operators, so nothing stored may carry a password (Jilin art. 33): the session's own secrets are
replaced wherever they appear, and configuration lines that hold secrets of their own (``password
cipher``, ``snmp-agent community``, ``key``) keep only their keyword."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.timeutil import utcnow

MASK = "******"
_SECRET_LINE = re.compile(
    r"(?im)^(?P<head>[^\n]*?\b(?:password|secret|cipher|community|key-string|"
    r"pre-shared-key|authentication-key|simple|irreversible-cipher)\b)(?P<tail>[^\n]*)$"
)


def sanitize(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and any secret-bearing configuration values masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        # As a whole token: a short password must not mask every word that contains it.
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, MASK, text)
    return _SECRET_LINE.sub(
        lambda m: m.group("head") + (" " + MASK if m.group("tail") else ""), text
    )


@dataclass
class Transcript:
    """Sections of a session in order; rendered sanitized for storage."""

    secrets: tuple[str, ...] = ()
    sections: list[str] = field(default_factory=list)

    def add(self, label: str, commands: list[str], output: str) -> None:
        stamp = utcnow().isoformat(timespec="milliseconds")
        sent = "\n".join(f"> {c}" for c in commands)
        self.sections.append(f"### {stamp} {label}\n{sent}\n{output.rstrip()}\n")

    def note(self, text: str) -> None:
        stamp = utcnow().isoformat(timespec="milliseconds")
        self.sections.append(f"### {stamp} {text}\n")

    def render(self) -> str:
        return sanitize("\n".join(self.sections), self.secrets)
