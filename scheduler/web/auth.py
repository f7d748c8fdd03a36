"""Who is asking, and what they may do: users, roles, sessions, CSRF tokens, the audit log.

Passwords are hashed with argon2id (``argon2-cffi``: memory-hard, salted, its parameters kept
in the hash so they can be raised later). A signed-in browser holds a random session token in
an HttpOnly cookie; the database keeps only its SHA-256, so a copy of the database signs nobody
in. A form's CSRF token is an HMAC of the session token: it needs no storage, and a page on
another site can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update

from scheduler.db.models import AuditEntry, WebSession, WebUser
from scheduler.errors import InvalidInput, NotFound, Problem, SmmError, excerpt
from scheduler.logging import redact

users_t = WebUser.__table__  # type: ignore[attr-defined]
sessions_t = WebSession.__table__  # type: ignore[attr-defined]
audit_t = AuditEntry.__table__  # type: ignore[attr-defined]

#: Each role may do what the ones before it may (docs/web.md#roles).
ROLES = ("viewer", "editor", "approver", "admin")
#: What each action needs.
NEEDS = {
    "view": "viewer",
    "edit": "editor",  # reschedule, cancel, retry, resolve, pause, resume
    "approve": "approver",  # approve, send back
    "admin": "admin",  # the audit log
}
MIN_PASSWORD = 10

_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    """A signed-in person."""

    id: int
    name: str
    role: str

    def can(self, action: str) -> bool:
        """Whether the user's role allows ``action`` (a key of ``NEEDS``)."""
        return ROLES.index(self.role) >= ROLES.index(NEEDS[action])


class Forbidden(SmmError):
    """The user's role does not allow the action."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            [Problem("--role", None, "role", f"unknown role {excerpt(role)}", ", ".join(ROLES))],
            "user",
        )
    return role


def check_name(name: str) -> str:
    if not name or len(name) > 100 or not name.isprintable() or name.strip() != name:
        raise InvalidInput(
            [
                Problem(
                    "NAME",
                    None,
                    "name",
                    f"bad user name {excerpt(name)}",
                    "1-100 printable characters",
                )
            ],
            "user",
        )
    return name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise SmmError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_free(conn: Connection, name: str) -> None:
    """SmmError when a user of that name exists already."""
    if conn.execute(select(users_t.c.id).where(users_t.c.name == name)).first():
        import shlex

        arg = shlex.quote(name)
        raise SmmError(
            f"user {name!r} exists already: a new password with `smm web user passwd {arg}`, "
            f"a new role with `smm web user set {arg} --role ROLE`"
        )


def add_user(conn: Connection, name: str, role: str, password: str | None, now: datetime) -> None:
    """A new user; without a password they can only come in through the trusted proxy."""
    check_name(name)
    check_role(role)
    check_free(conn, name)
    conn.execute(
        users_t.insert().values(
            name=name,
            role=role,
            password_hash=hash_password(password) if password is not None else None,
            disabled=False,
            created_at=now,
            updated_at=now,
        )
    )


def change_user(
    conn: Connection,
    name: str,
    now: datetime,
    *,
    password: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
) -> None:
    """Change a user's password, role or access; their open sessions end."""
    user_id = require_user(conn, name)
    values: dict[str, object] = {"updated_at": now}
    if password is not None:
        values["password_hash"] = hash_password(password)
    if role is not None:
        values["role"] = check_role(role)
    if disabled is not None:
        values["disabled"] = disabled
    conn.execute(update(users_t).where(users_t.c.id == user_id).values(**values))
    conn.execute(delete(sessions_t).where(sessions_t.c.user_id == user_id))


def require_user(conn: Connection, name: str) -> int:
    """The id of the user called ``name``, enabled or not; NotFound when there is none."""
    row = conn.execute(select(users_t.c.id).where(users_t.c.name == name)).first()
    if row is None:
        raise NotFound(f"no user {name!r} (see `smm web user list`)")
    return int(row.id)


def list_users(conn: Connection) -> list[dict[str, object]]:
    """Users as ``smm web user list`` prints them (never the hash)."""
    return [
        {
            "name": r.name,
            "role": r.role,
            "password": r.password_hash is not None,
            "disabled": r.disabled,
            "created_at": r.created_at,
        }
        for r in conn.execute(select(users_t).order_by(users_t.c.name))
    ]


# a dummy hash to verify against when the name is unknown, so both cases take as long
_DUMMY = _hasher.hash(secrets.token_hex(16))


def check_password(conn: Connection, name: str, password: str) -> User | None:
    """The user, when ``name`` and ``password`` match an enabled user; else None."""
    row = conn.execute(select(users_t).where(users_t.c.name == name)).first()
    stored = row.password_hash if row is not None and not row.disabled else None
    try:
        _hasher.verify(stored or _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or stored is None:
        return None
    return User(row.id, row.name, row.role)


def user_named(conn: Connection, name: str) -> User | None:
    """An enabled user by name (the trusted proxy's header names them)."""
    row = conn.execute(select(users_t).where(users_t.c.name == name)).first()
    if row is None or row.disabled:
        return None
    return User(row.id, row.name, row.role)


class Throttle:
    """Failed sign-ins per name and per address, in this process: after ``limit`` failures
    within ``window`` seconds, further tries are refused until the oldest ages out. Guessing
    passwords then takes hours, and a user who mistyped waits minutes."""

    def __init__(self, limit: int = 5, window: float = 900.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def wait(self, keys: Sequence[str], now: float) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        waits = [
            self.window - (now - times[0])
            for key in keys
            if len(times := self._recent(key, now)) >= self.limit
        ]
        return max(waits, default=0.0)

    def failed(self, keys: Sequence[str], now: float) -> None:
        if len(self._failures) > 10_000:  # bounded memory, whatever is thrown at it
            self._failures.clear()
        for key in keys:
            self._failures.setdefault(key, []).append(now)


# --------------------------------------------------------------------------- sessions


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: Connection, user: User, now: datetime, lifetime: timedelta) -> str:
    """A new session for ``user``; returns the token for the cookie (stored only hashed)."""
    token = secrets.token_urlsafe(32)
    conn.execute(delete(sessions_t).where(sessions_t.c.expires_at < now))
    conn.execute(
        sessions_t.insert().values(
            id=_digest(token), user_id=user.id, created_at=now, expires_at=now + lifetime
        )
    )
    return token


def session_user(conn: Connection, token: str, now: datetime) -> User | None:
    """The user of a live session, or None (unknown, expired, or the user disabled)."""
    row = conn.execute(
        select(users_t.c.id, users_t.c.name, users_t.c.role, users_t.c.disabled)
        .join(sessions_t, sessions_t.c.user_id == users_t.c.id)
        .where(sessions_t.c.id == _digest(token), sessions_t.c.expires_at > now)
    ).first()
    if row is None or row.disabled:
        return None
    return User(row.id, row.name, row.role)


def close_session(conn: Connection, token: str) -> None:
    conn.execute(delete(sessions_t).where(sessions_t.c.id == _digest(token)))


def csrf_token(session_token: str) -> str:
    """The token every form of this session carries."""
    return hmac.new(session_token.encode(), b"smm-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str | None, sent: object) -> bool:
    if not session_token or not isinstance(sent, str):
        return False
    return hmac.compare_digest(csrf_token(session_token), sent)


# --------------------------------------------------------------------------- audit


def audit(
    conn: Connection,
    now: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    remote_addr: str | None = None,
) -> None:
    """Record one change (in the caller's transaction, so it is written if and only if the
    change is). Details pass the secret redactor like every log line."""
    conn.execute(
        audit_t.insert().values(
            at=now,
            actor=actor[:200],
            action=action[:50],
            target=target[:200] if target else None,
            detail=redact(detail) if detail else None,
            remote_addr=remote_addr[:64] if remote_addr else None,
        )
    )
