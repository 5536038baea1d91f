"""Settings from the environment (``EDGEWARDEN_*``) and an optional TOML file.

The TOML file is named by ``EDGEWARDEN_CONFIG``; environment variables win over it so that a
systemd unit or a container can override one value without editing the file.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./edgewarden.db"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by EDGEWARDEN_CONFIG, if any."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = os.environ.get("EDGEWARDEN_CONFIG")
        if path:
            try:
                self._data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise ConfigError(f"EDGEWARDEN_CONFIG names {path}, which does not exist") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every tunable of the service; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="EDGEWARDEN_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, newest first; encrypts device secrets.",
    )
    demo: bool = False
    log_level: str = "INFO"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    netflow_host: str = "127.0.0.1"
    netflow_port: int = Field(default=2055, ge=1, le=65535)
    ipfix_port: int = Field(default=4739, ge=1, le=65535)
    netflow_reload_s: float = Field(default=60.0, ge=0.5, le=3600)
    default_policy: str = "jincheng"
    documents_dir: Path = Path("./var/documents")
    retention_days: int = Field(default=183, ge=183, description="at least 6 months")
    # SNMP sweeps (collector/snmp)
    snmp_concurrency: int = Field(default=32, ge=1, le=1024)
    snmp_timeout_s: float = Field(default=2.0, gt=0, le=60)
    snmp_retries: int = Field(default=1, ge=0, le=10)
    snmp_max_repetitions: int = Field(default=25, ge=1, le=500)
    snmp_device_deadline_s: float = Field(default=120.0, gt=0)
    sweep_interval_s: int = Field(default=900, ge=60)
    # Enforcement (enforcer/): safety rails, DESIGN.md "Enforcement safety rails"
    enforcement_max_per_run: int = Field(default=10, ge=1)
    enforcement_max_per_hour: int = Field(default=30, ge=1)
    enforcement_max_per_device_hour: int = Field(default=10, ge=1)
    enforcement_breaker_window_s: int = Field(default=600, ge=10)
    enforcement_breaker_threshold: int = Field(default=20, ge=1)
    enforcement_max_attempts: int = Field(default=5, ge=1)
    enforcement_ssh_timeout_s: float = Field(default=20.0, gt=0)
    enforcement_poll_s: float = Field(default=0.5, gt=0, le=10)
    # Service (api/): auth, idempotency, scheduler, webhooks
    auth_fail_limit: int = Field(default=10, ge=1, description="failed logins per client")
    auth_fail_window_s: int = Field(default=60, ge=1)
    idempotency_ttl_h: int = Field(default=48, ge=1)
    scheduler_enabled: bool = True
    deadline_check_interval_s: int = Field(default=300, ge=10)
    retention_interval_s: int = Field(default=86400, ge=60)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_s: float = Field(default=30.0, gt=0)
    webhook_poll_s: float = Field(default=2.0, gt=0, le=60)
    log_json: bool = Field(default=True, description="JSON log lines (one object per line)")
    # Documents and reports (api/reports, core/documents)
    document_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    reports_dir: Path = Path("./var/reports")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's report into one readable line per bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            name = "EDGEWARDEN_" + "_".join(str(p) for p in err["loc"]).upper()
            parts.append(f"{name}: {err['msg']}")
        raise ConfigError("bad settings: " + "; ".join(parts)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
