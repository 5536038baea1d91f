"""Device secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`.

``EDGEWARDEN_SECRET_KEY`` holds one key or several, comma-separated, newest first (MultiFernet),
so keys can be rotated without re-importing the inventory."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import ConfigError
from core.settings import Settings, get_settings

ENC_PREFIX = "enc:"


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts short secrets; never logs or repr()s them."""

    def __init__(self, keys: str) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.strip()) for k in keys.split(",") if k.strip()])
        except (ValueError, TypeError):
            raise ConfigError(
                "EDGEWARDEN_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes); "
                "make one with `edgewarden secret-key`"
            ) from None

    def encrypt(self, clear: str) -> str:
        return self._fernet.encrypt(clear.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored secret cannot be decrypted with EDGEWARDEN_SECRET_KEY "
                "(wrong or rotated key)"
            ) from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()

    def __repr__(self) -> str:
        return "SecretBox(<redacted>)"


def secret_box(settings: Settings | None = None) -> SecretBox:
    """The box for the configured key; one clear error when there is none.

    The demo may run without a key: it gets a fresh one for the life of the process."""
    settings = settings or get_settings()
    if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
        if settings.demo:
            return SecretBox(_demo_key())
        raise ConfigError(
            "EDGEWARDEN_SECRET_KEY is not set: device secrets cannot be encrypted. "
            "Generate one with `edgewarden secret-key` and keep it safe."
        )
    return SecretBox(settings.secret_key.get_secret_value())


_DEMO_KEY: list[str] = []


def _demo_key() -> str:
    if not _DEMO_KEY:
        _DEMO_KEY.append(generate_key())
    return _DEMO_KEY[0]
