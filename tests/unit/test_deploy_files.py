"""The Dockerfile and compose.yaml stay true to the code: every setting they set exists, every command
they run is a vistudio command, every extra they install is declared."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import typer
import yaml
from pydantic import BaseModel

from vistudio.cli.main import app
from vistudio.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _setting_exists(var: str) -> bool:
    """``VISTUDIO_JOBS__LEASE_SECONDS`` → Settings.jobs.lease_seconds (the prefix and ``__`` rules
    of config.py)."""
    model: type[BaseModel] = Settings
    parts = var.removeprefix("VISTUDIO_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            sub = field.annotation
            if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
                return False
            model = sub
    return True


def _vistudio_vars(compose: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for service in compose["services"].values():
        env = service.get("environment") or {}
        names.update(k for k in env if k.startswith("VISTUDIO_"))
    return names


def test_every_vistudio_variable_in_compose_is_a_setting() -> None:
    names = _vistudio_vars(_compose())
    assert "VISTUDIO_DATABASE_URL" in names  # the anchor was merged into the services
    assert [n for n in sorted(names) if not _setting_exists(n)] == []


def test_the_setting_check_refuses_what_is_not_a_setting() -> None:
    assert _setting_exists("VISTUDIO_JOBS__LEASE_SECONDS")
    assert not _setting_exists("VISTUDIO_JOBS__NO_SUCH")
    assert not _setting_exists("VISTUDIO_NO_SUCH_SETTING")


def test_compose_commands_are_vistudio_commands() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, service in _compose()["services"].items():
        if service.get("image") != "vistudio:latest":
            continue
        args = service["command"]
        command = commands.get(args[0])
        assert command is not None, f"{name}: no command {args[0]!r}"
        known = {opt for p in command.params for opt in p.opts}
        flags = [a for a in args[1:] if a.startswith("--")]
        assert set(flags) <= known, f"{name}: unknown options {set(flags) - known}"


def test_dockerfile_installs_declared_extras_and_copies_what_exists() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                 ["optional-dependencies"])
    wanted = re.search(r'pip install "\.\[([^\]]+)\]"', text)
    assert wanted, "the Dockerfile no longer installs vistudio with extras"
    assert set(wanted[1].split(",")) <= extras
    for src in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for part in src.split():
            assert (ROOT / part).exists(), part


def _default(value: str) -> str:
    """``${VAR:-default}`` → ``default`` (compose's interpolation with nothing set)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_compose_download_urls_name_a_published_address() -> None:
    """The API redirects browsers to presigned URLs: they must name MinIO's published port, not
    ``s3``, which only the containers resolve."""
    compose = _compose()
    env = compose["services"]["server"]["environment"]
    internal = urlsplit(env["VISTUDIO_BLOB_STORE__ENDPOINT_URL"])
    public = urlsplit(_default(env["VISTUDIO_BLOB_STORE__PUBLIC_ENDPOINT_URL"]))
    assert internal.hostname == "s3" and public.hostname == "localhost"
    published = {tuple(_default(p).split(":")[-2:]) for p in compose["services"]["s3"]["ports"]}
    assert (str(public.port), str(internal.port)) in published


def test_compose_backups_go_outside_the_workspace() -> None:
    """``vistudio backup`` refuses a destination inside the workspace: the documented command
    writes to a volume of its own."""
    compose = _compose()
    server = compose["services"]["server"]
    home = PurePosixPath(server["environment"]["VISTUDIO_HOME"])
    mounts = {PurePosixPath(v.split(":")[1]) for v in server["volumes"]}
    docs = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    dests = re.findall(r"docker compose exec server vistudio backup (\S+)", docs)
    assert dests
    for dest in map(PurePosixPath, dests):
        assert not dest.is_relative_to(home), dest
        assert any(dest.is_relative_to(m) for m in mounts if m != PurePosixPath("/library")), dest
