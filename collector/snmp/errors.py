"""Why a device could not be read; each maps to one SweepDevice status."""

from __future__ import annotations


class SnmpError(Exception):
    """A device answered wrongly or not at all (status ``error`` unless a subclass says)."""


class SnmpTimeout(SnmpError):
    """No answer within timeout × (retries + 1) (status ``timeout``; SNMPv2c cannot tell a
    wrong community from a dead agent: both stay silent)."""


class SnmpAuthError(SnmpError):
    """SNMPv3 credentials refused: unknown user, wrong digest, decryption failed."""


class SnmpAgentError(SnmpError):
    """The agent returned a non-zero error-status (RFC 3416 numbers)."""

    def __init__(self, status: int, index: int) -> None:
        super().__init__(f"agent error-status {status} ({ERROR_NAMES.get(status, '?')}) at {index}")
        self.status = status
        self.index = index


ERROR_NAMES = {
    0: "noError",
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    6: "noAccess",
    16: "authorizationError",
}
