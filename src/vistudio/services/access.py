"""Who may see and change which project: owners, members with a role, admins.

With no user in the database every request is the local user (``users.LOCAL``) and may do
everything: the zero-setup mode on 127.0.0.1. Once users exist a project is private to its owner,
its members and the admins. A project someone may not see is reported exactly like a missing
one (404), so that its name does not leak. See docs/security.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Job, Run, Sample
from vistudio.db.faces import Face
from vistudio.db.training import Experiment, ModelExport
from vistudio.db.users import ProjectMember, User
from vistudio.db.videos import Video
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.services.projects import find_project
from vistudio.services.users import Principal, audit
from vistudio.studio import Studio

MEMBER_ROLES = ("owner", "editor", "viewer")
WRITE_ROLES = ("owner", "editor")


class Forbidden(VistudioError):
    """Seen but not allowed (a viewer's write): 403."""

    code = "forbidden"
    status = 403


def project_role(s: Session, principal: Principal, project_id: int) -> str | None:
    """``owner`` | ``editor`` | ``viewer`` | None (may not see it). Admins and local mode: owner."""
    if principal.user_id is None or principal.is_admin:
        return "owner"
    return s.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == principal.user_id
        )
    )


def check_project(studio: Studio, principal: Principal, ref: str | int, *, action: str) -> bool:
    """Raise NotFound (the body of a missing project) when ``principal`` may not see the project,
    Forbidden when it may see but not ``action`` ("read" | "write" | "manage") it. False: the
    project does not exist (nothing checked: the caller applies the global role, then the route
    says it is missing); True: it exists and ``principal`` may do ``action``."""
    if principal.user_id is None:
        return True
    with studio.sessions() as s:
        try:
            project = find_project(s, ref)
        except NotFound:
            return False
        _check(s, principal, project.id, ref, action=action)
        return True


def check_project_id(
    studio: Studio, principal: Principal, project_id: int | None, what: str, *, action: str
) -> None:
    """The same check for a resource (a sample, job, …) that belongs to ``project_id``; a hidden
    one is reported as ``what`` not found. A resource without a project (a pipeline run over a
    folder, and its job) is readable by every user and changed by editors and admins (no creator
    is recorded)."""
    if principal.user_id is None:
        return
    if project_id is None:
        if action != "read" and principal.role == "viewer":
            raise Forbidden("viewers cannot change anything")
        return
    with studio.sessions() as s:
        role = project_role(s, principal, project_id)
        if role is None:
            raise NotFound(f"{what} not found")
        if action != "read" and (role not in WRITE_ROLES or principal.role == "viewer"):
            raise Forbidden(f"your role on this project ({role}) cannot change it")


def _check(s: Session, principal: Principal, project_id: int, ref: str | int, *, action: str) -> None:
    role = project_role(s, principal, project_id)
    if role is None:
        raise NotFound(f"project {ref!r} not found")
    if action == "read":
        return
    if action == "manage":
        if role != "owner":
            raise Forbidden("only the project's owner or an admin can share it")
        return
    # a global viewer stays read-only even where a project lists it as an editor
    if role not in WRITE_ROLES or principal.role == "viewer":
        raise Forbidden(f"your role on this project ({role}) cannot change it")


# the project of a run over a project that was deleted since: no member row has this id, so only
# admins see the run (its outputs are that project's images)
DELETED_PROJECT = -1


def run_project_id(run_input: Any, job: tuple[int | None] | None) -> int | None:
    """The project a pipeline run read: its input's ``project_id`` (``{"kind": "project", …}``),
    else its job's; None for a run over a folder or files. ``job``: ``(the job's project_id,)``
    while the run's job row exists, else None. The job's project_id is set to NULL when the
    project is deleted: such a run gets :data:`DELETED_PROJECT` (admins only) rather than becoming
    everyone's, or its id being taken by a later project."""
    pid = run_input.get("project_id") if isinstance(run_input, dict) else None
    job_pid = job[0] if job is not None else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return job_pid
    if job is not None and job_pid != pid:
        return DELETED_PROJECT
    return pid


def _run_rows(s: Session, run_ids: list[str] | None = None) -> list[tuple[str, int | None]]:
    """``(run id, project id)`` of the given runs (all runs when None)."""
    q = select(Run.id, Run.input, Job.id, Job.project_id).outerjoin(Job, Job.id == Run.job_id)
    if run_ids is not None:
        q = q.where(Run.id.in_(run_ids))
    return [
        (rid, run_project_id(inp, (jpid,) if jid is not None else None))
        for rid, inp, jid, jpid in s.execute(q).all()
    ]


def visible_run_ids(studio: Studio, principal: Principal) -> set[str] | None:
    """The pipeline runs ``principal`` may see — those over no project (a folder, files) and those
    over a project it may see; None: all of them (admins, local mode)."""
    visible = visible_project_ids(studio, principal)
    if visible is None:
        return None
    with studio.sessions() as s:
        return {rid for rid, pid in _run_rows(s) if pid is None or pid in visible}


def check_runs(studio: Studio, principal: Principal, run_ids: list[str], *, action: str = "read") -> None:
    """Raise NotFound (``run 'ID' not found``, the body of a missing run) for a run of a project
    ``principal`` may not see, Forbidden when it may see but not ``action`` it. Missing runs are
    left to the caller. For routes that name more than one run (a comparison)."""
    if principal.user_id is None:
        return
    with studio.sessions() as s:
        rows = dict(_run_rows(s, list(run_ids)))
    for rid in run_ids:
        if rid in rows:
            check_project_id(studio, principal, rows[rid], f"run {rid!r}", action=action)


def resource_project(studio: Studio, kind: str, rid: int | str) -> tuple[bool, int | None]:
    """``(exists, project_id)`` of a sample, job, video, face, model export (by integer id) or
    pipeline run (by its string id)."""
    with studio.sessions() as s:
        if kind == "run":
            found = _run_rows(s, [str(rid)])
            return (True, found[0][1]) if found else (False, None)
        if kind == "sample":
            pid = s.scalar(select(Sample.project_id).where(Sample.id == rid))
            return pid is not None, pid
        if kind == "job":
            row = s.execute(select(Job.id, Job.project_id).where(Job.id == rid)).first()
            return (row is not None, row[1] if row else None)
        if kind == "video":
            pid = s.scalar(select(Video.project_id).where(Video.id == rid))
            return pid is not None, pid
        if kind == "face":
            pid = s.scalar(select(Face.project_id).where(Face.id == rid))
            return pid is not None, pid
        if kind == "export":
            pid = s.scalar(
                select(Experiment.project_id)
                .join(ModelExport, ModelExport.experiment_id == Experiment.id)
                .where(ModelExport.id == rid)
            )
            return pid is not None, pid
    raise ValueError(kind)


def visible_project_ids(studio: Studio, principal: Principal) -> set[int] | None:
    """The projects ``principal`` may see; None: all of them (admins, local mode)."""
    if principal.user_id is None or principal.is_admin:
        return None
    with studio.sessions() as s:
        return set(
            s.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == principal.user_id))
        )


def record_owner(studio: Studio, principal: Principal, project_id: int) -> None:
    """Make the creator of a new project its owner (nothing in local mode)."""
    if principal.user_id is None:
        return
    with studio.sessions.begin() as s:
        s.merge(ProjectMember(project_id=project_id, user_id=principal.user_id, role="owner"))


def share_project(
    studio: Studio, *, project: str, user: str, role: str, actor: str = "cli"
) -> dict[str, Any]:
    """Give ``user`` a ``role`` on ``project`` (``none`` removes them). Recorded in the audit log."""
    if role not in (*MEMBER_ROLES, "none"):
        raise InvalidInput(f"unknown role {role!r}; use one of: {', '.join(MEMBER_ROLES)}, none")
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        u = s.scalar(select(User).where(User.name == user))
        if u is None:
            raise NotFound(f"user {user!r} not found")
        member = s.get(ProjectMember, (p.id, u.id))
        if role == "none":
            if member is not None:
                s.delete(member)
        elif member is None:
            s.add(ProjectMember(project_id=p.id, user_id=u.id, role=role))
        else:
            member.role = role
        audit(s, actor=actor, action="project.share", target=p.name, user=u.name, role=role)
        return {"project": p.name, "user": u.name, "role": role}


def project_members(studio: Studio, project: str) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = s.execute(
            select(User.name, ProjectMember.role)
            .join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == p.id)
            .order_by(User.name)
        ).all()
        items = [{"user": name, "role": role} for name, role in rows]
        return {"project": p.name, "items": items, "total": len(items)}
