"""Settings, read from the environment (prefix ``VISTUDIO_``, nested delimiter ``__``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BaseModel, BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict


def env_var(key: str) -> str:
    """The environment variable of a dotted setting key: ``embed.model`` → ``VISTUDIO_EMBED__MODEL``."""
    return "VISTUDIO_" + key.upper().replace(".", "__")


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("vistudio"))


class JobSettings(BaseModel):
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.5
    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 600.0


class ImportSettings(BaseModel):
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=256)
    thumb_size: int = 256
    near_duplicate_distance: int = Field(default=6, ge=0, le=64)  # bits of a 64-bit hash
    batch_size: int = Field(default=64, ge=1, le=100_000)
    max_upload_bytes: int = 4 * 2**30


class EmbedSettings(BaseModel):
    """CLIP embeddings for semantic search (a plain model: only ``VISTUDIO_EMBED__*`` is read)."""

    model: str = "ViT-B-32"  # an open_clip architecture
    pretrained: str = "laion2b_s34b_b79k"  # an open_clip tag; "none" = untrained (benchmarks only)
    checkpoint: Path | None = None  # a local weights file; overrides ``pretrained``
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    workers: int = Field(default_factory=lambda: min(4, max(0, (os.cpu_count() or 1) - 1)), ge=0, le=64)
    # where the vector indexes live: faiss (in each process, with a file) or pgvector (a table in
    # the workspace's PostgreSQL, shared by every server; services/vector_index.py)
    index_backend: str = Field(default="faiss", pattern="^(faiss|pgvector)$")
    # Deprecated: downloads follow the one model policy (``Settings.offline``). Kept so that an
    # existing ``VISTUDIO_EMBED__DOWNLOAD=false`` still means "never download CLIP weights".
    download: bool = True
    cache_dir: Path | None = None  # open_clip / Hugging Face cache (default: theirs)
    # a loaded model is freed after this long unused (0: at once)
    idle_ttl_seconds: float = Field(default=600.0, ge=0, allow_inf_nan=False)
    max_upload_bytes: int = 20 * 2**20  # largest image accepted by image search


def _blank_is(default: Any, *, auto: bool = False) -> Any:
    """A before-validator: ``None`` or an empty text (a form, ``settings set``) is ``default``, and
    with ``auto`` so is a text that starts with "auto" (what the Settings page shows for it)."""

    def check(value: Any) -> Any:
        if value is None:
            return default
        if not isinstance(value, str):
            return value
        text = value.strip()
        return default if not text or (auto and text.lower().startswith("auto")) else text

    return BeforeValidator(check)


class FaceSettings(BaseModel):
    """Faces in photo libraries (dlib's models, shipped with vistudio: no download)."""

    enabled: bool = True  # off: no face job runs
    detector: str = "hog"  # hog (the CPU default) | cnn (finds more faces, ≈ 100× slower on a CPU)
    # "dlib" (its 128-d ResNet descriptor) or the path of an ONNX face-recognition model in the
    # ArcFace / InsightFace convention (N×3×H×W RGB in, N×D out; see vistudio.ml.faces)
    embedder: Annotated[str, _blank_is("dlib")] = "dlib"
    max_side: int = Field(default=1600, ge=256, le=16384)  # photos are searched on a draft this big
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=256)
    # grouping faces into people (faces smaller or less sure are kept, not grouped)
    min_size: int = Field(default=40, ge=0, le=10000)  # px, the face's shorter side in the photo
    # the detector's score: HOG's weak detections are often not faces (0.12 for the second
    # "face" it finds in scikit-image's astronaut photo; real faces score 0.7–2)
    min_score: float = Field(default=0.3, ge=-10, le=10, allow_inf_nan=False)
    # descriptor distance; None (auto): the embedder's own, dlib 0.5, an ONNX model 1.0 — read it
    # with services.faces.max_distance
    max_distance: Annotated[float | None, _blank_is(None, auto=True)] = Field(
        default=None, gt=0, le=2, allow_inf_nan=False
    )
    min_faces: int = Field(default=3, ge=1, le=1000)  # faces a new person needs


class VideoSettings(BaseModel):
    """Short videos in photo libraries: limits and keyframe choice (vistudio.ingest.video)."""

    enabled: bool = True  # off: library scans leave videos alone
    max_duration: float = Field(default=900.0, gt=0)  # seconds; longer videos are refused
    max_pixels: int = Field(default=3840 * 2160, ge=1)  # per frame
    max_decode_seconds: float = Field(default=300.0, gt=0)  # wall time to decode one video
    max_frames: int = Field(default=200_000, ge=1)
    min_gap_seconds: float = Field(default=2.0, ge=0)  # at most one keyframe per this long
    max_keyframes: int = Field(default=200, ge=1, le=10_000)
    min_scene_seconds: float = Field(default=0.5, ge=0)
    threshold: float = Field(default=30.0, gt=0, le=255)  # mean |Δ| of a 64×36 RGB frame at a cut
    max_side: int = Field(default=1280, ge=64, le=8192)  # keyframe images are stored this big


class CaptionSettings(BaseModel):
    """Captions of photos (vistudio.ml.captions): a Hugging Face image-to-text model, by repository
    (downloaded on first use unless offline), short name (blip-base, blip-large) or local folder."""

    model: Annotated[str, _blank_is("Salesforce/blip-image-captioning-base")] = Field(
        default="Salesforce/blip-image-captioning-base", max_length=500
    )
    device: str = "auto"  # auto | cpu | cuda[:N]
    batch_size: int = Field(default=16, ge=1, le=1024)
    max_new_tokens: int = Field(default=30, ge=1, le=200)
    num_beams: int = Field(default=3, ge=1, le=16)
    max_side: int = Field(default=768, ge=32, le=8192)  # photos are read as a draft this big


class BlobStoreSettings(BaseModel):
    """Where blobs (copied originals, thumbnails, artifacts, exports) live: the workspace folders
    (the default, ``url`` unset) or an S3-compatible bucket (docs/storage.md). Credentials come from
    the standard AWS chain (``AWS_ACCESS_KEY_ID``…, ``AWS_PROFILE``, instance roles). Set at start
    only (``VISTUDIO_BLOB_STORE__URL``…): moving a workspace's blobs is not a run-time switch."""

    url: str | None = None  # s3://bucket/prefix
    endpoint_url: str | None = None  # an S3-compatible server (MinIO, Ceph, moto): http://host:port
    # the same server as browsers reach it, used only to sign download URLs (the API answers 307 to
    # them): e.g. http://localhost:9000 when the server itself talks to http://s3:9000; unset: the
    # endpoint above
    public_endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = Field(default="auto", pattern="^(auto|path|virtual)$")
    presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)  # downloads' URL lifetime
    multipart_threshold: int = Field(default=64 * 2**20, ge=5 * 2**20)  # S3's smallest part: 5 MiB
    multipart_chunksize: int = Field(default=64 * 2**20, ge=5 * 2**20)
    # the local read-through copy under the workspace (media/, thumbs/, artifacts/); 0 = unbounded,
    # the default: some readers still open <workspace>/<sample path> directly, not through the
    # store, and would find an evicted original missing (docs/storage.md, "Reads")
    cache_max_bytes: int = Field(default=0, ge=0)
    # temporary keys and unfinished multipart uploads older than this are abandoned: gc removes them;
    # keys no row names are reported as orphans only once older than this (an import in flight
    # uploads its blobs before its batch commits their rows)
    stale_upload_seconds: float = Field(default=6 * 3600.0, ge=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)


class LogSettings(BaseModel):
    """Structured JSON logs in ``<workspace>/logs/vistudio.log``, rotated by size (docs/operations.md)."""

    level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    max_bytes: int = Field(default=10 * 2**20, ge=4096)  # one file's size before it is rotated
    backups: int = Field(default=5, ge=1, le=100)  # rotated files kept: vistudio.log.1 … .N


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
    # No network for model weights: a missing file is at once ``model_unavailable`` (HF_HUB_OFFLINE=1
    # counts too; see vistudio.ml.weights). Off by default: weights download on first use.
    offline: bool = False
    # A Hugging Face access token (VISTUDIO_HF_TOKEN) for gated weights such as DINOv3's, whose
    # licence the token's account has accepted; unset, the Hub client's own is used (HF_TOKEN, or
    # the token `hf auth login` saved). Never stored in the workspace.
    hf_token: SecretStr | None = None
    jobs: JobSettings = Field(default_factory=JobSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    faces: FaceSettings = Field(default_factory=FaceSettings)
    videos: VideoSettings = Field(default_factory=VideoSettings)
    captions: CaptionSettings = Field(default_factory=CaptionSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    blob_store: BlobStoreSettings = Field(default_factory=BlobStoreSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'vistudio.db'}"


# Settings a user may change at run time (the Settings page, `vistudio settings set`, PATCH
# /api/v1/settings); the workspace stores them, and the environment still wins over them.
RUNTIME_KEYS: tuple[str, ...] = (
    "offline",
    "embed.model",
    "embed.pretrained",
    "embed.checkpoint",
    "embed.device",
    "embed.batch_size",
    "embed.workers",
    "embed.idle_ttl_seconds",
    "embed.cache_dir",
    "import_roots",
    "imports.workers",
    "imports.batch_size",
    "imports.near_duplicate_distance",
    "faces.enabled",
    "faces.detector",
    "faces.embedder",
    "faces.max_side",
    "faces.workers",
    "faces.min_size",
    "faces.min_score",
    "faces.max_distance",
    "faces.min_faces",
)


def env_source(key: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable that sets ``key``, if one does (names compared without case, as
    pydantic-settings reads them). A whole group in JSON (``VISTUDIO_EMBED='{…}'``) counts for each
    of its keys; ``HF_HUB_OFFLINE=1`` sets ``offline``."""
    env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    name = env_var(key)
    if name in env:
        return name
    group = key.split(".")[0]
    if "." in key and env_var(group) in env:
        return env_var(group)
    if key == "offline" and env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE"
    return None


def _field(key: str) -> FieldInfo:
    model: type[BaseModel] = Settings
    *groups, last = key.split(".")
    for g in groups:
        ann = model.model_fields[g].annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        model = ann
    if last not in model.model_fields:
        raise KeyError(key)
    return model.model_fields[last]


def setting_value(settings: Settings, key: str) -> Any:
    """The value of a dotted key: ``setting_value(s, "embed.model")`` is ``s.embed.model``."""
    obj: Any = settings
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def setting_default(key: str) -> Any:
    """The built-in default of a dotted key (the environment and the workspace aside)."""
    info = _field(key)
    return info.get_default(call_default_factory=True)


def validate_setting(key: str, value: Any) -> Any:
    """``value`` checked and converted by the field's own type and bounds (``ValidationError`` if not)."""
    info = _field(key)
    typ: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(typ).validate_python(value)


def with_setting(settings: Settings, key: str, value: Any) -> Settings:
    """A copy of ``settings`` with ``key`` set to an already validated ``value``."""
    head, _, rest = key.partition(".")
    if not rest:
        return settings.model_copy(update={head: value})
    group = getattr(settings, head)
    return settings.model_copy(update={head: group.model_copy(update={rest: value})})


def apply_overrides(
    settings: Settings, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """``settings`` with the workspace's ``overrides`` applied under the environment (env >
    workspace > default). Returns the new settings and, per override left out, why (set by the
    environment, no longer editable, or no longer valid)."""
    skipped: dict[str, str] = {}
    for key, raw in overrides.items():
        if key not in RUNTIME_KEYS:
            skipped[key] = "not a setting that can be changed at run time"
            continue
        env = env_source(key, environ)
        if env is not None:
            skipped[key] = f"set by {env}: the environment wins"
            continue
        try:
            settings = with_setting(settings, key, validate_setting(key, raw))
        except ValidationError as exc:
            skipped[key] = f"invalid stored value: {exc.errors()[0]['msg']}"
    return settings, skipped
