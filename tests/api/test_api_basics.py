"""Auth on every endpoint and county scoping in the queries (Jincheng art. 4, Jilin art. 4)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import AuditEvent, Role
from core.tokens import create_token

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"


def test_auth_and_county_scoping(session: Session, db_url: str) -> None:
    import_file(session, SMALL, actor="test")
    _, admin = create_token(session, role=Role.CITY_ADMIN)
    _, county = create_token(session, role=Role.COUNTY_OPERATOR, counties=["140521"])
    session.commit()
    client = TestClient(create_app(db_url))
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/institutions").status_code == 401
    assert client.get("/metrics").status_code == 401
    bad = client.get("/api/v1/institutions", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert session.query(AuditEvent).filter_by(action="auth.failed").count() == 1

    every = client.get(
        "/api/v1/institutions?limit=500", headers={"Authorization": f"Bearer {admin}"}
    )
    assert every.status_code == 200 and len(every.json()["items"]) == 60
    mine = client.get(
        "/api/v1/institutions?limit=500", headers={"Authorization": f"Bearer {county}"}
    )
    codes = {i["county"]["code"] for i in mine.json()["items"]}
    assert codes == {"140521"}
    other = next(i["code"] for i in every.json()["items"] if i["county"]["code"] != "140521")
    hidden = client.get(
        f"/api/v1/institutions/{other}", headers={"Authorization": f"Bearer {county}"}
    )
    assert hidden.status_code == 404
    assert (
        client.get(
            "/api/v1/institutions?county=12", headers={"Authorization": f"Bearer {admin}"}
        ).status_code
        == 422
    )
    problem = client.get(
        "/api/v1/institutions?county=12", headers={"Authorization": f"Bearer {admin}"}
    )
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 422 and "county" in problem.json()["detail"]
