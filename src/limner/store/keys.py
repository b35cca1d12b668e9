"""API keys: a random token shown once, stored as its SHA-256, belonging to one space."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from limner.errors import InvalidInputError, NotFoundError
from limner.store.db import Database
from limner.store.tables import ApiKey, Space, utcnow

#: Every token starts with this, so a leaked key is easy to recognise.
TOKEN_PREFIX = "lmn_"


#: Roles a key may have: ``tenant`` keys are untrusted, ``admin`` is the operator's own.
ROLES = ("tenant", "admin")

#: ``last_used_at`` is written at most this often per key (seconds), not on every request.
LAST_USED_RESOLUTION = 60.0


@dataclass(frozen=True)
class SpaceRef:
    """The space a request acts in, and the role of the key that acts."""

    id: str
    name: str
    role: str = "tenant"

    @property
    def is_admin(self) -> bool:
        """Whether the key is the operator's (``admin``)."""
        return self.role == "admin"


def hash_key(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


def ensure_space(db: Database, name: str) -> SpaceRef:
    """The space called ``name``, created when it does not exist."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInputError("a space name must have 1 to 200 characters")
    for _ in range(2):
        with db.session() as s:
            space = s.scalar(select(Space).where(Space.name == name))
            if space is not None:
                return SpaceRef(space.id, space.name)
        try:
            with db.session() as s:
                space = Space(id=new_id(), name=name)
                s.add(space)
            return SpaceRef(space.id, space.name)
        except IntegrityError:  # created by a concurrent caller: read it back
            continue
    raise InvalidInputError(f"space {name!r} could not be created")


def create_key(db: Database, space_name: str, *, role: str = "tenant") -> str:
    """Create an API key for the space ``space_name`` (created if needed); return the token.

    Args:
        db: the database.
        space_name: the key's space.
        role: ``tenant`` (untrusted, the default) or ``admin`` (the operator's own).
    """
    if role not in ROLES:
        raise InvalidInputError(f"a key's role is tenant or admin, not {role!r}")
    space = ensure_space(db, space_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(
            ApiKey(
                id=new_id(),
                space_id=space.id,
                key_hash=hash_key(token),
                prefix=token[:10],
                role=role,
            )
        )
    return token


def space_for_key(db: Database, token: str) -> SpaceRef | None:
    """The space and role of a token, or ``None`` for an unknown or revoked token.

    Marks the key as used (``last_used_at``, at most once a minute).
    """
    with db.session() as s:
        row = s.execute(
            select(Space.id, Space.name, ApiKey.role, ApiKey.id, ApiKey.last_used_at)
            .join(ApiKey, ApiKey.space_id == Space.id)
            .where(ApiKey.key_hash == hash_key(token), ApiKey.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    now = utcnow()
    last = row[4]
    if last is not None and last.tzinfo is None:  # SQLite hands back naive UTC times
        last = last.replace(tzinfo=UTC)
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION:
        with db.session() as s:
            s.execute(update(ApiKey).where(ApiKey.id == row[3]).values(last_used_at=now))
    return SpaceRef(row[0], row[1], row[2] or "tenant")


def live_key_space(db: Database, key_id: str, space_id: str | None = None) -> SpaceRef | None:
    """The space and role of the key ``key_id``, or ``None`` when it is revoked or gone.

    Dashboard sessions and one-time login links name the key that opened them and ask this on
    every use, so revoking (or deleting) a key ends them at once. One primary-key lookup, no
    cache. With ``space_id``, a key of another space counts as gone.
    """
    query = (
        select(Space.id, Space.name, ApiKey.role)
        .join(ApiKey, ApiKey.space_id == Space.id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    )
    if space_id is not None:
        query = query.where(Space.id == space_id)
    with db.session() as s:
        row = s.execute(query).first()
    return SpaceRef(row[0], row[1], row[2] or "tenant") if row else None


def count_keys(db: Database) -> int:
    """How many API keys exist."""
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ApiKey)) or 0)


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: never its token or hash."""

    id: str
    prefix: str
    space: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _info(key: ApiKey, space: str) -> KeyInfo:
    return KeyInfo(
        key.id,
        key.prefix,
        space,
        key.role or "tenant",
        key.created_at,
        key.last_used_at,
        key.revoked_at,
    )


def list_keys(db: Database) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    with db.session() as s:
        rows = s.execute(
            select(ApiKey, Space.name)
            .join(Space, ApiKey.space_id == Space.id)
            .order_by(ApiKey.created_at, ApiKey.id)
        ).all()
        return [_info(key, name) for key, name in rows]


def revoke_key(db: Database, prefix_or_id: str) -> KeyInfo:
    """Revoke the key whose id or prefix (as ``keys list`` shows it) is ``prefix_or_id``.

    From then on the key gets 401 over HTTP and ``UNAUTHENTICATED`` over gRPC, cannot log into
    the dashboard, and the dashboard sessions and one-time login links it opened stop working
    (they look the key up on every use: :func:`live_key_space`).

    Revoking a revoked key changes nothing. Raises :class:`NotFoundError` when no key matches
    and :class:`InvalidInputError` when a prefix matches several keys (give the id then).
    """
    text = prefix_or_id.strip()
    with db.session() as s:
        rows = s.execute(
            select(ApiKey, Space.name)
            .join(Space, ApiKey.space_id == Space.id)
            .where(or_(ApiKey.id == text, ApiKey.prefix == text))
        ).all()
        if not rows:
            raise NotFoundError(
                f"no API key has the id or prefix {text!r} (see `limner keys list`)"
            )
        if len(rows) > 1:
            ids = ", ".join(key.id for key, _ in rows)
            raise InvalidInputError(f"the prefix {text!r} matches several keys; give one id: {ids}")
        key, name = rows[0]
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return _info(key, name)
