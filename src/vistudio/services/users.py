"""Users, per-user API tokens, web sessions and the audit log of admin actions.

Secrets are random (``secrets.token_urlsafe(32)``) and stored only as their sha256. A token is
found by an indexed equality lookup on that hash: the secret itself is never compared in Python,
and where a secret is compared (a CSRF token) it is with ``hmac.compare_digest``. Nothing is
cached: revoking a token or deleting a user takes effect on the very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.db import Project, utcnow
from vistudio.db.users import ApiToken, AuditEntry, ProjectMember, User, WebSession
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.studio import Studio

ROLES = ("admin", "editor", "viewer")
TOKEN_PREFIX = "vst_"  # tells a vistudio token apart in a config file or a leak scanner
SESSION_DAYS = 14
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")
# scrypt cost: 16 MiB and ≈ 50 ms per sign-in on a laptop (OWASP's minimum is n=2**17 with r=8, p=1)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class Principal:
    """Who makes a request. ``user_id`` None: local mode (no users exist): may do everything."""

    user_id: int | None
    name: str
    role: str  # admin | editor | viewer
    via: str  # "local" | "token" | "session"
    session_secret: str | None = None  # the raw session cookie (for the CSRF token), session only
    # token only: when the request's token expires (None: never); a token it makes expires no later
    token_expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def csrf_token(self) -> str:
        return csrf_for(self.session_secret) if self.session_secret else ""


LOCAL = Principal(user_id=None, name="local", role="admin", via="local")
# not signed in while users exist: a user id that no row has, and no role
ANONYMOUS = Principal(user_id=0, name="anonymous", role="none", via="none")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_for(session_secret: str) -> str:
    """The CSRF token of a web session: derived from its secret, so nothing more is stored."""
    return hmac.new(session_secret.encode(), b"vistudio-csrf", hashlib.sha256).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    given = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=64 * 2**20
    )
    return hmac.compare_digest(given, bytes.fromhex(digest))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def user_dict(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "role": u.role,
        "has_password": bool(u.password_hash),
        "created_at": _iso(u.created_at),
    }


def token_dict(t: ApiToken, user: str) -> dict[str, Any]:
    now = utcnow()
    state = (
        "revoked"
        if t.revoked_at
        else "expired"
        if t.expires_at is not None and t.expires_at <= now
        else "active"
    )
    return {
        "id": t.id,
        "user": user,
        "prefix": t.prefix,
        "state": state,
        "created_at": _iso(t.created_at),
        "expires_at": _iso(t.expires_at),
        "last_used_at": _iso(t.last_used_at),
        "revoked_at": _iso(t.revoked_at),
    }


def audit(session: Session, *, actor: str, action: str, target: str, **details: Any) -> None:
    """Append an admin action to the audit log, in the caller's transaction."""
    session.add(AuditEntry(actor=actor[:100], action=action, target=target[:300], details=details))


def users_exist(studio: Studio) -> bool:
    with studio.sessions() as s:
        return s.scalar(select(User.id).limit(1)) is not None


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"unknown role {role!r}; use one of: {', '.join(ROLES)}", details={"roles": list(ROLES)}
        )
    return role


def _find_user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def add_user(
    studio: Studio, *, name: str, role: str, password: str | None = None, actor: str = "cli"
) -> dict[str, Any]:
    """Create a user. The first user must be an admin; it becomes the owner of every project
    that exists at that moment (projects were everyone's in local mode)."""
    name = name.strip()
    if not USER_RE.match(name):
        raise InvalidInput(
            "a user name is 1-100 letters, digits, '_', '.', '@' or '-'", details={"name": name[:200]}
        )
    _check_role(role)
    if password is not None and len(password) < 8:
        raise InvalidInput("a password has at least 8 characters")
    try:
        with studio.sessions.begin() as s:
            first = s.scalar(select(User.id).limit(1)) is None
            if first and role != "admin":
                raise InvalidInput("the first user must be an admin: `vistudio users add NAME --role admin`")
            user = User(name=name, role=role, password_hash=hash_password(password) if password else None)
            s.add(user)
            s.flush()
            claimed: list[str] = []
            if first:
                for pid, pname in s.execute(select(Project.id, Project.name)).all():
                    s.add(ProjectMember(project_id=pid, user_id=user.id, role="owner"))
                    claimed.append(pname)
            audit(s, actor=actor, action="user.add", target=name, role=role, owns=claimed)
            d = user_dict(user)
            d["owns"] = claimed
            return d
    except IntegrityError:
        raise Conflict(f"a user named {name!r} already exists") from None


def user_id(studio: Studio, name: str) -> int:
    with studio.sessions() as s:
        return _find_user(s, name).id


def list_users(studio: Studio) -> dict[str, Any]:
    with studio.sessions() as s:
        items = [user_dict(u) for u in s.scalars(select(User).order_by(User.name))]
        return {"items": items, "total": len(items)}


def set_password(studio: Studio, *, name: str, password: str, actor: str = "cli") -> dict[str, Any]:
    if len(password) < 8:
        raise InvalidInput("a password has at least 8 characters")
    with studio.sessions.begin() as s:
        user = _find_user(s, name)
        user.password_hash = hash_password(password)
        # a new password ends every web session of the user
        s.execute(delete(WebSession).where(WebSession.user_id == user.id))
        audit(s, actor=actor, action="user.password", target=name)
        return user_dict(user)


def set_role(studio: Studio, *, name: str, role: str, actor: str = "cli") -> dict[str, Any]:
    """Change a user's role; it applies from their next request (tokens and sessions look the
    role up each time). The last admin keeps theirs."""
    _check_role(role)
    with studio.sessions.begin() as s:
        user = _find_user(s, name)
        admins = s.scalars(select(User.id).where(User.role == "admin")).all()
        if user.role == "admin" and role != "admin" and len(admins) == 1:
            raise Conflict("the last admin cannot stop being one: make another admin first")
        before, user.role = user.role, role
        audit(s, actor=actor, action="user.role", target=name, role=role, before=before)
        return user_dict(user)


def remove_user(studio: Studio, *, name: str, actor: str = "cli") -> dict[str, Any]:
    with studio.sessions.begin() as s:
        user = _find_user(s, name)
        if user.role == "admin":
            admins = s.scalars(select(User.id).where(User.role == "admin")).all()
            if len(admins) == 1:
                raise Conflict("the last admin cannot be removed")
        s.delete(user)
        audit(s, actor=actor, action="user.remove", target=name)
        return {"removed": name}


def create_token(
    studio: Studio,
    *,
    user: str,
    expires_days: float | None = None,
    actor: str = "cli",
    not_after: datetime | None = None,
) -> dict[str, Any]:
    """A new API token for ``user``: the secret is in the answer once and never again.

    ``not_after``: the latest expiry allowed — the expiry of the token that asks for this one
    (a token made with a token expires no later than it: an expiring token cannot mint one that
    outlives it). ``expiry_capped`` in the answer says the expiry asked for (or its absence: never)
    was brought down to it."""
    if expires_days is not None and not 0 < expires_days <= 3650:
        raise InvalidInput("--expires is a number of days, 1 to 3650")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with studio.sessions.begin() as s:
        u = _find_user(s, user)
        expires = utcnow() + timedelta(days=expires_days) if expires_days else None
        capped = not_after is not None and (expires is None or expires > not_after)
        if capped:
            expires = not_after
        row = ApiToken(user_id=u.id, prefix=secret[:12], token_hash=secret_hash(secret), expires_at=expires)
        s.add(row)
        s.flush()
        audit(
            s,
            actor=actor,
            action="token.create",
            target=u.name,
            token_id=row.id,
            expires_at=_iso(expires),
            **({"expiry_capped": True} if capped else {}),
        )
        d = token_dict(row, u.name)
        d["expiry_capped"] = capped
        d["token"] = secret
        return d


def list_tokens(studio: Studio, *, user: str | None = None) -> dict[str, Any]:
    with studio.sessions() as s:
        q = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
        if user is not None:
            q = q.where(User.name == user)
        items = [token_dict(t, name) for t, name in s.execute(q).all()]
        return {"items": items, "total": len(items)}


def revoke_token(
    studio: Studio, *, token_id: int, actor: str = "cli", owner: int | None = None
) -> dict[str, Any]:
    """Revoke a token (``owner``: only if it belongs to that user id; else it is not found)."""
    with studio.sessions.begin() as s:
        row = s.get(ApiToken, token_id)
        if row is None or (owner is not None and row.user_id != owner):
            raise NotFound(f"token {token_id} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        name = s.scalar(select(User.name).where(User.id == row.user_id)) or "?"
        audit(s, actor=actor, action="token.revoke", target=name, token_id=token_id)
        return token_dict(row, name)


def principal_for_token(studio: Studio, secret: str) -> Principal | None:
    """The user of a live API token, or None. One indexed lookup by the token's full sha256."""
    if not secret or len(secret) > 200:
        return None
    with studio.sessions.begin() as s:
        row = s.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == secret_hash(secret))
        ).first()
        if row is None:
            return None
        token, user = row
        now = utcnow()
        if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
            return None
        # written at most once a minute: a busy client does not turn every read into a write
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            token.last_used_at = now
        return Principal(
            user_id=user.id, name=user.name, role=user.role, via="token", token_expires_at=token.expires_at
        )


def sign_in(studio: Studio, *, name: str, password: str) -> str | None:
    """A new web session's secret (for the cookie) when the password is right, else None."""
    with studio.sessions.begin() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            # the same work as a real check: a wrong user name takes as long as a wrong password
            check_password(password, _DUMMY_HASH)
            return None
        if not check_password(password, user.password_hash):
            return None
        secret = secrets.token_urlsafe(32)
        s.add(
            WebSession(
                user_id=user.id,
                session_hash=secret_hash(secret),
                expires_at=utcnow() + timedelta(days=SESSION_DAYS),
            )
        )
        return secret


def principal_for_session(studio: Studio, secret: str) -> Principal | None:
    if not secret or len(secret) > 200:
        return None
    with studio.sessions() as s:
        row = s.execute(
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.session_hash == secret_hash(secret))
        ).first()
        if row is None or row[0].expires_at <= utcnow():
            return None
        user = row[1]
        return Principal(
            user_id=user.id, name=user.name, role=user.role, via="session", session_secret=secret
        )


def sign_out(studio: Studio, secret: str) -> None:
    with studio.sessions.begin() as s:
        s.execute(delete(WebSession).where(WebSession.session_hash == secret_hash(secret)))


def list_audit(studio: Studio, *, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    from sqlalchemy import func

    with studio.sessions() as s:
        total = s.scalar(select(func.count(AuditEntry.id))) or 0
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).offset(offset).limit(limit))
        items = [
            {
                "id": e.id,
                "at": _iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "details": e.details,
            }
            for e in rows
        ]
        return {"items": items, "total": total}


_DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 64
