"""Search page: a box in the query syntax (words, "phrases", key:value filters: full text and CLIP
fused) and an image upload over the project's CLIP vectors, with filters, a result grid (score,
why, "more like this"), and the embedding status with its progress."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from vistudio import query_syntax
from vistudio.api.deps import StudioDep
from vistudio.api.routes.search import read_upload
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import embeddings, projects, samples, search
from vistudio.studio import Studio
from vistudio.web.pages._common import error_fragment, error_page, is_htmx, render
from vistudio.web.pages.dataset import MAX_PEOPLE, PersonParams, person_filter, person_refs

router = APIRouter(tags=["web"], include_in_schema=False)
SIZES = (20, 40, 100, 200)
Text = Annotated[str, Query(max_length=search.MAX_TEXT)]
Short = Annotated[str, Query(max_length=200)]
FILTERS = ("label", "tag", "taken_from", "taken_to")


def query_params(
    text: Text = "",
    sample: Short = "",
    label: Short = "",
    tag: Short = "",
    taken_from: Short = "",
    taken_to: Short = "",
    k: Short = "",
) -> dict[str, str]:
    """The search form's query string, as sent (validated in ``_run``); the people of its
    ``?person=`` filter come apart (``PersonParams``: a list)."""
    return {
        "text": text,
        "sample": sample,
        "label": label,
        "tag": tag,
        "taken_from": taken_from,
        "taken_to": taken_to,
        "k": k,
    }


QueryParams = Annotated[dict[str, str], Depends(query_params)]


def _k(value: str) -> int:
    if not value:
        return SIZES[1]
    if not (value.isascii() and value.isdigit()) or int(value) not in SIZES:
        raise InvalidInput(f"results per search is one of {', '.join(map(str, SIZES))}")
    return int(value)


def _filters(params: dict[str, str], person: list[str]) -> dict[str, Any]:
    return {
        "label": params.get("label", ""),
        "tag": params.get("tag", ""),
        "from": params.get("taken_from", ""),
        "to": params.get("taken_to", ""),
        "person": person_refs(person),  # photos showing all of these people
    }


def _more_like_this_base(project: dict[str, Any], params: dict[str, str], person: list[str]) -> str:
    """The page URL of a sample search that keeps the current filters (the sample id is appended)."""
    kept = [(k, params[k]) for k in (*FILTERS, "k") if params.get(k)]
    people_kept = [("person", r) for r in dict.fromkeys(v.strip() for v in person if v.strip())]
    return f"/projects/{quote(project['name'], safe='')}/search?" + urlencode(
        [*kept, *people_kept[:MAX_PEOPLE], ("sample", "")]
    )


def _run(
    studio: Studio, project: dict[str, Any], params: dict[str, str], person: list[str]
) -> dict[str, Any] | None:
    text, sample = params.get("text", "").strip(), params.get("sample", "").strip()
    k = _k(params.get("k", ""))
    if not text and not sample:
        return None
    filters = _filters(params, person)
    if sample:
        if not (sample.isascii() and sample.isdigit() and len(sample) < 19):
            raise InvalidInput("the sample to search from must be a sample id (a whole number)")
        return search.search(studio, project=project["id"], sample_id=int(sample), k=k, filters=filters)
    # the box takes the query syntax: words (full text and CLIP, fused) and key:value filters
    return search.search(studio, project=project["id"], query=text, k=k, filters=filters)


def _results_context(
    project: dict[str, Any],
    params: dict[str, str],
    person: list[str],
    result: dict[str, Any] | None,
    error: VistudioError | None,
) -> dict[str, Any]:
    return {
        "project": project,
        "params": params,
        "syntax_keys": query_syntax.KEYS,
        "syntax_example": query_syntax.EXAMPLE,
        "result": result,
        "error": error.message if error else None,
        "error_code": error.code if error else None,
        "more_base": _more_like_this_base(project, params, person),
        "filtered": any(params.get(k) for k in FILTERS) or any(v.strip() for v in person),
    }


@router.get("/projects/{name}/search", response_class=HTMLResponse)
def search_page(
    request: Request,
    studio: StudioDep,
    name: str,
    params: QueryParams,
    person: PersonParams = [],  # noqa: B006
) -> Response:
    """The search form and its results; ``?person=ID`` (repeated) keeps the results to photos
    showing all of these people."""
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc) if is_htmx(request) else error_page(request, exc)
    result, error = None, None
    try:
        result = _run(studio, project, params, person)
    except VistudioError as exc:
        error = exc
    ctx = _results_context(project, params, person, result, error)
    if is_htmx(request):
        return render(
            request, "fragments/search_results.html", ctx, status_code=error.status if error else 200
        )
    status = embeddings.embedding_status(studio, project=project["id"])
    return render(
        request,
        "search.html",
        {
            **ctx,
            "status": status,
            "classes": samples.class_counts(studio, project=project["id"]),
            "tags": samples.tag_counts(studio, project=project["id"]),
            "person_filter": person_filter(studio, project, person),
            "sizes": SIZES,
            "k": params.get("k") or str(SIZES[1]),
            "tab": "search",
            "nav": "projects",
        },
    )


@router.post("/projects/{name}/search/image", response_class=HTMLResponse)
def search_by_image(
    request: Request,
    studio: StudioDep,
    name: str,
    file: Annotated[UploadFile, File()],
    label: Annotated[str, Form(max_length=200)] = "",
    tag: Annotated[str, Form(max_length=200)] = "",
    taken_from: Annotated[str, Form(max_length=200)] = "",
    taken_to: Annotated[str, Form(max_length=200)] = "",
    k: Annotated[str, Form(max_length=10)] = "",
    person: Annotated[list[Annotated[str, Field(max_length=200)]], Form()] = [],  # noqa: B006
) -> Response:
    """Results for an uploaded image (the grid's fragment)."""
    params = {"label": label, "tag": tag, "taken_from": taken_from, "taken_to": taken_to, "k": k}
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    result, error = None, None
    try:
        data = read_upload(studio, request, file)
        result = search.search(
            studio,
            project=project["id"],
            image=data,
            image_name=(file.filename or "upload")[:200],
            k=_k(k),
            filters=_filters(params, person),
        )
    except VistudioError as exc:
        error = exc
    return render(
        request,
        "fragments/search_results.html",
        _results_context(project, params, person, result, error),
        status_code=error.status if error else 200,
    )


def _status_response(
    request: Request, studio: StudioDep, project: dict[str, Any], *, was: str = ""
) -> Response:
    status = embeddings.embedding_status(studio, project=project["id"])
    if was and not status["jobs"]:
        # the embedding the page was following has finished: reload it with its new state
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return render(request, "fragments/search_status.html", {"project": project, "status": status})


@router.get("/projects/{name}/search/status", response_class=HTMLResponse)
def embedding_status(
    request: Request, studio: StudioDep, name: str, was: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    """The embedding status bar; polled while a job runs (``was`` = that job: reload when it ends)."""
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return _status_response(request, studio, project, was=was)


@router.post("/projects/{name}/search/embed", response_class=HTMLResponse)
def start_embedding(request: Request, studio: StudioDep, name: str) -> Response:
    """Embed the project's images with the configured model; answers the status bar."""
    try:
        project = projects.get_project(studio, name)
        embeddings.start_embedding(studio, project=project["id"])
    except VistudioError as exc:
        return error_fragment(request, exc, headers={"HX-Retarget": "#embed-error", "HX-Reswap": "innerHTML"})
    return _status_response(request, studio, project)
