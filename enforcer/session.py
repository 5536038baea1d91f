"""Open one netmiko SSH session to a device and sort its failures.

netmiko and paramiko raise a zoo of exceptions; the queue needs three answers: try again later
(connection refused or timed out, session lost), give up until a person looks (authentication,
rejected command), or a bug. Credentials are decrypted here, used, and never stored or logged."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import paramiko
from netmiko import BaseConnection
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)

from core.crypto import secret_box
from core.models import Device
from enforcer.drivers import Driver
from enforcer.errors import (
    AuthenticationFailed,
    DeviceError,
    DeviceUnreachable,
    SessionLost,
)
from enforcer.targets import Target


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    secret: str

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.secret) if s)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, <redacted>)"


def credentials(device: Device) -> Credentials:
    """Decrypt the device's SSH credentials (only in memory, only for the session)."""
    box = secret_box()
    password = box.decrypt(device.ssh_password_enc) if device.ssh_password_enc else ""
    secret = box.decrypt(device.ssh_secret_enc) if device.ssh_secret_enc else ""
    return Credentials(device.ssh_username or "", password, secret)


def classify(exc: BaseException) -> DeviceError:
    """Map a netmiko/paramiko/socket failure onto the queue's three answers."""
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, NetmikoAuthenticationException | paramiko.AuthenticationException):
        return AuthenticationFailed(f"authentication failed: {_first_line(exc)}")
    if isinstance(exc, ReadTimeout | ReadException):
        return SessionLost(f"the device stopped answering: {_first_line(exc)}")
    if isinstance(
        exc,
        NetmikoTimeoutException
        | ConnectionError
        | socket.timeout
        | TimeoutError
        | EOFError
        | paramiko.SSHException
        | OSError,
    ):
        return DeviceUnreachable(f"cannot reach the device: {_first_line(exc)}")
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@contextmanager
def open_session(
    driver: Driver, target: Target, creds: Credentials, timeout: float
) -> Iterator[BaseConnection]:
    """A logged-in, prepared session; always disconnected afterwards."""
    params: dict[str, Any] = {
        "device_type": driver.device_type,
        "host": target.host,
        "port": target.port,
        "username": creds.username,
        "password": creds.password,
        "secret": creds.secret,
        "conn_timeout": timeout,
        "auth_timeout": timeout,
        "banner_timeout": timeout,
        "timeout": timeout,
        "read_timeout_override": None,
        "allow_agent": False,
        "use_keys": False,
        "ssh_config_file": None,
    }
    try:
        params["sock"] = _socket(target.host, target.port, timeout)
    except OSError as exc:
        raise classify(exc) from None
    try:
        conn = driver.connect(params, timeout)
    except Exception as exc:
        params["sock"].close()
        raise classify(exc) from None
    clean = False
    try:
        try:
            yield conn
        except DeviceError:
            raise
        except Exception as exc:
            # netmiko/paramiko failures mid-session (read timeout: the device hangs).
            raise classify(exc) from None
        clean = True
    finally:
        _close(driver, conn, graceful=clean)


def _socket(host: str, port: int, timeout: float) -> socket.socket:
    """The TCP connection for the session, with Nagle's algorithm off.

    An SSH session to a router is interactive: small messages each waiting for an answer.
    paramiko leaves Nagle on, so its key exchange and password authentication stall on the
    peer's delayed ACK (~40 ms each on Linux): 95 ms to log in to the lab device instead of
    24 ms. OpenSSH sets TCP_NODELAY on interactive sessions for the same reason."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _close(driver: Driver, conn: BaseConnection, graceful: bool) -> None:
    """Log out politely after success; after a failure just drop the transport, because a
    hung device would make netmiko's polite exit wait for prompts that never come."""
    try:
        if graceful:
            driver.close(conn)
        else:
            conn.paramiko_cleanup()
    except Exception:  # the session is gone either way
        pass
