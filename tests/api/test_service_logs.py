"""JSON structured logs (one object per line) with secrets masked, and `--only` role parsing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from api import logs
from api.service import ROLES, parse_roles
from core.settings import load_settings

KEY = "ZWRnZXdhcmRlbi10ZXN0LWtleS0wMTIzNDU2Nzg5YWI="


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _configure(log_json: bool) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(load_settings(secret_key=KEY, log_json=log_json, log_level="INFO"), stream)
    return stream


def test_json_lines_with_extras_and_exceptions(restore_logging: None) -> None:
    stream = _configure(True)
    log = logging.getLogger("edgewarden.test")
    log.info("sweep %s done", 7, extra={"devices": 3, "county": "140521"})
    try:
        raise ValueError("bad row 12")
    except ValueError:
        log.exception("import failed")
    log.debug("not at INFO")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "sweep 7 done" and first["level"] == "INFO"
    assert first["logger"] == "edgewarden.test"
    assert first["devices"] == 3 and first["county"] == "140521"
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad row 12" in second["exc"]


def test_secrets_are_masked(restore_logging: None) -> None:
    stream = _configure(True)
    log = logging.getLogger("edgewarden.test")
    log.warning("auth header Authorization: Bearer abc.DEF-123 refused")
    log.warning("ssh login password=hunter22 community: public9 token=t0k&x=1")
    log.warning("key is %s", KEY, extra={"ssh_password": "hunter22", "snmp": {"community": "c1"}})
    text = stream.getvalue()
    for secret in ("abc.DEF-123", "hunter22", "public9", "t0k", KEY, '"c1"'):
        assert secret not in text, secret
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[0]["msg"] == "auth header Authorization: Bearer *** refused"
    assert rows[2]["ssh_password"] == "***" and rows[2]["snmp"] == {"community": "***"}
    assert "x=1" in rows[1]["msg"]  # only the secret value is masked


def test_uvicorn_access_log_is_json(restore_logging: None) -> None:
    stream = _configure(True)
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/v1/cases?token=zz9", "1.1", 200
    )
    (row,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert row["logger"] == "uvicorn.access"
    assert row["method"] == "GET" and row["status"] == 200 and row["client"] == "127.0.0.1:5000"
    assert row["path"] == "/api/v1/cases?token=***"


def test_plain_when_log_json_false(restore_logging: None) -> None:
    stream = _configure(False)
    logging.getLogger("edgewarden.test").info("hello password=pw1")
    line = stream.getvalue().strip()
    assert line.endswith("INFO edgewarden.test: hello password=***")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_parse_roles() -> None:
    on = load_settings(scheduler_enabled=True)
    off = load_settings(scheduler_enabled=False)
    assert parse_roles(None, on) == list(ROLES)
    assert parse_roles([], off) == ["api", "collector", "worker"]
    assert parse_roles(["scheduler"], off) == ["scheduler"]  # explicit --only wins
    assert parse_roles(["worker,api", "collector"], on) == ["api", "collector", "worker"]
    with pytest.raises(ValueError, match=r"unknown role.*webui"):
        parse_roles(["api,webui"], on)
