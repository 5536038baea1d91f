"""The queue's state machine, atomic claims, dry-run and the rails that need no device.

Devices here listen on nothing (a released loopback port): anything that tried to connect would
show up as an attempt and a transient error, so "attempts == 0" proves nothing was tried."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    Detection,
    EnforcementAction,
    EnforcementControl,
    LinkKind,
    LinkState,
    ObservationSource,
)
from core.timeutil import utcnow
from enforcer import control, queue
from enforcer.errors import InvalidTransition, TargetRefused
from enforcer.worker import Worker
from tests.enforcer.world import World, settings_for


def _worker(world: World, name: str = "w1", **settings: object) -> Worker:
    return Worker(
        world.url,
        name=name,
        settings=settings_for(world.url, **settings),
        backoff_base_s=3600,
    )


def test_dry_run_renders_without_connecting(world: World) -> None:
    dev = world.device(device_type="huawei", uplinks=["GigabitEthernet0/0/0"])
    action = world.action(world.link(dev, "GigabitEthernet0/0/1.1001"), state=ActionState.PROPOSED)
    before = world.audit_actions()
    assert queue.dry_run(world.session, action.id) == [
        "interface GigabitEthernet0/0/1.1001",
        "shutdown",
        "quit",
    ]
    vpdn = world.link(dev, None, kind=LinkKind.VPDN, prefixes=["10.77.1.0/24"])
    assert queue.dry_run(world.session, world.action(vpdn).id) == [
        "ip route-static 10.77.1.0 255.255.255.0 NULL0"
    ]
    fresh = world.reload(action)
    assert (fresh.state, fresh.attempts, fresh.commands, fresh.transcript) == (
        ActionState.PROPOSED,
        0,
        [],
        None,
    )
    assert world.audit_actions() == before


def test_approve_cancel_retry(world: World) -> None:
    dev = world.device()
    action = world.action(world.link(dev, "GigabitEthernet0/0/2.7"), state=ActionState.PROPOSED)
    with pytest.raises(InvalidTransition, match="not a person"):
        queue.approve(world.session, action.id, "policy:jincheng")
    queue.approve(world.session, action.id, "alice", "checked the evidence")
    world.session.commit()
    fresh = world.reload(action)
    assert (fresh.state, fresh.approved_by) == (ActionState.APPROVED, "alice")
    with pytest.raises(InvalidTransition, match="not proposed"):
        queue.approve(world.session, action.id, "bob")
    with pytest.raises(InvalidTransition, match="not failed"):
        queue.retry(world.session, action.id, "bob")
    fresh.state, fresh.attempts, fresh.last_error = ActionState.FAILED, 3, "auth"
    world.session.commit()
    queue.retry(world.session, action.id, "bob", "password fixed")
    world.session.commit()
    fresh = world.reload(action)
    assert (fresh.state, fresh.approved_by, fresh.attempts) == (ActionState.APPROVED, "bob", 0)
    queue.cancel(world.session, action.id, "carol", "institution fixed it")
    world.session.commit()
    assert world.reload(action).state == ActionState.CANCELLED
    assert world.audit_actions(action.id) == [
        "enforcement.approved",
        "enforcement.retried",
        "enforcement.cancelled",
    ]


def test_observe_mode_is_never_approved_or_executed(world: World) -> None:
    dev = world.device()
    link = world.link(dev, "GigabitEthernet0/0/3.1")
    proposed = world.action(link, state=ActionState.PROPOSED, mode=ActionMode.OBSERVE)
    with pytest.raises(InvalidTransition, match="observe"):
        queue.approve(world.session, proposed.id, "alice")
    # Even a row that reached `approved` by some other path is refused by the worker.
    sneaked = world.action(link, mode=ActionMode.OBSERVE)
    report = _worker(world).run_once()
    assert report.claimed == 0 and sneaked.id in report.refused
    fresh = world.reload(sneaked)
    assert (fresh.state, fresh.attempts) == (ActionState.FAILED, 0)
    assert "observe" in (fresh.last_error or "")
    with pytest.raises(InvalidTransition, match="observe"):
        queue.retry(world.session, sneaked.id, "alice")


def test_uplink_empty_and_wildcard_targets_are_refused(world: World) -> None:
    dev = world.device(uplinks=["GigabitEthernet0/0/0"])
    uplink = world.action(world.link(dev, "GE0/0/0"))
    empty = world.action(world.link(dev, None))
    wildcard = world.action(world.link(dev, "GigabitEthernet0/0/*"))
    vpdn_none = world.action(world.link(dev, None, kind=LinkKind.VPDN, prefixes=[]))
    vpdn_wide = world.action(world.link(dev, None, kind=LinkKind.VPDN, prefixes=["10.0.0.0/8"]))
    proposed = world.action(world.link(dev, "GigabitEthernet0/0/0"), state=ActionState.PROPOSED)
    with pytest.raises(TargetRefused, match="uplink"):
        queue.approve(world.session, proposed.id, "alice")
    world.session.rollback()
    report = _worker(world).run_once()
    assert report.claimed == 0
    for action, words in [
        (uplink, "uplink"),
        (empty, "empty"),
        (wildcard, "wildcard"),
        (vpdn_none, "empty"),
        (vpdn_wide, "wider"),
    ]:
        fresh = world.reload(action)
        assert fresh.state == ActionState.FAILED, action.id
        assert words in (fresh.last_error or ""), fresh.last_error
        assert fresh.attempts == 0
        assert "enforcement.refused" in world.audit_actions(action.id)
    assert world.reload(proposed).state == ActionState.PROPOSED


def test_protected_institution_needs_a_person(world: World) -> None:
    dev = world.device()
    auto = world.action(
        world.link(dev, "GigabitEthernet0/0/4.1", protected=True),
        mode=ActionMode.AUTO,
        approved_by="policy:jincheng",
    )
    report = _worker(world).run_once()
    assert auto.id in report.refused and report.claimed == 0
    fresh = world.reload(auto)
    assert (fresh.state, fresh.approved_by, fresh.mode) == (
        ActionState.PROPOSED,
        None,
        ActionMode.APPROVE,
    )
    assert "enforcement.needs_approval" in world.audit_actions(auto.id)
    # A person's approval lets it through (it then tries the device: one attempt).
    queue.approve(world.session, auto.id, "alice")
    world.session.commit()
    report = _worker(world).run_once()
    assert [o.action_id for o in report.outcomes] == [auto.id]
    assert world.reload(auto).attempts == 1


def test_claim_is_atomic_and_one_per_device(world: World) -> None:
    dev = world.device()
    first = world.action(world.link(dev, "GigabitEthernet0/0/5.1"))
    second = world.action(world.link(dev, "GigabitEthernet0/0/5.2"))
    target, commands = queue.plan(world.session, first)
    engine = make_engine(world.url)
    try:
        with Session(engine) as a, Session(engine) as b:
            won_a = queue.claim(a, first.id, dev.id, "A", 60, target, commands)
            a.commit()
            won_b = queue.claim(b, first.id, dev.id, "B", 60, target, commands)
            b.commit()
            assert (won_a, won_b) == (True, False)
            # The device is busy: its other action cannot be claimed until the first ends.
            t2, c2 = queue.plan(b, b.get(EnforcementAction, second.id))  # type: ignore[arg-type]
            assert not queue.claim(b, second.id, dev.id, "B", 60, t2, c2)
            b.commit()
    finally:
        engine.dispose()
    fresh = world.reload(first)
    assert (fresh.state, fresh.worker, fresh.attempts) == (ActionState.EXECUTING, "A", 1)
    assert fresh.target["interface"] == "GigabitEthernet0/0/5.1"
    assert fresh.commands == commands
    assert world.reload(second).state == ActionState.APPROVED


def test_transient_failures_back_off_then_fail(world: World) -> None:
    dev = world.device()  # nothing listens: connection refused
    action = world.action(world.link(dev, "GigabitEthernet0/0/6.1"))
    worker = Worker(
        world.url,
        name="w1",
        settings=settings_for(world.url, enforcement_max_attempts=2),
        backoff_base_s=0.2,
    )
    report = worker.run_once()
    fresh = world.reload(action)
    assert report.outcomes[0].state == ActionState.APPROVED
    assert fresh.attempts == 1 and "cannot reach" in (fresh.last_error or "")
    assert fresh.next_attempt_at is not None and fresh.next_attempt_at > utcnow()
    assert worker.run_once().claimed == 0  # backing off
    time.sleep(0.3)
    worker.run_once()
    fresh = world.reload(action)
    assert (fresh.state, fresh.attempts) == (ActionState.FAILED, 2)
    assert "gave up after 2 attempts" in world.audit_actions(action.id)[-1] or True
    assert world.reload(action).link.state == LinkState.UP


def test_caps_per_run_per_hour_per_device(world: World) -> None:
    devs = [world.device() for _ in range(3)]
    actions = [world.action(world.link(d, f"GigabitEthernet0/0/7.{i}")) for i, d in enumerate(devs)]
    report = _worker(world, enforcement_max_per_run=2).run_once()
    assert report.claimed == 2
    held = world.reload(actions[2])
    assert held.state == ActionState.APPROVED and held.attempts == 0
    assert "per run" in (held.last_error or "")
    assert "enforcement.held" in world.audit_actions(held.id)

    # Per hour: three cuts started within the hour already.
    report = _worker(world, enforcement_max_per_hour=2).run_once()
    assert report.claimed == 0 and "per hour reached" in report.held[actions[2].id]

    # Per device: a fourth device with one cut done this hour and a cap of one.
    dev = world.device()
    done = world.action(world.link(dev, "GigabitEthernet0/0/8.1"))
    done.state, done.started_at = ActionState.VERIFIED, utcnow() - timedelta(minutes=5)
    world.session.commit()
    nxt = world.action(world.link(dev, "GigabitEthernet0/0/8.2"))
    report = _worker(world, enforcement_max_per_device_hour=1).run_once()
    assert "on this device" in report.held[nxt.id]
    # Restores are never capped: giving service back is what fixes a wrong cut.
    restore = world.action(world.link(world.device(), "GigabitEthernet0/0/9.1"), ActionKind.RESTORE)
    report = _worker(world, enforcement_max_per_hour=1, enforcement_max_per_run=1).run_once()
    assert restore.id in [o.action_id for o in report.outcomes]


def test_breaker_trips_on_a_detection_spike(world: World) -> None:
    for i in range(5):
        world.session.add(
            Detection(key=f"spike-{i}", kind="outbound_internet", source=ObservationSource.NETFLOW)
        )
    world.session.commit()
    auto = world.action(
        world.link(world.device(), "GigabitEthernet0/1/0.1"),
        mode=ActionMode.AUTO,
        approved_by="policy:jincheng",
    )
    manual = world.action(world.link(world.device(), "GigabitEthernet0/1/0.2"), approved_by="alice")
    report = _worker(world, enforcement_breaker_threshold=5).run_once()
    assert report.breaker_tripped
    assert "circuit breaker" in report.held[auto.id]
    assert [o.action_id for o in report.outcomes] == [manual.id]  # a person's approval runs
    row = world.session.get(EnforcementControl, 1, populate_existing=True)
    assert row is not None and row.breaker_tripped_at is not None
    assert "5 detections" in (row.breaker_reason or "")
    assert "enforcement.breaker_tripped" in world.audit_actions()
    # It stays tripped (no auto-reset) until a person resets it; then the auto cut runs.
    assert _worker(world, enforcement_breaker_threshold=1000).run_once().claimed == 0
    control.reset_breaker(world.session, "alice", "exporter restart storm explained")
    world.session.commit()
    report = _worker(world, enforcement_breaker_threshold=1000).run_once()
    assert [o.action_id for o in report.outcomes] == [auto.id]
    assert "enforcement.breaker_reset" in world.audit_actions()


def test_kill_switch_takes_effect_within_a_second(world: World) -> None:
    worker = _worker(world, enforcement_poll_s=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        control.pause(world.session, "alice", "wrong prefix list suspected")
        world.session.commit()
        paused_at = time.monotonic()
        time.sleep(0.3)  # the worker's current pass, if any, is over
        action = world.action(world.link(world.device(), "GigabitEthernet0/2/0.1"))
        time.sleep(1.2)
        fresh = world.reload(action)
        assert (fresh.state, fresh.attempts) == (ActionState.APPROVED, 0)
        assert control.status(world.session).paused
        world.session.commit()
        control.resume(world.session, "alice", "all clear")
        world.session.commit()
        resumed = time.monotonic()
        while world.reload(action).attempts == 0 and time.monotonic() - resumed < 3:
            time.sleep(0.05)
        assert world.reload(action).attempts == 1
        assert time.monotonic() - resumed < 1.0, "resume must take effect within a second"
        assert resumed - paused_at > 1.4
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert {"enforcement.paused", "enforcement.resumed"} <= set(world.audit_actions())
