"""Request signatures: ours for the generic format, DingTalk's for its group robots.

Generic: ``X-EdgeWarden-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-EdgeWarden-Timestamp`` in Unix seconds, so a receiver can refuse replays of old bodies.
DingTalk (钉钉自定义机器人 "加签"): HMAC-SHA256 keyed by the secret over
``"<timestamp ms>\\n<secret>"``, base64, URL-encoded, sent as ``timestamp`` and ``sign`` query
parameters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

SIGNATURE_PREFIX = "sha256="


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of ``X-EdgeWarden-Signature`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_generic(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: constant-time compare and a freshness window against replays."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    if age > tolerance_s:
        return False
    return hmac.compare_digest(generic_signature(secret, timestamp, body), signature)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` parameter, already URL-encoded (as its documentation specifies)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def dingtalk_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    """``url`` (which carries ``access_token``) with ``timestamp`` and ``sign`` appended."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{sep}timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
