"""Webhooks (issue #7): the audit chain fanned out to subscribers, signed, retried, dead-lettered.

Events are read from ``audit_events`` (every decision is already recorded there, in the same
transaction as the change), so nothing the rules engine or the enforcer does can be missed or
sent twice across a restart. See docs/webhooks.md."""

from api.webhooks.dispatcher import DispatchStats, dispatch_once, run_dispatcher
from api.webhooks.events import EVENT_TYPES, FORMATS

__all__ = ["EVENT_TYPES", "FORMATS", "DispatchStats", "dispatch_once", "run_dispatcher"]
