"""Errors a person can act on.

Anything raised as ``EdgeWardenError`` is shown to the operator as one line (CLI) or a problem
detail (API); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeWardenError(Exception):
    """A failure with a message fit for an operator."""


class ConfigError(EdgeWardenError):
    """Settings are missing or malformed."""


class DatabaseError(EdgeWardenError):
    """The database cannot be reached or is not at the expected schema."""


class ValidationFailed(EdgeWardenError):
    """Input was refused; ``problems`` lists every reason (with line numbers where known)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class NotFound(EdgeWardenError):
    """The named object does not exist, or is outside the caller's counties (属地原则): the two
    answers are the same so that a county operator cannot probe another county's codes."""


class Conflict(EdgeWardenError):
    """The request is valid but the object's current state does not allow it."""


class PermissionDenied(EdgeWardenError):
    """The caller's role may not do this."""
