"""Request bodies per subscription format, and how to read each receiver's answer.

``generic`` is the event payload itself. WeCom (企业微信) and DingTalk (钉钉) group robots take a
markdown message and answer HTTP 200 even on failure, with ``errcode`` != 0 in the JSON body,
so for them a 2xx alone is not a delivery."""

from __future__ import annotations

import json
from typing import Any

# WeCom limits markdown content to 4096 bytes (UTF-8); DingTalk is more generous, keep it close.
_MAX_MARKDOWN_BYTES = 4000


def encode(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed are the bytes that are sent."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _clip(text: str, limit: int = _MAX_MARKDOWN_BYTES) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def markdown(payload: dict[str, Any]) -> tuple[str, str]:
    """(title, markdown text) for the robots: Chinese first, English second, then the ids."""
    title = f"Edge Warden · {payload['type']}"
    lines = [
        f"### {title}",
        f"**{payload['summary_zh']}**",
        "",
        str(payload["summary_en"]),
        "",
    ]
    inst = payload.get("institution")
    if inst:
        lines.append(f"> 机构 institution: {inst['code']} {inst['name']}")
    if payload.get("county_code"):
        lines.append(f"> 县区 county: {payload['county_code']}")
    lines.append(f"> 时间 time: {payload['time']}")
    obj = payload["object"]
    lines.append(f"> 事件 event: {payload['id']} ({obj['type']} {obj['id']})")
    return title, _clip("\n".join(lines))


def render(fmt: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for a subscription of format ``fmt``."""
    if fmt == "generic":
        return payload
    title, text = markdown(payload)
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    raise ValueError(f"unknown webhook format {fmt!r}; use generic, wecom or dingtalk")


def outcome(fmt: str, status: int, body: bytes) -> tuple[bool, str | None]:
    """(delivered?, error to record) for the receiver's answer."""
    if not 200 <= status < 300:
        return False, f"HTTP {status}: {body[:200].decode(errors='replace')}"
    if fmt == "generic":
        return True, None
    try:
        answer = json.loads(body)
    except ValueError:
        return False, f"HTTP {status} but the robot's answer is not JSON"
    code = answer.get("errcode") if isinstance(answer, dict) else None
    if code == 0:
        return True, None
    msg = answer.get("errmsg", "") if isinstance(answer, dict) else ""
    return False, f"robot refused: errcode={code} errmsg={msg}"
