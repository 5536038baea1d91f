"""Inventory and policy endpoints: filters, keyset pages, county scoping, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import Role
from core.tokens import create_token

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
QINSHUI = "140521"
QINSHUI_INSTITUTIONS = {
    "H14052100001",
    "H14052100002",
    "P14052100001",
    "P14052100002",
    "P14052100003",
}


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def get(self, who: str, path: str, **params: Any) -> Any:
        r = self.client.get(
            "/api/v1" + path,
            params=params,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )
        return r

    def ok(self, who: str, path: str, **params: Any) -> Any:
        r = self.get(who, path, **params)
        assert r.status_code == 200, r.text
        return r.json()

    def walk(self, who: str, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list, page by page."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):
            page = self.ok(who, path, **params, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("pagination does not end")


@pytest.fixture
def api(session: Session, db_url: str) -> Api:
    import_file(session, SMALL, actor="test")
    tokens = {}
    for who, role, counties in [
        ("admin", Role.CITY_ADMIN, []),
        ("viewer", Role.VIEWER, []),
        ("county", Role.COUNTY_OPERATOR, [QINSHUI]),
    ]:
        _, tokens[who] = create_token(session, role=role, counties=counties)
    session.commit()
    return Api(TestClient(create_app(db_url)), tokens)


def test_walk_institutions_with_limit_7_no_dup_no_miss(api: Api) -> None:
    pages = 0
    seen: list[str] = []
    cursor = None
    while True:
        page = api.ok("admin", "/institutions", limit=7, **({"cursor": cursor} if cursor else {}))
        pages += 1
        assert len(page["items"]) <= 7
        seen += [i["code"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 60 and len(set(seen)) == 60
    assert pages == 9  # 8 full pages of 7 and one of 4
    everything = {i["code"] for i in api.ok("admin", "/institutions", limit=500)["items"]}
    assert set(seen) == everything
    bad = api.get("admin", "/institutions", cursor="not-a-cursor!")
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_institution_filters(api: Api) -> None:
    pharmacies = api.walk("admin", "/institutions", kind="pharmacy")
    assert pharmacies and all(i["kind"] == "pharmacy" for i in pharmacies)
    assert all(i["code"].startswith("P") for i in pharmacies)
    in_county = api.walk("admin", "/institutions", county=QINSHUI)
    assert {i["code"] for i in in_county} == QINSHUI_INSTITUTIONS
    by_code = api.walk("admin", "/institutions", q="h1405210000")
    assert {i["code"] for i in by_code} == {"H14052100001", "H14052100002"}
    by_name = api.walk("admin", "/institutions", q="人民医院")
    assert by_name and all("人民医院" in i["name"] for i in by_name)
    assert api.walk("admin", "/institutions", q="%") == []  # a literal %, not a wildcard
    active = api.walk("admin", "/institutions", status="active")
    assert 0 < len(active) <= 60 and all(i["status"] == "active" for i in active)
    wrong = api.get("admin", "/institutions", status="sleeping")
    assert wrong.status_code == 422 and "status" in wrong.json()["detail"]


def test_institution_detail_and_scope(api: Api) -> None:
    detail = api.ok("county", "/institutions/H14052100001")
    assert detail["county"]["code"] == QINSHUI
    assert [ln["interface"] for ln in detail["links"]] == [
        "GigabitEthernet0/1.1001",
        "GigabitEthernet0/1.1002",
    ]
    assert detail["links"][0]["device"] == "jc-qinshui-edge-01"
    assert [a["prefix"] for a in detail["allocations"]] == ["10.145.32.0/28"]
    assert detail["strikes"] == 0 and detail["open_cases"] == 0
    assert api.get("county", "/institutions/H14050200001").status_code == 404
    assert api.ok("admin", "/institutions/H14050200001")["code"] == "H14050200001"
    assert api.get("admin", "/institutions/H99999999999").status_code == 404


def test_county_operator_sees_only_its_county_in_every_list(api: Api) -> None:
    counties = api.walk("county", "/counties")
    assert [c["code"] for c in counties] == [QINSHUI]
    assert counties[0]["policy"] == "jincheng"  # inherited from the city
    assert len(api.walk("admin", "/counties")) == 7

    insts = api.walk("county", "/institutions")
    assert {i["code"] for i in insts} == QINSHUI_INSTITUTIONS

    links = api.walk("county", "/links", limit=2)
    assert {ln["institution_code"] for ln in links} == QINSHUI_INSTITUTIONS
    assert len(links) == 6
    other = api.walk("county", "/links", institution="H14050200001")
    assert other == []  # a filter on a hidden institution finds nothing
    assert len(api.walk("admin", "/links", institution="H14050200001")) == 2

    allocs = api.walk("county", "/allocations")
    assert {a["institution_code"] for a in allocs} == QINSHUI_INSTITUTIONS

    devices = api.walk("county", "/devices")
    # its own edge router, and the LNS because it carries two of its VPDN links
    assert {d["name"] for d in devices} == {"jc-qinshui-edge-01", "jc-lns-01"}
    assert len(api.walk("admin", "/devices")) > 2

    exporters = api.walk("county", "/exporters")
    assert {e["device"] for e in exporters} == {"jc-qinshui-edge-01", "jc-lns-01"}
    assert len(api.walk("admin", "/exporters")) == 10


def test_links_allocations_devices_filters(api: Api) -> None:
    cut = api.walk("admin", "/links", state="cut")
    assert cut and all(ln["state"] == "cut" for ln in cut)
    assert "H14052500002" in {ln["institution_code"] for ln in cut}
    vpdn = api.walk("admin", "/links", kind="vpdn")
    assert vpdn and all(ln["vpdn_account"] and ln["device"] == "jc-lns-01" for ln in vpdn)
    assert all(ln["kind"] == "vpdn" for ln in api.walk("admin", "/links", device="jc-lns-01"))

    hit = api.walk("admin", "/allocations", ip="10.145.32.20")
    assert [(a["institution_code"], a["prefix"]) for a in hit] == [
        ("H14052100002", "10.145.32.16/29")
    ]
    assert api.walk("county", "/allocations", ip="10.145.0.3") == []  # another county's
    assert len(api.walk("admin", "/allocations", ip="10.145.0.3")) == 1
    assert api.walk("admin", "/allocations", ip="192.0.2.1") == []
    assert api.get("admin", "/allocations", ip="10.145.999.1").status_code == 422
    assert api.walk("admin", "/allocations", institution="P14052100003")[0]["prefix"] == (
        "10.145.32.40/29"
    )

    v3 = [d for d in api.walk("admin", "/devices") if d["snmp_version"] == "v3"]
    assert [d["name"] for d in v3] == ["jc-lingchuan-edge-01"]
    lns = api.walk("admin", "/devices", role="lns")
    assert [d["name"] for d in lns] == ["jc-lns-01"]
    assert [d["name"] for d in api.walk("admin", "/devices", county=QINSHUI)] == [
        "jc-qinshui-edge-01"
    ]


def test_devices_never_carry_secrets(api: Api) -> None:
    for who in ("admin", "viewer", "county"):
        r = api.get(who, "/devices", limit=500)
        assert r.status_code == 200
        text = r.text
        for secret in ("pw-jc-", "en-jc-", "auth-jc-", "priv-jc-", "enc:", "ewlab", "ew-v3"):
            assert secret not in text, (who, secret)
        first = r.json()["items"][0]
        assert set(first) == {
            "id",
            "name",
            "mgmt_address",
            "device_type",
            "role",
            "county",
            "enabled",
            "snmp_version",
            "uplink_interfaces",
        }
        # the community string equals the device name in the lab: it must not appear as a
        # field value, only as the name
        assert "community" not in text


def test_vendors_and_policies(api: Api) -> None:
    vendors = api.walk("county", "/vendors")
    assert {v["name"] for v in vendors} == {
        "山西康联医疗信息技术有限公司",
        "北京华医云软件股份有限公司",
    }
    kanglian = next(v for v in vendors if v["name"].startswith("山西"))
    assert [s["address"] for s in kanglian["servers"]] == ["10.140.9.10", "10.140.9.11"]
    assert api.walk("admin", "/vendors", status="suspended") == []

    policies = api.ok("admin", "/policies")["items"]
    by_name = {p["name"]: p for p in policies}
    assert {"jincheng", "jilin"} <= set(by_name)
    assert len(by_name["jincheng"]["counties"]) == 7 and by_name["jilin"]["counties"] == []
    mine = {p["name"]: p["counties"] for p in api.ok("county", "/policies")["items"]}
    assert mine["jincheng"] == [QINSHUI]

    jc = api.ok("viewer", "/policies/jincheng")
    assert jc["policy"]["steps"]["second_finding"]["transitions"]["reconnect"]["roles"] == [
        "city_admin"
    ]
    assert jc["policy"]["steps"]["first_finding"]["transitions"]["reconnect"]["from"] == ["cut"]
    assert "Jincheng art. 14" in jc["policy"]["steps"]["third_finding"]["article"]
    assert api.get("admin", "/policies/nosuch").status_code == 404


def test_bad_input_is_a_clear_422_not_a_server_error(api: Api) -> None:
    """Inputs PostgreSQL refuses (NUL bytes, ids past INTEGER) never reach it."""
    huge = 2**40
    for path, params in [
        ("/institutions", {"q": "a\x00b"}),
        ("/institutions", {"county": "1405210"}),
        ("/institutions/H1405%0021", {}),
        ("/institutions/not-a-code", {}),
        ("/links", {"device": "x\x00"}),
        ("/links", {"institution": "H1"}),
        ("/allocations", {"ip": "10.0.0.1\x00"}),
        ("/observations", {"kind": "\x00"}),
        ("/observations", {"since": "0001-01-01T00:00:00+05:00"}),
        (f"/observations/{huge}", {}),
        ("/detections", {"case_id": huge}),
        (f"/detections/{huge}", {}),
        ("/cases", {"strike": huge}),
        ("/cases", {"state": "a\x00"}),
        (f"/cases/{huge}", {}),
        (f"/cases/{huge}/timeline", {}),
        ("/cases/0", {}),
    ]:
        r = api.get("admin", path, **params)
        assert r.status_code == 422, (path, params, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"]
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}
    for body in (
        {"event": "close", "reason": "a\x00b"},
        {"event": "clo\x00se", "reason": "x"},
        {"event": "close", "reason": "x", "extra": 1},
    ):
        r = api.client.post("/api/v1/cases/1/transitions", json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
    r = api.client.patch("/api/v1/cases/1", json={"remediation": "\x00"}, headers=headers)
    assert r.status_code == 422
