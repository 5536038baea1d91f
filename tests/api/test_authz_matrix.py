"""The authorization matrix of issue 7: every role × own county / other county × every endpoint.

Routes are enumerated from ``create_app()`` when the test runs, so a router added later is
covered without editing this file; a route whose path parameters cannot be filled from the
seed fails the test by name instead of being skipped. County B's objects must never reach
county A's operator (属地原则, Jincheng art. 4, Jilin art. 4) and no secret may ever leave
(Jilin art. 33)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from core.db import make_engine
from core.settings import get_settings
from tests.api.api_seed import CountySeed, Seed, row_counts, seed_world

# Public by design: the health checks (DESIGN.md, Security) and the API's own description,
# which FastAPI serves for /docs (DESIGN.md, Interfaces: "OpenAPI at /openapi.json and /docs").
PUBLIC = {"/healthz", "/readyz"}
DESCRIPTION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
READ_METHODS = {"GET"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

# Path segment or parameter stem -> resource name of the seed.
ALIASES = {
    "institutions": "institution",
    "cases": "case",
    "detections": "detection",
    "actions": "action",
    "enforcement": "action",
    "documents": "document",
    "links": "link",
    "incidents": "incident",
    "reports": "report",
    "devices": "device",
    "counties": "county",
    "observations": "observation",
    "tokens": "token",
    "users": "user",
    "webhooks": "webhook",
    "subscriptions": "subscription",
    "sweeps": "sweep",
    "policies": "policy",
    "vendors": "vendor",
    "timeline": "event",
    "events": "event",
}
COUNTY_OWNED = {
    "institution",
    "case",
    "detection",
    "action",
    "document",
    "link",
    "incident",
    "report",
    "device",
    "observation",
    "county",
}
# Parameters that name a thing of the domain rather than an object.
CONSTANTS = {"event": "reconnect", "transition": "reconnect", "format": "md"}
PDF = b"%PDF-1.4\n% matrix upload\n%%EOF\n"
PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # template, e.g. /api/v1/cases/{case_id}
    name: str
    params: tuple[tuple[str, str], ...]  # (name, "integer" | "string")
    body_schema: dict[str, Any] | None
    multipart: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.name})"


def _resource(path: str, param: str) -> tuple[str, str]:
    """(resource, key kind) a path parameter names: key kind is "id" or "code"."""
    literals = [s for s in path.split("/") if s and not s.startswith("{")]
    before = path.split("{" + param)[0].rstrip("/").split("/")
    prev = before[-1] if before and not before[-1].startswith("{") else ""
    if param in ("id", "pk", "code", "name", "key"):
        res = ALIASES.get(prev, prev.rstrip("s"))
        return res, "id" if param in ("id", "pk") else "code"
    for suffix, kind in (("_id", "id"), ("_code", "code"), ("_name", "code")):
        if param.endswith(suffix):
            stem = param[: -len(suffix)]
            return ALIASES.get(stem, stem), kind
    del literals
    return ALIASES.get(param, param), "param"


def fill(ep: Endpoint, seed: Seed, side: CountySeed) -> tuple[str | None, bool, list[str]]:
    """The concrete path on ``side``'s objects; whether it names a county-owned object;
    the parameters that could not be filled."""
    values: dict[str, str] = {}
    owned = False
    missing: list[str] = []
    for name, typ in ep.params:
        if name in CONSTANTS:
            values[name] = CONSTANTS[name]
            continue
        res, kind = _resource(ep.path, name)
        value: int | str | None
        if res in COUNTY_OWNED:
            owned = True
            if res == "county":
                value = side.code
            elif kind == "code" or (kind == "param" and typ == "string"):
                value = side.codes.get(res)
            else:
                value = side.ids.get(res)
        else:
            value = seed.city.get(res)
        if value is None:
            missing.append(name)
        else:
            values[name] = str(value)
    if missing:
        return None, owned, missing
    return PARAM.sub(lambda m: values[m.group(1)], ep.path), owned, []


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves, flattened through included routers."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Iterator[Any] = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI flattens included routers into app.routes
        routes = iter(app.routes)
    spec = app.openapi()
    found: list[Endpoint] = []
    for route in routes:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None or not methods:
            raise AssertionError(f"route {route!r} has no path/methods: cover it by hand")
        original = getattr(route, "original_route", route)
        dependant = getattr(original, "dependant", None)
        types: dict[str, str] = {}
        if dependant is not None:
            for p in dependant.path_params:
                ann = p.field_info.annotation
                types[p.name] = "integer" if ann is int else "string"
        for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
            op = spec.get("paths", {}).get(path, {}).get(method.lower(), {})
            content = op.get("requestBody", {}).get("content", {})
            multipart = "multipart/form-data" in content
            body = content.get("multipart/form-data" if multipart else "application/json", {})
            params = tuple((n, types.get(n, "string")) for n in PARAM.findall(path))
            name = getattr(route, "name", "?")
            found.append(Endpoint(method, path, name, params, body.get("schema"), multipart))
    return found


# --- request bodies ---------------------------------------------------------------------------


def _deref(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(schema: dict[str, Any] | None, spec: dict[str, Any], depth: int = 0) -> Any:
    """A small valid instance of ``schema`` (required fields only): the request must get past
    validation so that the authorization decision is what answers."""
    if schema is None or depth > 6:
        return {}
    schema = _deref(schema, spec)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if _deref(o, spec).get("type") != "null"]
            return example(options[0] if options else schema[key][0], spec, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    typ = schema.get("type", "object")
    if typ == "object":
        props = schema.get("properties", {})
        return {k: example(props.get(k), spec, depth + 1) for k in schema.get("required", [])}
    if typ == "array":
        n = schema.get("minItems", 0)
        return [example(schema.get("items"), spec, depth + 1) for _ in range(n)]
    if typ == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if typ == "number":
        return float(schema.get("minimum", 1))
    if typ == "boolean":
        return False
    if typ == "string":
        fmt = schema.get("format")
        if fmt == "binary" or schema.get("contentMediaType") == "application/octet-stream":
            return PDF
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if fmt == "date":
            return "2026-01-01"
        if "pattern" in schema and "\\d{6}" in schema["pattern"]:
            return "140521"
        return "x" * max(int(schema.get("minLength", 0)), 1)
    return None


# --- scanning --------------------------------------------------------------------------------


def _singular(key: str) -> str:
    return ALIASES.get(key, key[:-1] if key.endswith("s") else key)


def leaked_ids(body: Any, resource: str | None, b: CountySeed) -> list[str]:
    """Ids of county B's objects in a JSON body: ``x_id`` keys by their name, ``id`` keys by
    the collection or key that holds the object."""
    found: list[str] = []

    def walk(node: Any, res: str | None, where: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, res, f"{where}[{i}]")
        elif isinstance(node, dict):
            if res and isinstance(node.get("id"), int) and node["id"] in b.all_ids.get(res, ()):
                found.append(f"{where}.id={node['id']} ({res} of county {b.code})")
            for k, v in node.items():
                if k.endswith("_id") and isinstance(v, int):
                    r = ALIASES.get(k[:-3], k[:-3])
                    if v in b.all_ids.get(r, ()):
                        found.append(f"{where}.{k}={v} ({r} of county {b.code})")
                elif isinstance(v, dict | list):
                    walk(v, res if k == "items" else _singular(k), f"{where}.{k}")

    walk(body, resource, "$")
    return found


def secrets_in(text: str, seed: Seed) -> list[str]:
    hits = [s for s in seed.secrets | set(seed.tokens.values()) if s in text]
    hits += [marker for marker in ("enc:", "gAAAAAB") if marker in text]
    return hits


def route_resource(path: str) -> str | None:
    literals = [s for s in path.split("/") if s and not s.startswith("{")]
    for seg in reversed(literals):
        if seg in ALIASES:
            return ALIASES[seg]
    return None


# --- the matrix ------------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    app: FastAPI
    seed: Seed
    db_url: str
    eps: list[Endpoint]

    def counts(self) -> dict[str, int]:
        eng = make_engine(self.db_url)
        try:
            with Session(eng) as s:
                return row_counts(s)
        finally:
            eng.dispose()

    def call(
        self, ep: Endpoint, path: str, role: str | None, body: Any = None, query: str = ""
    ) -> Any:
        headers = self.seed.headers(role) if role else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if ep.multipart and isinstance(body, dict):
            kwargs["files"] = {k: ("m.pdf", v) for k, v in body.items() if isinstance(v, bytes)}
            kwargs["data"] = {k: str(v) for k, v in body.items() if not isinstance(v, bytes)}
        elif ep.method in WRITE_METHODS and ep.method != "DELETE":
            kwargs["json"] = body if body is not None else {}
        return self.client.request(ep.method, path + query, **kwargs)


@pytest.fixture
def world(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("EDGEWARDEN_DOCUMENTS_DIR", str(tmp_path / "documents"))
    monkeypatch.setenv("EDGEWARDEN_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    eng = make_engine(db_url)
    with Session(eng) as s:
        seed = seed_world(s, tmp_path)
    eng.dispose()
    app = create_app(db_url)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(client, app, seed, db_url, endpoints(app))
    get_settings.cache_clear()


def _list_query(ep: Endpoint, spec: dict[str, Any]) -> str:
    op = spec.get("paths", {}).get(ep.path, {}).get(ep.method.lower(), {})
    names = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
    return "?limit=500" if "limit" in names else ""


def _scope_queries(ep: Endpoint, spec: dict[str, Any], b: CountySeed) -> list[str]:
    """Query strings that ask a list for county B's objects by filter (county=, case_id=...)."""
    op = spec.get("paths", {}).get(ep.path, {}).get(ep.method.lower(), {})
    out = []
    for p in op.get("parameters", []):
        if p.get("in") != "query":
            continue
        name = p["name"]
        res, kind = _resource("/" + name, name)
        if name in ("county", "county_code"):
            out.append(f"?{name}={b.code}")
        elif res in COUNTY_OWNED:
            value = b.codes.get(res) if kind in ("code", "param") else b.ids.get(res)
            if value is None and kind == "param":
                value = b.ids.get(res)
            if value is not None:
                out.append(f"?{name}={value}")
    return out


def test_every_route_is_covered(world: World) -> None:
    """Every route's parameters can be filled for both counties; none is silently skipped."""
    unfilled = []
    for ep in world.eps:
        for side in (world.seed.a, world.seed.b):
            path, _, missing = fill(ep, world.seed, side)
            if path is None:
                unfilled.append(f"{ep}: cannot fill {missing} for county {side.code}")
    assert not unfilled, "routes the matrix cannot fill:\n" + "\n".join(unfilled)
    assert len(world.eps) >= 3


def test_unauthenticated_is_401(world: World) -> None:
    wrong = []
    for ep in world.eps:
        if ep.path in PUBLIC or ep.path in DESCRIPTION:
            continue
        path, _, _ = fill(ep, world.seed, world.seed.a)
        if path is None:
            continue
        r = world.call(ep, path, None)
        if r.status_code != 401:
            wrong.append(f"{ep}: {r.status_code} {r.text[:200]}")
    for path in PUBLIC:
        assert world.client.get(path).status_code == 200, path
    assert not wrong, "answered without a token:\n" + "\n".join(wrong)


def test_read_only_roles_never_write(world: World) -> None:
    """viewer and auditor get 403 on every non-GET, for both counties, and nothing changes."""
    spec = world.app.openapi()
    before = world.counts()
    wrong = []
    for ep in world.eps:
        if ep.method not in WRITE_METHODS:
            continue
        for side in (world.seed.a, world.seed.b):
            path, _, _ = fill(ep, world.seed, side)
            if path is None:
                continue
            for role in ("viewer", "auditor"):
                r = world.call(ep, path, role, example(ep.body_schema, spec))
                if r.status_code != 403:
                    wrong.append(f"{role} {ep} on {path}: {r.status_code} {r.text[:200]}")
                if leaks := secrets_in(r.text, world.seed):
                    wrong.append(f"{role} {ep}: secret in the answer: {leaks}")
    after = world.counts()
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert not wrong, "read-only roles were not refused:\n" + "\n".join(wrong)
    assert not changed, f"read-only roles changed the database: {changed}"


def test_county_operator_never_reaches_other_county(world: World) -> None:
    """County A's operator gets 404 (or 403) for every object of county B, by every method;
    city_admin reaches the same paths (so the 404 is about scope, not a wrong path)."""
    spec = world.app.openapi()
    b = world.seed.b
    wrong = []
    targets: list[tuple[Endpoint, str]] = []
    for ep in world.eps:
        path, owned, _ = fill(ep, world.seed, b)
        if path is None or not owned:
            continue
        targets.append((ep, path))
        if ep.method in READ_METHODS:
            ctl = world.call(ep, path, "city_admin")
            if not 200 <= ctl.status_code < 300:
                wrong.append(f"control: city_admin {ep} on {path}: {ctl.status_code}")
    before = world.counts()
    checked = 0
    for ep, path in targets:
        r = world.call(ep, path, "county_operator", example(ep.body_schema, spec))
        checked += 1
        if r.status_code not in (403, 404):
            wrong.append(f"county_operator {ep} on {path}: {r.status_code} {r.text[:300]}")
        # The refusal may echo what the caller sent, nothing more of county B.
        if leaks := [m for m in b.markers if m in r.text and m not in path]:
            wrong.append(f"county_operator {ep} on {path}: names county B in the refusal {leaks}")
    after = world.counts()
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert checked > 0
    assert not wrong, "county scope broken:\n" + "\n".join(wrong)
    assert not changed, f"refused requests changed the database: {changed}"


def _scan(
    world: World,
    role: str,
    ep: Endpoint,
    path: str,
    r: Any,
    wrong: list[str],
    *,
    as_b: bool = False,
) -> None:
    """Append what is wrong with answer ``r``; ``as_b`` applies the county-B scan to any role."""
    if r.status_code >= 500:
        wrong.append(f"{role} {ep} on {path}: {r.status_code} {r.text[:300]}")
    if leaks := secrets_in(r.text, world.seed):
        wrong.append(f"{role} {ep} on {path}: secret in the answer: {leaks}")
    if not (role == "county_operator" or as_b) or not 200 <= r.status_code < 300:
        return
    try:
        body = r.json()
        text = json.dumps(body, ensure_ascii=False)
    except ValueError:
        body, text = None, r.text
    if hits := sorted(m for m in world.seed.b.markers if m in text):
        wrong.append(f"{role} {ep} on {path}: county B strings {hits[:8]}")
    if body is not None and (ids := leaked_ids(body, route_resource(ep.path), world.seed.b)):
        wrong.append(f"{role} {ep} on {path}: county B ids {ids[:8]}")


def test_the_scan_sees_county_b(world: World) -> None:
    """The leak scan is not blind: city_admin's lists (which rightly hold county B) trip it,
    by strings and by ids, on the main lists of the issue."""
    spec = world.app.openapi()
    flagged: dict[str, list[str]] = {}
    for ep in world.eps:
        if ep.method != "GET" or ep.params:
            continue
        r = world.call(ep, ep.path, "city_admin", query=_list_query(ep, spec))
        found: list[str] = []
        _scan(world, "city_admin", ep, ep.path, r, found, as_b=True)
        flagged[ep.path] = found
    for path in ("/api/v1/institutions", "/api/v1/cases", "/api/v1/detections"):
        assert path in flagged, f"{path} is not served"
        assert any("strings" in f for f in flagged[path]), (path, flagged[path])
        assert any("ids" in f for f in flagged[path]), (path, flagged[path])


def test_reads_leak_nothing(world: World) -> None:
    """Every GET by every role on county A's objects and on the lists: no 5xx, no secret, and
    nothing of county B in a county operator's 2xx answer, also when it filters for B."""
    spec = world.app.openapi()
    wrong: list[str] = []
    ok = 0
    for ep in world.eps:
        if ep.method not in READ_METHODS:
            continue
        path, _, _ = fill(ep, world.seed, world.seed.a)
        if path is None:
            continue
        queries = [_list_query(ep, spec), *_scope_queries(ep, spec, world.seed.b)]
        for role in ("viewer", "auditor", "city_admin", "county_operator"):
            for q in queries if role == "county_operator" else queries[:1]:
                r = world.call(ep, path, role, query=q)
                ok += 200 <= r.status_code < 300
                _scan(world, role, ep, path + q, r, wrong)
        own = world.call(ep, path, "county_operator", query=queries[0])
        if ep.params and not 200 <= own.status_code < 300 and own.status_code != 403:
            wrong.append(f"county_operator {ep} on its own {path}: {own.status_code}")
    assert ok > 0
    assert not wrong, "leaks or errors:\n" + "\n".join(wrong)


def test_writes_in_scope_leak_nothing(world: World) -> None:
    """county_operator and city_admin writes on county A's objects with a minimal valid body:
    no 5xx and no secret in any answer (run last: these change the data)."""
    spec = world.app.openapi()
    wrong: list[str] = []
    for ep in world.eps:
        if ep.method not in WRITE_METHODS:
            continue
        path, _, _ = fill(ep, world.seed, world.seed.a)
        if path is None:
            continue
        for role in ("county_operator", "city_admin"):
            r = world.call(ep, path, role, example(ep.body_schema, spec))
            _scan(world, role, ep, path, r, wrong)
    assert not wrong, "leaks or errors:\n" + "\n".join(wrong)
