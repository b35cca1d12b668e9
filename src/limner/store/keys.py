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


#: Roles a key may have, least rights first: ``viewer`` reads, explains, annotates and
#: exports; ``tenant`` (untrusted) also deploys and changes its space; ``admin`` is the
#: operator's own.
ROLES = ("viewer", "tenant", "admin")

#: Characters of a token stored unhashed (``keys list`` shows them).
PREFIX_LENGTH = 10

#: Longest key name.
MAX_KEY_NAME = 200

#: ``last_used_at`` is written at most this often per key (seconds), not on every request.
LAST_USED_RESOLUTION = 60.0


@dataclass(frozen=True)
class SpaceRef:
    """The space a request acts in, and the role of the key that acts."""

    id: str
    name: str
    role: str = "tenant"
    #: The key that acts (``None`` for the operator's own tools, such as the CLI) and its name.
    key_id: str | None = None
    key_name: str = ""

    @property
    def is_admin(self) -> bool:
        """Whether the key is the operator's (``admin``)."""
        return self.role == "admin"

    @property
    def can_write(self) -> bool:
        """Whether the key may change its space (deploy, delete, subscribe, settings, upload):
        every role but ``viewer``."""
        return self.role != "viewer"


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


def create_key(db: Database, space_name: str, *, role: str = "tenant", name: str = "") -> str:
    """Create an API key for the space ``space_name`` (created if needed); return the token.

    Args:
        db: the database.
        space_name: the key's space.
        role: ``viewer``, ``tenant`` (untrusted, the default) or ``admin`` (the operator's own).
        name: who holds the key, shown wherever the key acts.
    """
    return create_key_info(db, space_name, role=role, name=name)[0]


def create_key_info(
    db: Database, space_name: str, *, role: str = "tenant", name: str = ""
) -> tuple[str, KeyInfo]:
    """:func:`create_key`, with what may be shown of the new key."""
    if role not in ROLES:
        raise InvalidInputError(f"a key's role is one of {', '.join(ROLES)}, not {role!r}")
    name = check_key_name(name)
    space = ensure_space(db, space_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id(),
        space_id=space.id,
        key_hash=hash_key(token),
        prefix=token[:10],
        role=role,
        name=name,
        created_at=utcnow(),
    )
    with db.session() as s:
        s.add(key)
        info = _info(key, space.name)
    return token, info


def check_key_name(name: str) -> str:
    """A key name, stripped; printable text of at most :data:`MAX_KEY_NAME` characters."""
    name = " ".join(name.split())
    if len(name) > MAX_KEY_NAME:
        raise InvalidInputError(f"a key name has at most {MAX_KEY_NAME} characters")
    if any(not ch.isprintable() for ch in name):
        raise InvalidInputError("a key name must be printable text")
    return name


def space_for_key(db: Database, token: str) -> SpaceRef | None:
    """The space and role of a token, or ``None`` for an unknown or revoked token.

    Marks the key as used (``last_used_at``, at most once a minute).
    """
    with db.session() as s:
        row = s.execute(
            select(Space.id, Space.name, ApiKey.role, ApiKey.id, ApiKey.last_used_at, ApiKey.name)
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
    return SpaceRef(row[0], row[1], row[2] or "tenant", row[3], row[5] or "")


def live_key_space(db: Database, key_id: str, space_id: str | None = None) -> SpaceRef | None:
    """The space and role of the key ``key_id``, or ``None`` when it is revoked or gone.

    Dashboard sessions and one-time login links name the key that opened them and ask this on
    every use, so revoking (or deleting) a key ends them at once. One primary-key lookup, no
    cache. With ``space_id``, a key of another space counts as gone.
    """
    query = (
        select(Space.id, Space.name, ApiKey.role, ApiKey.name)
        .join(ApiKey, ApiKey.space_id == Space.id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    )
    if space_id is not None:
        query = query.where(Space.id == space_id)
    with db.session() as s:
        row = s.execute(query).first()
    return SpaceRef(row[0], row[1], row[2] or "tenant", key_id, row[3] or "") if row else None


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
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _info(key: ApiKey, space: str) -> KeyInfo:
    return KeyInfo(
        key.id,
        key.prefix,
        space,
        key.role or "tenant",
        key.name or "",
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
    """Revoke the key whose id, prefix (as ``keys list`` shows it, or any longer start of the
    token) or whole token is ``prefix_or_id``.

    From then on the key gets 401 over HTTP and ``UNAUTHENTICATED`` over gRPC, cannot log into
    the dashboard, and the dashboard sessions and one-time login links it opened stop working
    (they look the key up on every use: :func:`live_key_space`).

    Revoking a revoked key changes nothing. Raises :class:`NotFoundError` when no key matches
    and :class:`InvalidInputError` when a prefix matches several keys (give the id then).
    """
    text = prefix_or_id.strip()
    with db.session() as s:
        query = select(ApiKey, Space.name).join(Space, ApiKey.space_id == Space.id)
        rows = s.execute(
            query.where(
                or_(ApiKey.id == text, ApiKey.prefix == text, ApiKey.key_hash == hash_key(text))
            )
        ).all()
        if not rows and text.startswith(TOKEN_PREFIX) and len(text) > PREFIX_LENGTH:
            # a longer start of a token (only its first characters are stored unhashed)
            rows = s.execute(query.where(ApiKey.prefix == text[:PREFIX_LENGTH])).all()
        if not rows:
            shown = text[:PREFIX_LENGTH] + "…" if text.startswith(TOKEN_PREFIX) else text
            raise NotFoundError(
                f"no API key has the id, prefix or token {shown!r} (see `limner keys list`)"
            )
        if len(rows) > 1:
            ids = ", ".join(key.id for key, _ in rows)
            raise InvalidInputError(f"the prefix {text!r} matches several keys; give one id: {ids}")
        key, name = rows[0]
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return _info(key, name)
