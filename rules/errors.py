"""Errors of the rules engine, fit for an operator (one line each, with the article)."""

from __future__ import annotations

from core.errors import EdgeWardenError


class PolicyError(EdgeWardenError):
    """A policy file is missing or invalid; ``problems`` lists every reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return super().__str__() + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class TransitionRefused(EdgeWardenError):
    """The policy does not allow this transition now; ``article`` says which rule refused it."""

    def __init__(self, message: str, article: str = "") -> None:
        super().__init__(f"{message} ({article})" if article else message)
        self.reason = message
        self.article = article
