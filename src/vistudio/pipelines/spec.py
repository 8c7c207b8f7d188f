"""Pipeline definitions: YAML (or Python) → a validated ``PipelineSpec`` with a version hash."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vistudio.errors import InvalidInput

MODES = ("sample", "validation", "production")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SPEC_BYTES = 1 << 20


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the stage's name in this pipeline (unique, used in output paths)")
    uses: str | None = Field(default=None, description="registered stage, or 'custom:pkg.module:function'")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("a stage name is 1-64 letters, digits, '.', '_' or '-'")
        return v

    @property
    def function(self) -> str:
        return self.uses or self.name


class Formats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: Literal["png", "jpg"] = "png"
    arrays: Literal["npy"] = "npy"
    point_clouds: Literal["ply", "pcd", "xyz"] = "ply"


class SaveOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    stages: list[str] = Field(default_factory=lambda: ["all"])
    max_samples: int = Field(default=10, ge=0, le=10_000_000)
    formats: Formats = Field(default_factory=Formats)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "1"
    stages: list[StageSpec] = Field(min_length=1, max_length=100)
    output_mode: Literal["sample", "validation", "production"] = "sample"
    save_outputs: SaveOutputs = Field(default_factory=SaveOutputs)
    save_artifacts: bool = True
    workers: int = Field(default=4, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("a pipeline name is 1-64 letters, digits, '.', '_' or '-'")
        return v

    @model_validator(mode="after")
    def _unique_stages(self) -> PipelineSpec:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)}")
        unknown = [s for s in self.save_outputs.stages if s != "all" and s not in names]
        if unknown:
            raise ValueError(f"save_outputs.stages names unknown stages: {', '.join(unknown)}")
        return self

    def version_hash(self) -> str:
        """sha256 of what the pipeline computes (stages and parameters), 12 hex digits."""
        body = json.dumps(
            {"name": self.name, "version": self.version, "stages": [s.model_dump() for s in self.stages]},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def load_spec(source: Path | str | dict[str, Any]) -> PipelineSpec:
    """A spec from a YAML file, YAML text, or a dict; InvalidInput with the first problem."""
    if isinstance(source, dict):
        doc: Any = source
    else:
        if isinstance(source, Path):
            if not source.is_file():
                raise InvalidInput(f"pipeline file not found: {source}")
            if source.stat().st_size > MAX_SPEC_BYTES:
                raise InvalidInput("pipeline file larger than 1 MiB")
            text = source.read_text(encoding="utf-8", errors="replace")
        else:
            text = source
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"pipeline YAML does not parse: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("a pipeline is a mapping with name, stages, …")
    try:
        return PipelineSpec.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "pipeline"
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput(f"{where}: {first['msg']}", details={"errors": errors}) from None
