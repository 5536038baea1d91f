"""Structured logs: one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` and the
record's extras), for journald/Loki/ELK to index without parsing prose.

uvicorn's own loggers (server and access log) are routed through the same handler, so an
access line is JSON too, with ``client``, ``method``, ``path``, ``status`` as fields.
Secrets never reach the output: bearer tokens, ``password=``/``secret=``/``token=``/
``community=`` values and extras whose names say they are secret are masked, as is the
configured EDGEWARDEN_SECRET_KEY wherever it appears (Jilin art. 33).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings

MASK = "***"

# Attributes every LogRecord has; anything else on a record is an ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|community|authorization|auth_key|priv_key|api_key|cookie)",
    re.IGNORECASE,
)
_SECRET_TEXT = [
    (re.compile(r"(?i)((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
    (
        re.compile(
            r"(?i)\b((?:pass(?:word|wd)?|secret(?:_key)?|token|community|api_key)\s*[=:]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
        ),
        r"\1" + MASK,
    ),
]


class Redactor:
    """Masks secret-looking text; ``literals`` are exact values to mask (configured keys)."""

    def __init__(self, literals: list[str] | None = None) -> None:
        self.literals = sorted({v for v in literals or [] if len(v) >= 6}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for literal in self.literals:
            value = value.replace(literal, MASK)
        for pattern, repl in _SECRET_TEXT:
            value = pattern.sub(repl, value)
        return value

    def value(self, key: str, value: Any) -> Any:
        if _SECRET_NAME.search(key):
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value("", v) for v in value]
        return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            if len(record.args) == 5:
                client, method, path, version, status = record.args
                out["msg"] = self.redactor.text(f"{method} {path} {status}")
                out.update(
                    client=client,
                    method=method,
                    path=self.redactor.text(str(path)),
                    http_version=version,
                    status=status,
                )
            else:
                out["msg"] = self.redactor.text(record.getMessage())
        else:
            out["msg"] = self.redactor.text(record.getMessage())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = self.redactor.value(key, value)
        if record.exc_info:
            out["exc"] = self.redactor.text(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = self.redactor.text(record.exc_text)
        return json.dumps(out, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same redaction."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure(settings: Settings, stream: Any = None) -> logging.Handler:
    """Install one handler on the root logger (replacing others) and route uvicorn's loggers
    to it; pass ``log_config=None`` to uvicorn so it does not install its own."""
    literals = []
    if settings.secret_key is not None:
        raw = settings.secret_key.get_secret_value()
        literals = [raw, *(k.strip() for k in raw.split(","))]
    redactor = Redactor(literals)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if settings.log_json else PlainFormatter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level.upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    for name in UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
    # APScheduler logs every run at INFO ("Running job ..."): our job wrapper says more.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.WARNING))
    return handler
