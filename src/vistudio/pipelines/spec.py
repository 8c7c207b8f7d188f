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
from vistudio.pipelines.stage import FILE, KIND_WORDS, STAGES, StageFn, io_of

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
        spec = PipelineSpec.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "pipeline"
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput(f"{where}: {first['msg']}", details={"errors": errors}) from None
    check_chain(spec)
    return spec


def check_chain(spec: PipelineSpec, functions: dict[str, StageFn] | None = None) -> None:
    """Refuse (InvalidInput, naming the stage and the fix) a chain whose stages cannot fit: a
    stage that needs an image first in line, or after a stage that gives an array or a label.

    Built-in stages declare what they take and give; a custom stage counts as taking and giving
    anything unless its function, given in ``functions`` (stage name → function), declares
    ``takes``/``gives``. Stages not registered are left to the runner to refuse by name.
    """
    import vistudio.pipelines.builtin  # noqa: F401 - registers the built-in stages and their kinds

    functions = functions or {}
    gives, before = FILE, None  # the first stage gets no data, only the item's file
    for position, st in enumerate(spec.stages):
        fn = functions.get(st.name)
        if fn is None and st.function in STAGES.entries:
            fn = STAGES.entries[st.function]
        if fn is None:
            gives, before = "any", st
            continue
        io = io_of(fn, None if st.function.startswith("custom:") else st.function)
        if not io.accepts(gives):
            needs = " or ".join(KIND_WORDS[k] for k in io.takes if k != FILE)
            named = f"stage {st.name!r}" + (f" ({st.function})" if st.function != st.name else "")
            if before is None:
                fix = "add a `load` stage first (it reads each item's image file)"
                problem = f"{named} needs {needs}, but as the first stage it gets {KIND_WORDS[FILE]}"
            else:
                prev = f"stage {before.name!r}" + (
                    f" ({before.function})" if before.function != before.name else ""
                )
                fix = (
                    f"move {st.name!r} before {before.name!r}, or put a stage between them that gives {needs}"
                )
                problem = f"{named} needs {needs}, but {prev} before it gives {KIND_WORDS[gives]}"
            raise InvalidInput(
                f"{problem}: {fix}",
                details={
                    "stage": st.name,
                    "uses": st.function,
                    "position": position,
                    "takes": list(io.takes),
                    "gets": gives,
                    "previous": before.name if before else None,
                    "fix": fix,
                },
            )
        gives, before = io.gives, st
