"""Settings: the effective values with where each came from, and run-time edits saved in the workspace.

Precedence: environment (``VISTUDIO_…``) > workspace (the ``settings`` table, edited here) > the
built-in default (or the value the program started with, e.g. ``--workspace``). The keys in
``config.RUNTIME_KEYS`` can be changed while the server runs: an edit is validated, saved, and the
Studio's settings object is rebuilt at once. A key the environment sets cannot be edited (409):
the environment wins, and the page says so. The rest is shown read-only: it is read at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete

from vistudio.config import (
    RUNTIME_KEYS,
    Settings,
    apply_overrides,
    env_source,
    env_var,
    setting_default,
    setting_value,
    validate_setting,
    with_setting,
)
from vistudio.db import utcnow
from vistudio.db.settings import WorkspaceSetting
from vistudio.errors import Conflict, InvalidInput
from vistudio.ml.weights import WeightsPolicy
from vistudio.studio import Studio, workspace_overrides

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


@dataclass(frozen=True)
class SettingInfo:
    key: str
    label: str
    help: str
    group: str
    kind: str  # bool | int | float | text | path | paths | list | secret
    note: str = ""  # why a read-only setting is read-only


CATALOG: tuple[SettingInfo, ...] = (
    SettingInfo(
        "offline",
        "Offline",
        "Never download model weights: a model whose weights are not on this machine is reported "
        "at once. Off: weights download on first use (CLIP, pretrained backbones). HF_HUB_OFFLINE=1 "
        "also turns it on.",
        "Models",
        "bool",
    ),
    SettingInfo(
        "embed.model",
        "CLIP architecture",
        "The open_clip architecture semantic search uses.",
        "Models",
        "text",
    ),
    SettingInfo(
        "embed.pretrained",
        "CLIP pretrained weights",
        "The open_clip pretrained tag of that architecture (e.g. laion2b_s34b_b79k for ViT-B-32).",
        "Models",
        "text",
    ),
    SettingInfo(
        "embed.checkpoint",
        "CLIP weights file",
        "A weights file on this machine, inside an import root; when set it replaces the pretrained "
        "tag. Empty: use the tag.",
        "Models",
        "path",
    ),
    SettingInfo(
        "embed.cache_dir",
        "Weights cache folder",
        "Where CLIP weights are looked up and downloaded (the Hugging Face cache). Empty: its default.",
        "Models",
        "path",
    ),
    SettingInfo(
        "embed.device",
        "Embedding device",
        "auto (a GPU when there is one), cpu, cuda or cuda:N.",
        "Models",
        "text",
    ),
    SettingInfo("embed.batch_size", "Embedding batch size", "Images per forward pass.", "Models", "int"),
    SettingInfo(
        "embed.workers",
        "Embedding loader workers",
        "Processes decoding images while embedding.",
        "Models",
        "int",
    ),
    SettingInfo(
        "embed.idle_ttl_seconds",
        "Free an idle model after (s)",
        "A loaded model is freed after this many seconds unused.",
        "Models",
        "float",
    ),
    SettingInfo(
        "import_roots",
        "Import roots",
        "Folders on this machine that imports, library scans and weights files may come from; one per line.",
        "Imports",
        "paths",
    ),
    SettingInfo(
        "imports.workers",
        "Import workers",
        "Processes hashing and thumbnailing during an import.",
        "Imports",
        "int",
    ),
    SettingInfo(
        "imports.batch_size",
        "Import batch size",
        "Images written to the database per transaction.",
        "Imports",
        "int",
    ),
    SettingInfo(
        "imports.near_duplicate_distance",
        "Near-duplicate distance (bits)",
        "Perceptual hashes this many bits apart or fewer count as near duplicates.",
        "Imports",
        "int",
    ),
    SettingInfo(
        "imports.thumb_size",
        "Thumbnail size (px)",
        "The long side of stored thumbnails.",
        "Imports",
        "int",
        note="Fixed per workspace (thumbnails are stored by size): set it in the environment before the first import.",
    ),
    SettingInfo(
        "faces.enabled",
        "Face recognition",
        "Find faces in photo libraries and group them into people. Off: no face job runs.",
        "Faces",
        "bool",
    ),
    SettingInfo(
        "faces.detector",
        "Face detector",
        "hog (fast on a CPU) or cnn (finds more turned and small faces, about 100× slower on a CPU).",
        "Faces",
        "text",
    ),
    SettingInfo(
        "faces.embedder",
        "Face embedder",
        "dlib (its 128-d descriptor, built in), or the absolute path of an ONNX face-recognition "
        "model in the ArcFace / InsightFace convention (N×3×112×112 RGB in, N×D out, as Immich "
        "uses; inside the import roots). Changing it reads every photo again; people keep their "
        "faces by place.",
        "Faces",
        "path",
    ),
    SettingInfo(
        "faces.max_side",
        "Face search size (px)",
        "Photos are searched for faces on a copy this many pixels on the long side.",
        "Faces",
        "int",
    ),
    SettingInfo(
        "faces.workers",
        "Face workers",
        "Processes finding faces during a face job.",
        "Faces",
        "int",
    ),
    SettingInfo(
        "faces.min_size",
        "Smallest face grouped (px)",
        "Faces whose shorter side is smaller are kept but not grouped into people.",
        "Faces",
        "int",
    ),
    SettingInfo(
        "faces.min_score",
        "Least sure face grouped",
        "Faces the detector scored lower are kept but not grouped into people.",
        "Faces",
        "float",
    ),
    SettingInfo(
        "faces.max_distance",
        "Same-person distance",
        "Faces closer than this (descriptor distance) may be one person; lower splits more. Auto "
        "(empty): the embedder's own, 0.5 for dlib, 1.0 for an ONNX model (unit vectors, 0..2).",
        "Faces",
        "text",
    ),
    SettingInfo(
        "faces.min_faces",
        "Faces for a new person",
        "A group of unassigned faces becomes a person once it has this many faces.",
        "Faces",
        "int",
    ),
    SettingInfo(
        "home",
        "Workspace folder",
        "Where this workspace keeps its database and files.",
        "Server",
        "path",
        note="Chosen at start (--workspace).",
    ),
    SettingInfo(
        "database_url",
        "Database URL",
        "Empty: SQLite inside the workspace.",
        "Server",
        "secret",
        note="Read at start.",
    ),
    SettingInfo(
        "embedded_workers",
        "Job workers in the server",
        "Background workers `vistudio serve` runs.",
        "Server",
        "int",
        note="Read at start: restart the server after changing it.",
    ),
    SettingInfo(
        "api_token",
        "API token",
        "Required when the server listens beyond this machine.",
        "Server",
        "secret",
        note="Read at start.",
    ),
    SettingInfo(
        "hf_token",
        "Hugging Face token",
        "Access token for gated model weights (DINOv3): accept the licence on the model's page first.",
        "Models",
        "secret",
        note="Read at start (VISTUDIO_HF_TOKEN, or HF_TOKEN).",
    ),
    SettingInfo(
        "allowed_hosts",
        "Allowed host names",
        "Host names the server answers to without a token.",
        "Server",
        "list",
        note="Read at start.",
    ),
    SettingInfo(
        "jobs.max_attempts",
        "Job attempts",
        "Tries before a failing job goes to the dead-letter queue.",
        "Server",
        "int",
        note="Read at start.",
    ),
)
BY_KEY = {s.key: s for s in CATALOG}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _shown(info: SettingInfo, value: Any) -> Any:
    """What the page and the API show: secrets only as set / not set (a database URL without its password)."""
    if info.kind != "secret" or value is None:
        return _jsonable(value)
    if info.key == "database_url":
        from sqlalchemy.engine import make_url

        return make_url(str(value)).render_as_string(hide_password=True)
    return "(set)"


def _face_distance_shown(settings: Settings, value: Any) -> tuple[Any, str]:
    """faces.max_distance as shown, and its default: not set, it is the embedder's own."""
    from vistudio.services.faces import max_distance

    if value is None:
        which = "dlib" if settings.faces.embedder == "dlib" else "the ONNX embedder"
        value = f"auto ({max_distance(settings.faces)} for {which})"
    return value, "auto (the embedder's own: 0.5 for dlib, 1.0 for an ONNX model)"


def list_settings(studio: Studio) -> dict[str, Any]:
    """Every setting with its effective value, default, source (env | workspace | default), the
    environment variable that sets it, and whether it can be changed here."""
    stored = workspace_overrides(studio.sessions)
    settings = studio.settings
    # a stored value that no longer validates (an older version's, a folder since removed) is not
    # applied: the setting shows its default and says why
    _, skipped = apply_overrides(studio.base_settings or settings, stored)
    items = []
    for info in CATALOG:
        env = env_source(info.key)
        runtime = info.key in RUNTIME_KEYS
        applied = info.key in stored and runtime and info.key not in skipped
        source = "env" if env else ("workspace" if applied else "default")
        item: dict[str, Any] = {
            "key": info.key,
            "label": info.label,
            "help": info.help,
            "group": info.group,
            "kind": info.kind,
            "value": _shown(info, setting_value(settings, info.key)),
            "default": _shown(info, setting_default(info.key)) if info.key != "home" else None,
            "source": source,
            "env": env_var(info.key),
            "set_by": env,
            "runtime": runtime,
            "editable": runtime and env is None,
            "note": info.note if not runtime else "",
        }
        if info.key == "faces.max_distance":  # not set: auto, shown with the value it stands for
            item["value"], item["default"] = _face_distance_shown(settings, item["value"])
        if env and info.key in stored:  # saved here earlier, now hidden by the environment
            item["workspace_value"] = _jsonable(stored[info.key])
        if info.key in skipped and not env:
            item["workspace_value"] = _jsonable(stored[info.key])
            item["not_applied"] = skipped[info.key]
        items.append(item)
    policy = WeightsPolicy.from_settings(settings, embed=True)
    return {
        "items": items,
        "total": len(items),
        "weights": {
            "downloads": policy.allow_download,
            "offline_because": policy.offline_because,
            "locations": policy.locations(),
        },
    }


def _coerce(info: SettingInfo, raw: Any) -> Any:
    """Text from a form or the command line → the shape the setting's type expects."""
    if "\x00" in str(raw):  # no path, name or number has one; the file system refuses it
        raise InvalidInput(
            f"{info.key}: a value may not contain a NUL character", details={"setting": info.key}
        )
    if info.kind == "paths" and isinstance(raw, str):
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if info.kind == "path" and isinstance(raw, str) and not raw.strip():
        return None
    if isinstance(raw, str):
        return raw.strip()
    return raw


def _is(path: Path, kind: str) -> bool:
    """``path.is_dir()`` / ``is_file()``, but a name the system cannot use (a NUL byte, too long)
    is simply not there."""
    try:
        return path.is_absolute() and (path.is_dir() if kind == "dir" else path.is_file())
    except (OSError, ValueError):
        return False


def _check(key: str, value: Any, settings: Settings) -> Any:
    """Checks beyond the type: folders and files exist, names are known. Returns the value to save."""
    if key == "import_roots":
        roots = []
        for p in value:
            path = Path(p).expanduser()
            if not _is(path, "dir"):
                raise InvalidInput(
                    f"import root {str(p)[:300]} is not an existing folder (absolute path)",
                    details={"setting": key},
                )
            roots.append(path.resolve())
        if not roots:
            raise InvalidInput("give at least one import root", details={"setting": key})
        return roots
    if key == "embed.checkpoint" and value is not None:
        path = Path(value).expanduser()
        if not _is(path, "file"):
            raise InvalidInput(
                f"weights file not found: {str(value)[:300]} (an absolute path)", details={"setting": key}
            )
        path = path.resolve()
        roots = [r.expanduser().resolve() for r in settings.import_roots]
        if not any(path.is_relative_to(r) for r in roots):
            raise InvalidInput(
                "the weights file is outside the import roots (setting import_roots)",
                details={"setting": key, "import_roots": [str(r) for r in roots]},
            )
        return path
    if key == "embed.cache_dir" and value is not None and not Path(value).expanduser().is_absolute():
        raise InvalidInput("the weights cache folder must be an absolute path", details={"setting": key})
    if key == "embed.device" and not DEVICE_RE.match(str(value).lower()):
        raise InvalidInput(
            f"unknown device {str(value)[:40]!r}: use auto, cpu, mps, cuda or cuda:N",
            details={"setting": key},
        )
    if key == "faces.embedder" and value != "dlib":
        from vistudio.ml.faces import check_embedder

        path = Path(value).expanduser()
        if not _is(path, "file"):
            raise InvalidInput(
                f"face embedder model not found: {str(value)[:300]} (an absolute path to an ONNX "
                "model, or dlib)",
                details={"setting": key},
            )
        path = path.resolve()
        roots = [r.expanduser().resolve() for r in settings.import_roots]
        if not any(path.is_relative_to(r) for r in roots):
            raise InvalidInput(
                "the face embedder model is outside the import roots (setting import_roots)",
                details={"setting": key, "import_roots": [str(r) for r in roots]},
            )
        check_embedder(path)  # not an ONNX face embedder: InvalidInput saying why
        return str(path)
    if key == "faces.detector" and str(value) not in ("hog", "cnn"):
        raise InvalidInput(
            f"unknown face detector {str(value)[:40]!r}: use hog or cnn", details={"setting": key}
        )
    if key == "embed.model":
        from vistudio.ml.embed.clip import check_architecture  # open_clip is heavy: only when asked

        check_architecture(str(value))
    return value


# Settings that bound what API clients may read or write on this machine: through the API and the
# web page they can only be narrowed (kept inside the start-up values); widening them takes the
# environment or the CLI, run by someone who has the machine's files anyway.
BOUNDARY_KEYS = ("import_roots", "embed.cache_dir")


def _check_boundary(studio: Studio, key: str, value: Any) -> None:
    base = studio.base_settings or studio.settings
    allowed = [r.expanduser().resolve() for r in base.import_roots]
    if key == "embed.cache_dir":
        allowed.append(studio.home.resolve())
    paths = value if isinstance(value, list) else [value] if value is not None else []
    for p in paths:
        path = Path(p).expanduser().resolve()
        if not any(path.is_relative_to(r) for r in allowed):
            raise Conflict(
                f"{key}: {str(path)[:300]} is outside the folders this server started with "
                f"({', '.join(str(r) for r in allowed)[:600]}); through the API or the web page this "
                f"setting can only be narrowed: widen it with {env_var(key)} or `vistudio settings set`",
                details={"setting": key, "allowed": [str(r) for r in allowed]},
            )


def _pretrained_pair(settings: Settings, *, changed: Any) -> dict[str, Any]:
    """The CLIP architecture and tag must go together: a new architecture whose tags do not include
    the current one takes its first tag (returned, to be saved with it); a tag the architecture
    does not have is refused."""
    from vistudio.ml.embed.clip import pretrained_tags  # open_clip is heavy: only when asked

    model, tag = settings.embed.model, settings.embed.pretrained
    if settings.embed.checkpoint is not None:  # a weights file replaces the tag
        return {}
    tags = pretrained_tags(model)
    if tag == "none" or tag in tags:
        return {}
    if "embed.pretrained" not in changed and tags and env_source("embed.pretrained") is None:
        return {"embed.pretrained": tags[0]}
    raise InvalidInput(
        f"{tag!r} is not a pretrained tag of {model}; "
        + (f"known tags: {', '.join(tags)}" if tags else "this architecture has no pretrained weights"),
        details={"setting": "embed.pretrained", "model": model, "tags": tags},
    )


def update_settings(studio: Studio, *, values: dict[str, Any], local: bool = False) -> dict[str, Any]:
    """Validate and save ``values`` (key → value) in the workspace, then apply them to the running
    Studio. All or nothing: one bad value saves none. 409 for a key the environment sets, and,
    unless ``local`` (the CLI), for import roots or a cache folder outside the start-up roots."""
    if not values:
        raise InvalidInput("no settings given")
    checked: dict[str, Any] = {}
    settings = studio.settings
    # import roots first: a weights file is checked against the roots it will be used with
    for key in sorted(values, key=lambda k: k != "import_roots"):
        info = BY_KEY.get(key)
        if info is None:
            raise InvalidInput(
                f"unknown setting {key[:100]!r}; known: {', '.join(BY_KEY)}", details={"setting": key[:100]}
            )
        if key not in RUNTIME_KEYS:
            raise Conflict(
                f"{key} is read when vistudio starts and cannot be changed here: set the environment "
                f"variable {env_var(key)} and restart",
                details={"setting": key, "env": env_var(key), "note": info.note},
            )
        env = env_source(key)
        if env is not None:
            raise Conflict(
                f"{key} is set by {env} — the environment wins: unset {env} and restart to change it here",
                details={"setting": key, "env": env},
            )
        try:
            value = validate_setting(key, _coerce(info, values[key]))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(f"{key}: {first['msg']}", details={"setting": key}) from None
        value = _check(key, value, settings)
        if not local and key in BOUNDARY_KEYS:
            _check_boundary(studio, key, value)
        checked[key] = value
        settings = with_setting(settings, key, value)
    if {"embed.model", "embed.pretrained"} & checked.keys():
        checked.update(_pretrained_pair(settings, changed=checked.keys()))
    with studio.sessions() as s:
        for key, value in checked.items():
            s.merge(WorkspaceSetting(key=key, value=_jsonable(value), updated_at=utcnow()))
        s.commit()
    _reload(studio)
    return list_settings(studio)


def unset_setting(studio: Studio, *, key: str) -> dict[str, Any]:
    """Remove the workspace's value of ``key``: the environment or the default applies again."""
    if key not in BY_KEY:
        raise InvalidInput(
            f"unknown setting {key[:100]!r}; known: {', '.join(BY_KEY)}", details={"setting": key[:100]}
        )
    with studio.sessions() as s:
        s.execute(delete(WorkspaceSetting).where(WorkspaceSetting.key == key))
        s.commit()
    _reload(studio)
    return list_settings(studio)


def _reload(studio: Studio) -> None:
    """Rebuild the Studio's settings from its start-up settings and the workspace's values."""
    base = studio.base_settings or studio.settings
    studio.settings, _ = apply_overrides(base, workspace_overrides(studio.sessions))
    studio.cache.idle_ttl = float(studio.settings.embed.idle_ttl_seconds)
