"""One module per page group; each exposes ``router``."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from vistudio.web.pages import (
        access,
        albums,
        auth,
        curation,
        dataset,
        duplicates,
        evaluation,
        events,
        geo,
        jobs,
        map,
        people,
        people_review,
        projects,
        runs,
        search,
        settings,
        split,
        timeline,
        training,
    )

    # split before dataset: "/projects/{name}/split" must not be read as a sample route
    return [
        auth.router,
        access.router,
        projects.router,
        split.router,
        training.router,
        evaluation.router,
        curation.router,
        search.router,
        map.router,
        timeline.router,
        geo.router,
        events.router,
        albums.router,
        duplicates.router,
        # before people: "/projects/{name}/people/review" must not be read as a person's page
        people_review.router,
        people.router,
        dataset.router,
        jobs.router,
        runs.router,
        settings.router,
    ]
