"""Tokens are shown once and stored hashed; settings errors are one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import ConfigError, ValidationFailed
from core.inventory import import_file
from core.models import ApiToken, Role
from core.settings import load_settings
from core.tokens import authenticate, create_token, hash_token

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"


def test_token_is_stored_only_as_hash(session: Session) -> None:
    import_file(session, SMALL, actor="test")
    user, token = create_token(session, role=Role.COUNTY_OPERATOR, counties=["140502"])
    session.commit()
    row = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert row is not None and row.token_hash == hash_token(token) and token not in row.token_hash
    found = authenticate(session, token)
    assert found is not None and [c.code for c in found.counties] == ["140502"]
    assert authenticate(session, token + "x") is None


def test_county_operator_needs_a_known_county(session: Session) -> None:
    with pytest.raises(ValidationFailed, match="at least one"):
        create_token(session, role=Role.COUNTY_OPERATOR)
    with pytest.raises(ValidationFailed, match="unknown county"):
        create_token(session, role=Role.COUNTY_OPERATOR, counties=["999999"])


def test_revoked_token_is_refused(session: Session) -> None:
    from core.timeutil import utcnow

    user, token = create_token(session, role=Role.VIEWER)
    user.tokens[0].revoked_at = utcnow()
    session.commit()
    assert authenticate(session, token) is None


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWARDEN_API_PORT", "eighty")
    with pytest.raises(ConfigError, match="EDGEWARDEN_API_PORT"):
        load_settings()


def test_toml_file_and_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "ew.toml"
    cfg.write_text("api_port = 9000\nnetflow_port = 2056\n", encoding="utf-8")
    monkeypatch.setenv("EDGEWARDEN_CONFIG", str(cfg))
    monkeypatch.setenv("EDGEWARDEN_NETFLOW_PORT", "2057")
    s = load_settings()
    assert s.api_port == 9000 and s.netflow_port == 2057
    cfg.write_text("api_port = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGEWARDEN_DATABASE_URL": "postgresql+psycopg://ew@127.0.0.1:9/none"}, "cannot reach"),
        ({"EDGEWARDEN_DATABASE_URL": "not a url"}, "not a database URL"),
        ({"EDGEWARDEN_API_PORT": "-1"}, "EDGEWARDEN_API_PORT"),
    ],
)
def test_cli_bad_environment_is_one_line(env: dict[str, str], message: str, tmp_path: Path) -> None:
    full = {**os.environ, "EDGEWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **env}
    run = subprocess.run(
        [sys.executable, "-m", "core", "token", "create", "--role", "viewer"],
        env=full,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_configuration_page_lists_every_setting() -> None:
    """docs/configuration.md is what operators read; a new setting must appear there."""
    from core.settings import Settings

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in page]
    assert not missing, f"docs/configuration.md does not list: {missing}"
