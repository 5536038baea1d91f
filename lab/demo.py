"""`edgewarden demo`: the Jincheng three-strike story on the simulated edge, end to end.

It starts the lab (``lab.edge.EdgeLab``) and a real ``edgewarden serve`` process on loopback,
then drives the story only through what an operator has: NetFlow from the edge, the REST API
and the devices' own state. Each step is printed with the time since the start, so the output
reads the same in a terminal and in a CI log. Jincheng art. 14 is the story:

1. a pharmacy's terminal reaches the internet → detection → strike-1 case → cut approved,
   applied and verified on the emulated router → written explanation filed → the county
   approves → link restored and verified;
2. a second finding → strike 2 → rectification report → the city confirms → restored;
3. a third finding → the city determines bad consequences → blacklisted, reconnection refused;
plus an unallocated source address behind a clinic's line (art. 11), a forged exporter whose
flows are ignored, and the 24-hour summary report (art. 17)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console

from lab.edge import EdgeLab
from lab.flowgen import Flow

T = TypeVar("T")

INTERNET = ["203.0.113.10", "198.51.100.20", "192.0.2.30"]  # documentation prefixes: data only
FORGED_SOURCE = "127.0.0.77"  # a loopback address no exporter is registered for


class DemoFailed(RuntimeError):
    """A step did not happen as the story says; the message names the step."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minimal_pdf(text: str) -> bytes:
    """A valid one-page PDF (what an institution would upload), built without a renderer."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@dataclass
class Cast:
    """Who the story is about, chosen from the inventory."""

    pharmacy: str
    pharmacy_name: str
    county: str
    device: str
    prefix: str
    terminal: str
    clinic: str
    clinic_name: str
    clinic_device: str
    clinic_interface: str
    stray_ip: str


def choose_cast(data: dict[str, Any]) -> Cast:
    """A pharmacy and a clinic with leased lines on emulated (VRP/Comware) routers."""
    devices = {d["name"]: d for d in data.get("devices") or []}
    insts = {i["code"]: i for i in data.get("institutions") or []}
    allocs: dict[str, list[str]] = {}
    for a in data.get("ip_allocations") or []:
        allocs.setdefault(a["institution"], []).append(a["prefix"])
    links: dict[str, list[dict[str, Any]]] = {}
    for link in data.get("links") or []:
        links.setdefault(link["institution"], []).append(link)

    def candidate(
        kind: str, exclude: set[str], link_kind: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        for code, inst in insts.items():
            if inst["kind"] != kind or inst.get("protected") or code in exclude:
                continue
            if inst.get("status", "active") != "active" or code not in allocs:
                continue
            mine = links.get(code) or []
            if len(mine) != 1 or mine[0].get("kind") != link_kind:
                continue
            dev = devices[mine[0]["device"]]
            if dev.get("device_type") in ("huawei", "hp_comware"):
                return inst, mine[0]
        raise DemoFailed(
            f"the inventory has no unprotected {kind} with a {link_kind} on an emulated router"
        )

    # Pharmacies reach the backbone over VPDN (cut with a blackhole route on the LNS);
    # the clinic has a leased line (its sub-interface is what SNMP and NetFlow name).
    pharmacy, p_link = candidate("pharmacy", set(), "vpdn")
    clinic, c_link = candidate("hospital", {pharmacy["code"]}, "leased_line")
    net = ipaddress.ip_network(allocs[pharmacy["code"]][0])
    allocated = [ipaddress.ip_network(p) for ps in allocs.values() for p in ps]
    stray = next(
        ip
        for ip in ipaddress.ip_network("10.145.250.0/24").hosts()
        if not any(ip in n for n in allocated)
    )
    return Cast(
        pharmacy=pharmacy["code"],
        pharmacy_name=pharmacy["name"],
        county=str(pharmacy["county"]),
        device=p_link["device"],
        prefix=allocs[pharmacy["code"]][0],
        terminal=str(next(net.hosts())),
        clinic=clinic["code"],
        clinic_name=clinic["name"],
        clinic_device=c_link["device"],
        clinic_interface=c_link["interface"],
        stray_ip=str(stray),
    )


class Story:
    """The demo's state and its narrator."""

    def __init__(self, console: Console, workdir: Path, timeout: float) -> None:
        self.console = console
        self.workdir = workdir
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.lab: EdgeLab | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        self.api: httpx.Client | None = None
        self.county_api: httpx.Client | None = None
        self.base = ""
        self.admin_token = ""

    # ------------------------------------------------------------------ narration

    def say(self, text: str, mark: str = "•") -> None:
        self.console.print(f"[dim][{time.monotonic() - self.t0:6.1f}s][/dim] {mark} {text}")

    def step(self, title: str) -> None:
        self.console.print()
        self.say(f"[bold]{title}[/bold]", "▶")

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float | None = None) -> T:
        """Poll ``probe`` until it returns something; DemoFailed naming ``what`` otherwise."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self.console.status(f"waiting: {what}"):
            while time.monotonic() < deadline:
                got = probe()
                if got is not None:
                    return got
                if self.serve is not None and self.serve.poll() is not None:
                    raise DemoFailed(f"the service exited ({self.serve.returncode}) while {what}")
                time.sleep(0.2)
        raise DemoFailed(f"timed out after {timeout or self.timeout:.0f} s: {what}")

    # ------------------------------------------------------------------ API helpers

    def get(self, path: str, client: httpx.Client | None = None, **params: Any) -> Any:
        c = client or self.api
        assert c is not None
        r = c.get(path, params={k: v for k, v in params.items() if v is not None})
        if r.status_code != 200:
            raise DemoFailed(f"GET {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def post(
        self,
        path: str,
        body: Any = None,
        client: httpx.Client | None = None,
        expect: int = 200,
        **kw: Any,
    ) -> Any:
        c = client or self.api
        assert c is not None
        r = c.post(path, json=body, **kw) if body is not None or not kw else c.post(path, **kw)
        if r.status_code != expect and not (expect == 200 and r.status_code in (200, 201, 202)):
            raise DemoFailed(f"POST {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    # ------------------------------------------------------------------ bring-up

    def start(self) -> Cast:
        from core import migrate
        from core.db import session_scope
        from core.inventory import import_file
        from core.models import Role
        from core.settings import get_settings
        from core.tokens import create_token

        self.step("bring up the simulated carrier edge and the service (all on loopback)")
        ipfix_port = free_port(socket.SOCK_DGRAM)
        netflow_port = free_port(socket.SOCK_DGRAM)
        api_port = free_port()
        self.lab = EdgeLab(workdir=self.workdir / "lab", collector=("127.0.0.1", ipfix_port))
        self.say(
            f"edge: {len(self.lab.ssh_ports)} routers on SSH (VRP/Comware emulator, "
            f"fake-switches for Cisco), SNMP agents (snmpsim), IPFIX exporter → :{ipfix_port}"
        )
        db = self.workdir / "edgewarden.db"
        env = {
            "EDGEWARDEN_DATABASE_URL": f"sqlite:///{db}",
            "EDGEWARDEN_API_HOST": "127.0.0.1",
            "EDGEWARDEN_API_PORT": str(api_port),
            "EDGEWARDEN_NETFLOW_HOST": "127.0.0.1",
            "EDGEWARDEN_NETFLOW_PORT": str(netflow_port),
            "EDGEWARDEN_IPFIX_PORT": str(ipfix_port),
            "EDGEWARDEN_DOCUMENTS_DIR": str(self.workdir / "documents"),
            "EDGEWARDEN_REPORTS_DIR": str(self.workdir / "reports"),
            "EDGEWARDEN_ENFORCEMENT_POLL_S": "0.2",
            # the demo sweeps right after start; see the new interface map within seconds
            "EDGEWARDEN_NETFLOW_RELOAD_S": "2",
            "EDGEWARDEN_LOG_JSON": "false",
        }
        if not os.environ.get("EDGEWARDEN_SECRET_KEY"):
            from core.crypto import generate_key

            env["EDGEWARDEN_SECRET_KEY"] = generate_key()
        os.environ.update(env)
        get_settings.cache_clear()
        migrate.upgrade(env["EDGEWARDEN_DATABASE_URL"])
        cast = choose_cast(self.lab.data)
        with session_scope(env["EDGEWARDEN_DATABASE_URL"]) as session:
            result = import_file(session, self.lab.inventory_path, actor="demo")
            _, self.admin_token = create_token(
                session, role=Role.CITY_ADMIN, name="demo-city-admin", actor="demo"
            )
            _, county_token = create_token(
                session,
                role=Role.COUNTY_OPERATOR,
                counties=[cast.county],
                name=f"demo-county-{cast.county}",
                actor="demo",
            )
        self.say(f"inventory imported: {result}")
        log = open(self.workdir / "serve.log", "wb")  # noqa: SIM115 - the child writes it
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "core", "serve"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.base = f"http://127.0.0.1:{api_port}"
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        self.api = httpx.Client(base_url=self.base + "/api/v1", headers=headers, timeout=30)
        self.county_api = httpx.Client(
            base_url=self.base + "/api/v1",
            headers={"Authorization": f"Bearer {county_token}"},
            timeout=30,
        )

        def ready() -> bool | None:
            try:
                return httpx.get(self.base + "/readyz", timeout=1).status_code == 200 or None
            except httpx.HTTPError:
                return None

        self.wait("the service answers /readyz", ready, timeout=60)
        self.say(f"edgewarden serve (pid {self.serve.pid}) answers on {self.base}")
        sweep = self.post("/sweeps", {}, expect=202)
        sweep_id = sweep["id"]

        def swept() -> dict[str, Any] | None:
            s = self.get(f"/sweeps/{sweep_id}")
            return s if s.get("status") not in ("running", "pending", None) else None

        done = self.wait("the first SNMP sweep", swept, timeout=120)
        self.say(f"SNMP sweep #{sweep_id}: {done.get('status')} — interfaces and ARP tables read")
        return cast

    def stop(self) -> None:
        for client in (self.api, self.county_api):
            if client is not None:
                client.close()
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.serve.pid, signal.SIGKILL)
                self.serve.wait()
        if self.lab is not None:
            self.lab.stop()

    # ------------------------------------------------------------------ the story

    def flows_to_internet(self, cast: Cast, dst: str) -> None:
        assert self.lab is not None
        flows = [
            Flow(cast.terminal, dst, 443, sport=50000 + i, duration_ms=90_000) for i in range(5)
        ]
        self.lab.send_flows(cast.device, flows)
        self.say(
            f"{cast.device} exports 5 flows: {cast.terminal} ({cast.pharmacy_name}) → {dst}:443"
        )

    def new_case(self, institution: str, known: set[int]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for case in self.get("/cases", institution=institution, limit=50)["items"]:
                if case["id"] not in known:
                    return dict(case)
            return None

        case = self.wait(f"a new case for {institution}", probe)
        known.add(case["id"])
        return case

    def action(self, case_id: int, kind: str, states: set[str]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for a in self.get("/actions", case_id=case_id, kind=kind, limit=50)["items"]:
                if a["state"] in states:
                    return dict(a)
                if a["state"] == "failed":
                    raise DemoFailed(f"action {a['id']} failed: {a.get('last_error')}")
            return None

        return self.wait(f"a {kind} action on case {case_id} ({'/'.join(sorted(states))})", probe)

    def cut(self, cast: Cast, case: dict[str, Any]) -> None:
        proposed = self.action(case["id"], "cut", {"proposed", "approved", "executing", "verified"})
        if proposed["state"] == "proposed":
            commands = self.get(f"/actions/{proposed['id']}/dry-run")
            self.say(f"cut #{proposed['id']} proposed (NetFlow alone: a person approves); dry run:")
            for line in commands.get("commands", []):
                self.say(f"    {line}", " ")
            self.post(
                f"/actions/{proposed['id']}/approve",
                {"reason": "demo: city NOC approves the cut (Jincheng art. 14)"},
            )
            self.say(f"cut #{proposed['id']} approved by the city admin")
        done = self.action(case["id"], "cut", {"verified"})
        assert self.lab is not None
        routes = self.lab.blackholes(cast.device)
        self.say(
            f"cut #{done['id']} verified on {cast.device}: blackhole routes {', '.join(routes)}",
            "✓",
        )
        if not any(cast.prefix.split("/")[0] in r for r in routes):
            raise DemoFailed(f"{cast.prefix} is not blackholed on {cast.device}")

    def upload(
        self, case_id: int, kind: str, text: str, client: httpx.Client | None = None
    ) -> None:
        files = {"file": (f"{kind}.pdf", minimal_pdf(text), "application/pdf")}
        doc = self.post(
            f"/cases/{case_id}/documents",
            client=client,
            expect=201,
            files=files,
            data={"kind": kind, "note": "demo"},
        )
        self.say(f"document {kind} filed on case {case_id} (sha256 {str(doc.get('sha256'))[:12]}…)")

    def transition(
        self,
        case_id: int,
        event: str,
        reason: str,
        client: httpx.Client | None = None,
        expect: int = 200,
    ) -> Any:
        return self.post(
            f"/cases/{case_id}/transitions",
            {"event": event, "reason": reason},
            client=client,
            expect=expect,
        )

    def restored(self, cast: Cast, case_id: int) -> None:
        done = self.action(case_id, "restore", {"verified"})
        assert self.lab is not None
        routes = self.lab.blackholes(cast.device)
        self.say(f"restore #{done['id']} verified: no blackhole for {cast.prefix}", "✓")
        if any(cast.prefix.split("/")[0] in r for r in routes):
            raise DemoFailed(f"{cast.prefix} is still blackholed on {cast.device}")

    def play(self, cast: Cast) -> int:
        known: set[int] = set()
        self.step(f"strike 1 — {cast.pharmacy} {cast.pharmacy_name} reaches the internet")
        self.flows_to_internet(cast, INTERNET[0])
        case = self.new_case(cast.pharmacy, known)
        self.say(
            f"case {case['id']}: strike {case['strike']}, state {case['state']} (Jincheng art. 14)",
            "✓",
        )
        self.cut(cast, case)
        self.upload(
            case["id"], "written_explanation", "Written explanation (demo)", self.county_api
        )
        self.transition(case["id"], "reconnect", "written explanation received", self.county_api)
        self.say(f"county {cast.county} approves reconnection (art. 14, art. 4)")
        self.restored(cast, case["id"])

        self.step("strike 2 — found again: rectification, the city confirms")
        self.flows_to_internet(cast, INTERNET[1])
        case = self.new_case(cast.pharmacy, known)
        self.say(f"case {case['id']}: strike {case['strike']}, state {case['state']}", "✓")
        self.cut(cast, case)
        refused = self.transition(
            case["id"], "reconnect", "county tries to reconnect", self.county_api, expect=409
        )
        self.say(f"county reconnection refused: {refused.get('detail')}", "✗")
        self.upload(case["id"], "rectification_report", "Rectification report (demo)")
        self.transition(case["id"], "reconnect", "rectification verified by the city bureau")
        self.say("the city confirms the rectification and reconnection")
        self.restored(cast, case["id"])

        self.step("strike 3 — bad consequences: blacklist, never reconnected")
        self.flows_to_internet(cast, INTERNET[2])
        case = self.new_case(cast.pharmacy, known)
        self.say(f"case {case['id']}: strike {case['strike']}, state {case['state']}", "✓")
        self.cut(cast, case)
        self.transition(case["id"], "consequences_found", "patient data reached the internet")
        inst = self.get(f"/institutions/{cast.pharmacy}")
        self.say(f"{cast.pharmacy} status: {inst['status']} (service agreement terminated)", "✓")
        if inst["status"] != "blacklisted":
            raise DemoFailed(f"{cast.pharmacy} is {inst['status']}, not blacklisted")
        again = self.transition(case["id"], "reconnect", "asks to reconnect", expect=409)
        self.say(f"reconnection refused: {again.get('detail')}", "✗")
        report_case = case["id"]

        self.step(f"an unallocated address behind {cast.clinic} {cast.clinic_name} (art. 11)")
        assert self.lab is not None
        ifindex = self.lab.if_index(cast.clinic_device, cast.clinic_interface)
        self.lab.send_flows(
            cast.clinic_device,
            [Flow(cast.stray_ip, "10.140.9.10", 443, input_if=ifindex) for _ in range(3)],
        )
        self.say(
            f"{cast.clinic_device} exports flows from {cast.stray_ip} on {cast.clinic_interface}"
        )

        def stray() -> dict[str, Any] | None:
            items = self.get(
                "/detections", kind="unauthorized_ip", institution=cast.clinic, limit=50
            )["items"]
            for item in items:
                detail = self.get(f"/detections/{item['id']}")
                if cast.stray_ip in str(detail.get("evidence")):
                    return dict(detail)
            return None

        det = self.wait(f"an unauthorized_ip detection for {cast.stray_ip}", stray)
        self.say(f"detection {det['id']}: unauthorized_ip {cast.stray_ip} on {cast.clinic}", "✓")
        if det.get("case_id"):
            vcase = self.get(f"/cases/{det['case_id']}")
            actions = self.get("/actions", case_id=det["case_id"], limit=10)["items"]
            pending = ", ".join(f"{a['kind']} #{a['id']} {a['state']}" for a in actions) or "none"
            self.say(
                f"case {vcase['id']} ({vcase['step']}, {vcase['state']}): a person decides the "
                f"cut (Jincheng art. 11); actions: {pending}"
            )

        self.step("a forged exporter: flows from an address nobody registered")
        self.lab.send_from(
            FORGED_SOURCE,
            cast.device,
            [Flow(str(ipaddress.ip_address(cast.terminal)), "203.0.113.99", 443) for _ in range(5)],
        )

        def dropped() -> float | None:
            r = self.api.get(self.base + "/metrics") if self.api else None
            if r is None or r.status_code != 200:
                return None
            for line in r.text.splitlines():
                if (
                    line.startswith("edgewarden_netflow_unknown_exporter_datagrams")
                    and FORGED_SOURCE in line
                ):
                    return float(line.rsplit(" ", 1)[1])
            return None

        n = self.wait("the collector to count the forged datagrams", dropped)
        forged = self.get("/detections", limit=500)["items"]
        if any("203.0.113.99" in str(d) for d in forged):
            raise DemoFailed("a forged flow made a detection")
        self.say(f"{n:.0f} datagram(s) from {FORGED_SOURCE} counted and dropped; no detection", "✓")

        self.step("the 24-hour summary report (Jincheng art. 17)")
        assert self.api is not None
        r = self.api.get(f"/cases/{report_case}/report", params={"format": "md"})
        if r.status_code != 200:
            raise DemoFailed(f"report: {r.status_code} {r.text[:300]}")
        path = self.workdir / f"report-case-{report_case}.md"
        path.write_text(r.text, encoding="utf-8")
        for heading in ("事件起因", "处置过程", "影响范围", "整改措施"):
            if heading not in r.text:
                raise DemoFailed(f"the report lacks the section {heading}")
        self.say(f"report for case {report_case} written: {path}", "✓")
        return report_case


def run(workdir: Path | None, keep: bool, timeout: float, console: Console | None = None) -> int:
    """Run the demo; returns the exit code (0: the story ran to the end)."""
    console = console or Console(highlight=False)
    own = workdir is None
    wd = Path(workdir or tempfile.mkdtemp(prefix="ew-demo-"))
    wd.mkdir(parents=True, exist_ok=True)
    story = Story(console, wd, timeout)
    try:
        cast = story.start()
        story.play(cast)
        story.step("done")
        story.say(f"web UI and API: {story.base}/  (token below, city_admin)")
        console.print(story.admin_token)
        if keep:
            story.say("--keep: the lab and the service run until Ctrl-C")
            try:
                while story.serve is not None and story.serve.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    except DemoFailed as exc:
        story.say(f"[red]demo failed:[/red] {exc}", "✗")
        story.say(f"service log: {wd / 'serve.log'}")
        return 1
    finally:
        story.stop()
        if own and not keep:
            import shutil

            shutil.rmtree(wd, ignore_errors=True)
