"""Projects: create, list, rename, delete (releasing their blobs)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.db import Job, LabelClass, Project, Sample, Split
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.ml.tasks import SECTIONS, get_task, task_names
from vistudio.studio import Studio

NAME_RE = re.compile(r"^[\w][\w .\-]{0,99}$")


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise InvalidInput(
            "a project name is 1-100 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit",
            details={"name": name[:200]},
        )
    return name


def project_dict(p: Project, *, samples: int | None = None, classes: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "task": p.task,
        "created_at": p.created_at.isoformat() + "Z",
        "updated_at": p.updated_at.isoformat() + "Z",
    }
    if samples is not None:
        d["samples"] = samples
    if classes is not None:
        d["classes"] = classes
    return d


def task_catalog() -> list[dict[str, Any]]:
    """Every task, in the order users see them, with what its projects offer today."""
    return [
        {
            "name": t.name,
            "title": t.title,
            "label": t.label,
            "summary": t.summary,
            "can_train": t.can_train,
            "sections": list(t.sections),
        }
        for t in (get_task(n) for n in task_names())
    ]


def check_section(project: dict[str, Any], section: str) -> None:
    """A NotFound when the project's task does not offer ``section`` (``SECTIONS``): a photo
    library has no Train page, a detection project none until detection can be trained."""
    spec = get_task(project["task"])
    if section not in spec.sections:
        offered = ", ".join(SECTIONS[s] for s in spec.sections)
        raise NotFound(
            f"{spec.title} projects have no {SECTIONS[section]} section; "
            f"{project['name']} offers {offered}",
            details={"section": section, "task": spec.name, "sections": list(spec.sections)},
        )


def find_project(session: Session, ref: str | int) -> Project:
    """A project by id or by name."""
    project: Project | None = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18):
        project = session.get(Project, int(ref)) if 0 < int(ref) < 2**63 else None
    if project is None and isinstance(ref, str):
        project = session.scalar(select(Project).where(Project.name == ref))
    if project is None:
        raise NotFound(f"project {ref!r} not found")
    return project


def create_project(studio: Studio, *, name: str, task: str, owner: int | None = None) -> dict[str, Any]:
    """A new project; ``owner`` (a user id, once users exist) becomes its owner."""
    name = check_name(name)
    try:
        get_task(task)
    except KeyError:
        raise InvalidInput(
            f"unknown task {task!r}; use one of: {', '.join(task_names())}", details={"tasks": task_names()}
        ) from None
    try:
        with studio.sessions.begin() as s:
            p = Project(name=name, task=task)
            s.add(p)
            s.flush()
            if owner:
                from vistudio.db.users import ProjectMember

                s.add(ProjectMember(project_id=p.id, user_id=owner, role="owner"))
            return project_dict(p, samples=0, classes=0)
    except IntegrityError:
        raise Conflict(f"a project named {name!r} already exists") from None


def list_projects(
    studio: Studio, *, offset: int = 0, limit: int = 100, visible: set[int] | None = None
) -> dict[str, Any]:
    """Projects by name; ``visible``: only these ids (a user's, once users exist; None: all)."""
    scope = select(Project) if visible is None else select(Project).where(Project.id.in_(visible))
    with studio.sessions() as s:
        total = s.scalar(select(func.count()).select_from(scope.subquery())) or 0
        projects = list(s.scalars(scope.order_by(Project.name).offset(offset).limit(limit)))
        ids = [p.id for p in projects]
        counts = dict(
            s.execute(
                select(Sample.project_id, func.count())
                .where(Sample.project_id.in_(ids))
                .group_by(Sample.project_id)
            ).all()
        )
        classes = dict(
            s.execute(
                select(LabelClass.project_id, func.count())
                .where(LabelClass.project_id.in_(ids))
                .group_by(LabelClass.project_id)
            ).all()
        )
        return {
            "items": [
                project_dict(p, samples=counts.get(p.id, 0), classes=classes.get(p.id, 0)) for p in projects
            ],
            "total": total,
        }


def get_project(studio: Studio, ref: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, ref)
        samples = s.scalar(select(func.count()).where(Sample.project_id == p.id)) or 0
        class_rows = s.scalars(
            select(LabelClass.name).where(LabelClass.project_id == p.id).order_by(LabelClass.ordinal)
        )
        splits = s.scalars(select(Split.name).where(Split.project_id == p.id).order_by(Split.created_at))
        d = project_dict(p, samples=samples)
        d["classes"] = list(class_rows)
        d["splits"] = list(splits)
        return d


def rename_project(studio: Studio, ref: str | int, new_name: str) -> dict[str, Any]:
    new_name = check_name(new_name)
    try:
        with studio.sessions.begin() as s:
            p = find_project(s, ref)
            p.name = new_name
            s.flush()
            return project_dict(p)
    except IntegrityError:
        raise Conflict(f"a project named {new_name!r} already exists") from None


def delete_project(studio: Studio, ref: str | int) -> dict[str, Any]:
    """Delete a project and release its blobs. Originals in reference mode are never touched."""
    with studio.sessions.begin() as s:
        p = find_project(s, ref)
        running = s.scalar(
            select(func.count()).where(Job.project_id == p.id, Job.status.in_(("queued", "running")))
        )
        if running:
            raise Conflict(f"project {p.name!r} has {running} queued or running job(s); cancel them first")
        from vistudio.services.experiments import release_project_experiments

        release_project_experiments(studio, s, p.id)  # checkpoints and other per-experiment blobs
        refs = s.execute(select(Sample.sha256, Sample.storage).where(Sample.project_id == p.id)).all()
        for sha, storage in refs:
            studio.store.release(s, "thumbnail", sha)
            if storage == "copy":
                studio.store.release(s, "original", sha)
        name, project_id = p.name, p.id
        s.delete(p)
    # Blobs go in a second transaction: a crash in between leaves zero-ref rows that gc collects.
    with studio.sessions.begin() as s:
        removed = studio.store.gc(s)
    from vistudio.services.vector_index import drop_project_indexes

    drop_project_indexes(studio, project_id)
    return {"deleted": name, "samples": len(refs), "blobs_removed": removed}
