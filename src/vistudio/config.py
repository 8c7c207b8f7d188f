"""Settings, read from the environment (prefix ``VISTUDIO_``, nested delimiter ``__``)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("vistudio"))


class JobSettings(BaseSettings):
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.5
    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 600.0


class ImportSettings(BaseSettings):
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    thumb_size: int = 256
    near_duplicate_distance: int = 6
    batch_size: int = 64
    max_upload_bytes: int = 4 * 2**30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISTUDIO_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    api_token: str | None = None
    # Server-side folders the API may import from (paths in request bodies must lie inside one).
    import_roots: list[Path] = Field(default_factory=lambda: [Path.home()])
    # Host names the server answers to when it has no API token (DNS-rebinding defence).
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"])
    embedded_workers: int = 1
    jobs: JobSettings = Field(default_factory=JobSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'vistudio.db'}"
