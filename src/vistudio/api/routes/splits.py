from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import StudioDep
from vistudio.services import splits

router = APIRouter(prefix="/splits", tags=["splits"])


class SplitRequest(BaseModel):
    project: str = Field(max_length=200)
    name: str = Field(default="default", max_length=64)
    ratios: list[float] | dict[str, float] = Field(default=[0.8, 0.1, 0.1], max_length=3)
    seed: int = Field(default=42, ge=0, le=2**63 - 1)


@router.get("")
def list_splits(studio: StudioDep, project: Annotated[str, Query(max_length=200)]) -> dict[str, Any]:
    return splits.list_splits(studio, project=project)


@router.post("/preview")
def preview(studio: StudioDep, body: SplitRequest) -> dict[str, Any]:
    return {
        "split": splits.preview_split(
            studio, project=body.project, ratios=body.ratios, seed=body.seed, name=body.name
        )
    }


@router.post("", status_code=201)
def create(studio: StudioDep, body: SplitRequest) -> dict[str, Any]:
    return {
        "split": splits.create_split(
            studio, project=body.project, name=body.name, ratios=body.ratios, seed=body.seed
        )
    }


@router.get("/{project}/{name}")
def get_split(studio: StudioDep, project: str, name: str) -> dict[str, Any]:
    return {"split": splits.get_split(studio, project=project, name=name)}


@router.put("/{project}/{name}", status_code=409)
@router.patch("/{project}/{name}", status_code=409)
def change_split(studio: StudioDep, project: str, name: str) -> dict[str, Any]:
    splits.refuse_change(studio, project=project, name=name)
    return {}


@router.delete("/{project}/{name}")
def delete_split(studio: StudioDep, project: str, name: str) -> dict[str, Any]:
    return splits.delete_split(studio, project=project, name=name)
