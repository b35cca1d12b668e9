"""API keys: a random token shown once, stored as its SHA-256, belonging to one space."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from limner.errors import InvalidInputError
from limner.store.db import Database
from limner.store.tables import ApiKey, Space

#: Every token starts with this, so a leaked key is easy to recognise.
TOKEN_PREFIX = "lmn_"


@dataclass(frozen=True)
class SpaceRef:
    """The space a request acts in."""

    id: str
    name: str


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


def create_key(db: Database, space_name: str) -> str:
    """Create an API key for the space ``space_name`` (created if needed); return the token."""
    space = ensure_space(db, space_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(ApiKey(id=new_id(), space_id=space.id, key_hash=hash_key(token), prefix=token[:10]))
    return token


def space_for_key(db: Database, token: str) -> SpaceRef | None:
    """The space a token belongs to, or ``None`` for an unknown token."""
    with db.session() as s:
        row = s.execute(
            select(Space.id, Space.name)
            .join(ApiKey, ApiKey.space_id == Space.id)
            .where(ApiKey.key_hash == hash_key(token))
        ).first()
    return SpaceRef(row[0], row[1]) if row else None


def count_keys(db: Database) -> int:
    """How many API keys exist."""
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ApiKey)) or 0)
