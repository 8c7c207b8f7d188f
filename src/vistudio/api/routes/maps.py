"""The embedding map: compute a project's 2-D map and read its points."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from vistudio.api.deps import StudioDep
from vistudio.services import embedding_map

router = APIRouter(tags=["embedding map"])


class MapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["embeddings", "experiment"] = "embeddings"
    experiment: str | None = Field(None, max_length=200)
    method: Literal["auto", "umap", "pca"] = "auto"


@router.post("/projects/{project}/map", status_code=202)
def compute_map(studio: StudioDep, project: str, body: MapRequest) -> dict[str, Any]:
    """Queue the computation of the project's map (CLIP embeddings, or an experiment's features;
    UMAP, or PCA) → 202 ``{"job"}``; 409 when the project has no complete set of embeddings."""
    return embedding_map.start_map(
        studio, project=project, source=body.source, experiment=body.experiment, method=body.method
    )


@router.get("/projects/{project}/map")
def get_map(
    studio: StudioDep,
    project: str,
    source: Literal["embeddings", "experiment"] = "embeddings",
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=100, description="add a 0/1 `tagged` array")] = None,
    outcome: Annotated[
        str | None,
        Query(max_length=200, description="an evaluated experiment: `outcome` 1 right, 0 wrong, -1 none"),
    ] = None,
) -> dict[str, Any]:
    """The map's points as arrays: ``ids``, ``x``, ``y`` (0..1), ``label`` (index into ``classes``,
    -1 unlabelled), and ``tagged`` / ``outcome`` when asked; 404 before it is computed."""
    return embedding_map.get_map(
        studio, project=project, source=source, experiment=experiment, tag=tag, outcome=outcome
    )
