"""What can go wrong while enforcing, sorted by what the queue does about it.

Transient failures (the device did not answer) are retried with backoff; permanent ones (the
device refused us or our commands) fail the action until a person retries it; refusals are the
safety rails saying no before anything is sent."""

from __future__ import annotations

from core.errors import EdgeWardenError


class EnforcementError(EdgeWardenError):
    """Base of the enforcer's operator-facing errors."""


class ActionNotFound(EnforcementError):
    """No enforcement action has the given id."""


class InvalidTransition(EnforcementError):
    """The action is not in a state that allows the requested change."""


class TargetRefused(EnforcementError):
    """The action's target is one the enforcer never touches (uplink, empty, wildcard)."""


class UnknownDriver(EnforcementError):
    """No driver plugin is registered for the device's netmiko device type."""


class DeviceError(EnforcementError):
    """Talking to the device failed; ``transient`` says whether trying again may help."""

    transient = False


class DeviceUnreachable(DeviceError):
    """Connection refused or timed out: try again later."""

    transient = True


class SessionLost(DeviceError):
    """The device stopped answering mid-session; what it applied is unknown until re-read."""

    transient = True


class AuthenticationFailed(DeviceError):
    """Wrong credentials: retrying would only lock the account."""


class CommandRejected(DeviceError):
    """The device answered a command with an error (``Error:``, ``% Invalid input``...)."""
