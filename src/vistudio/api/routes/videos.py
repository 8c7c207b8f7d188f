"""Videos of library projects: the list, one video with its keyframes, and its file (with HTTP
Range requests, so that a player can seek)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from vistudio.api.deps import Id, Offset, StudioDep
from vistudio.services import videos

router = APIRouter(tags=["videos"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]


@router.get("/projects/{project}/videos")
def list_videos(
    studio: StudioDep,
    project: ProjectRef,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=videos.MAX_LIMIT)] = 100,
    failed: bool | None = None,
) -> dict[str, Any]:
    """The videos found in the project's library folders, by path: metadata (duration, fps,
    frames, size, creation time and whether it came from the container or the file), the poster
    keyframe, the number of keyframes, or ``error`` for a file that is not a usable video
    (``failed=true``: only those)."""
    return videos.list_videos(studio, project=project, offset=offset, limit=limit, failed=failed)


@router.get("/videos/{video_id}")
def get_video(studio: StudioDep, video_id: Id) -> dict[str, Any]:
    """A video with ``keyframe_items``: its keyframe samples in time order."""
    return videos.get_video(studio, video_id)


@router.get("/videos/{video_id}/file", response_class=FileResponse)
def video_file(studio: StudioDep, video_id: Id) -> FileResponse:
    """The video file itself; honours ``Range`` (206 Partial Content, 416 for a range past its
    end). Only a file inside its library folder is served."""
    path, media = videos.video_file(studio, video_id)
    return FileResponse(path, media_type=media, content_disposition_type="inline", filename=path.name)
