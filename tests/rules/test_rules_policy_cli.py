"""Policy files, their validation, the detection-rule contract and `edgewarden policy ...`."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from core.db import make_engine
from core.models import Role
from core.settings import get_settings
from core.timeutil import utcnow
from rules.cli import register
from rules.detection import PortSignature, load_detection_rules
from rules.errors import PolicyError
from rules.policy import BUILTIN_DIR, PolicyStore, load_policy_file
from tests.rules.conftest import build_world, days


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """edgewarden (test harness)"""

    register(app)
    return app


runner = CliRunner()


@pytest.mark.parametrize("name", ["jincheng", "jilin"])
def test_builtin_policies_pass_policy_check(name: str) -> None:
    """Both regulations load and pass `policy check` (issue 5, "Done when")."""
    result = runner.invoke(_app(), ["policy", "check", str(BUILTIN_DIR / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("OK")
    assert f"policy {name}:" in result.output


def test_every_step_and_transition_cites_an_article() -> None:
    for name in ("jincheng", "jilin"):
        city = "Jincheng" if name == "jincheng" else "Jilin"
        policy = load_policy_file(BUILTIN_DIR / f"{name}.yaml")
        for step in policy.steps.values():
            assert step.article.startswith(f"{city} art.")
            for t in step.transitions.values():
                assert t.article.startswith(f"{city} art.")
        for rule in policy.detection.kinds.values():
            assert rule.article.startswith(f"{city} art.")


def test_jincheng_strike_kinds_and_jilin_none() -> None:
    """Jincheng art. 14 counts 双网运行/一机两网/违规外连; Jilin counts nothing."""
    assert load_detection_rules("jincheng").strike_kinds == ["outbound_internet", "dual_homed"]
    assert load_detection_rules("jilin").strike_kinds == []


def test_detection_contract() -> None:
    """The NetFlow collector's contract: signatures, ignore list, classification."""
    rules = load_detection_rules("jincheng")
    assert all(isinstance(s, PortSignature) for s in rules.remote_control + rules.internet_vpn)
    assert rules.classify_port(6, 3389) == ("remote_control", "rdp")
    assert rules.classify_port(50, None) == ("internet_vpn", "esp")  # empty ports: any
    assert rules.classify_port(17, 500) == ("internet_vpn", "ike")
    assert rules.classify_port(6, 443) is None
    assert PortSignature(name="x", protocol=6, ports=[]).matches(6, 1)
    with pytest.raises(ValueError):
        PortSignature(name="x", protocol=6, ports=[70000])


def _broken(tmp_path: Path, name: str, edit: dict[str, object]) -> Path:
    data = yaml.safe_load((BUILTIN_DIR / "jincheng.yaml").read_text(encoding="utf-8"))
    data["name"] = name
    data.update(edit)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_policy_check_reports_every_problem(tmp_path: Path) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "jincheng.yaml").read_text(encoding="utf-8"))
    data["name"] = "broken"
    data["strikes"] = [{"strike": 1, "step": "nowhere"}]
    del data["steps"]["first_finding"]["article"]
    data["steps"]["second_finding"]["transitions"]["reconnect"]["roles"] = ["viewer"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = runner.invoke(_app(), ["policy", "check", str(path)])
    assert result.exit_code == 1
    out = result.output
    assert "steps.first_finding.article: Field required" in out
    assert "can never act" in out
    result = runner.invoke(_app(), ["policy", "check", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"strikes": [{"strike": 2, "step": "first_finding"}]}, "must start at 1"),
        ({"strikes": [{"strike": 1, "step": "nowhere"}]}, "unknown step 'nowhere'"),
        ({"kind_steps": {"remote_control": "violation"}}, "name its step in kind_steps"),
        ({"strikes": []}, "counts as a strike but the policy has no strikes"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_policy_validation(tmp_path: Path, edit: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy_file(_broken(tmp_path, "bad", edit))
    assert message in str(err.value)


def test_policy_name_must_match_file(tmp_path: Path) -> None:
    path = _broken(tmp_path, "good", {})
    path.rename(tmp_path / "other.yaml")
    with pytest.raises(PolicyError, match="expected 'other'"):
        load_policy_file(tmp_path / "other.yaml")
    with pytest.raises(PolicyError, match="not a policy name"):
        PolicyStore().load("../etc/passwd")
    with pytest.raises(PolicyError, match="no policy named"):
        PolicyStore([tmp_path]).load("absent")


def test_extra_dir_shadows_builtin(tmp_path: Path) -> None:
    _broken(tmp_path, "jincheng", {"title": "local override"})
    assert PolicyStore([tmp_path]).load("jincheng").title == "local override"
    assert PolicyStore().load("jincheng").title != "local override"


def test_policy_explain(
    db_url_sqlite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`policy explain` shows strikes, open cases and the next step with its article."""
    engine = make_engine(db_url_sqlite)
    with Session(engine) as session:
        world = build_world(session, tmp_path / "p")
        now = utcnow() - days(5)
        term = ((now - days(100)).date(), (now + days(100)).date())
        inst = world.institution(agreement=term)
        world.find(inst, at=now)
        (case,) = world.cases(inst)
        world.doc(case, "written_explanation", at=now)
        world.act(case, "reconnect", Role.COUNTY_OPERATOR, at=now)
        world.find(inst, at=now + days(3))
        code = inst.code
        session.commit()
    engine.dispose()
    monkeypatch.setenv("EDGEWARDEN_DATABASE_URL", db_url_sqlite)
    get_settings.cache_clear()
    try:
        result = runner.invoke(_app(), ["policy", "explain", code])
        missing = runner.invoke(_app(), ["policy", "explain", "H99999999999"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    out = result.output
    assert "policy jincheng" in out
    assert f"strikes in the current window ({term[0]} – {term[1]}): 2" in out
    assert "strike 2, step second_finding, state cut" in out
    assert "documents missing: rectification_report" in out
    assert "reconnect by city_admin once rectification_report is filed" in out
    assert "joins open case" in out and "Jincheng art. 14" in out
    assert missing.exit_code == 1 and "no institution" in missing.output
