"""Settings, read from the environment (prefix ``VISTUDIO_``, nested delimiter ``__``)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field
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


class EmbedSettings(BaseModel):
    """CLIP embeddings for semantic search (a plain model: only ``VISTUDIO_EMBED__*`` is read)."""

    model: str = "ViT-B-32"  # an open_clip architecture
    pretrained: str = "laion2b_s34b_b79k"  # an open_clip tag; "none" = untrained (benchmarks only)
    checkpoint: Path | None = None  # a local weights file; overrides ``pretrained``
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    workers: int = Field(default_factory=lambda: min(4, max(0, (os.cpu_count() or 1) - 1)), ge=0)
    download: bool = False  # fetch weights missing from the local cache (needs network)
    cache_dir: Path | None = None  # open_clip / Hugging Face cache (default: theirs)
    idle_ttl_seconds: float = 600.0  # a loaded model is freed after this long unused
    max_upload_bytes: int = 20 * 2**20  # largest image accepted by image search


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
    embed: EmbedSettings = Field(default_factory=EmbedSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'vistudio.db'}"
