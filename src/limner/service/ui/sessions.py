"""Dashboard sessions: signed HttpOnly cookies, CSRF tokens and one-time login links.

A session is a cookie ``limner_session`` holding ``payload.signature``: the payload names the
space, the API key that opened the session, an expiry and a random nonce; the signature is an
HMAC-SHA256 under a secret kept in the data directory (``ui-session.key``, created on first
use, readable by the service's user only). A session ends when it expires, when its user logs
out (the nonce is refused from then on) or when its API key is revoked or deleted: every check
of a session looks its key up (one primary-key lookup, no cache), so ``limner keys revoke``
ends the key's sessions at once, in every process that shares the database. A revoked key
cannot log in, and a one-time login link made with it cannot be redeemed.

POST forms carry a CSRF token: for a session, an HMAC of the session's nonce; on the login
form, a random value that must equal the ``limner_login_csrf`` cookie (double submit). Both
cookies are ``SameSite=Strict`` as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from limner.store import Database, SpaceRef
from limner.store.keys import hash_key, live_key_space
from limner.store.tables import ApiKey, Space

SESSION_COOKIE = "limner_session"
LOGIN_CSRF_COOKIE = "limner_login_csrf"
#: How long a dashboard session lasts, in seconds.
SESSION_SECONDS = 8 * 3600
#: How long a one-time login link can be used, in seconds.
LINK_SECONDS = 15 * 60
SECRET_FILE = "ui-session.key"


@dataclass(frozen=True)
class UiSession:
    """A logged-in dashboard user: the space, the key that opened the session, the nonce."""

    space: SpaceRef
    key_id: str
    nonce: str
    expires: int


@dataclass
class _Link:
    space_id: str
    key_id: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: Path) -> bytes:
    """The signing secret in ``data_dir``, created (mode 0600) when it does not exist."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        raise RuntimeError(f"{path} is damaged; delete it to sign everyone out") from None
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


@dataclass
class UiAuth:
    """Signs and checks session cookies; keeps one-time links and logged-out nonces."""

    db: Database
    secret: bytes
    _links: dict[str, _Link] = field(default_factory=dict)
    _ended: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- keys and sessions ------------------------------------------------------------------

    def key_identity(self, token: str) -> tuple[SpaceRef, str] | None:
        """The space and key id of an API key, or ``None`` for an unknown or revoked key."""
        with self.db.session() as s:
            row = s.execute(
                select(Space.id, Space.name, ApiKey.id, ApiKey.role, ApiKey.name)
                .join(ApiKey, ApiKey.space_id == Space.id)
                .where(ApiKey.key_hash == hash_key(token.strip()), ApiKey.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        return SpaceRef(row[0], row[1], row[3] or "tenant", row[2], row[4] or ""), row[2]

    def issue(self, space_id: str, key_id: str) -> str:
        """A new session cookie value for ``key_id`` in ``space_id``."""
        payload = {
            "s": space_id,
            "k": key_id,
            "e": int(time.time()) + SESSION_SECONDS,
            "n": secrets.token_hex(16),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def check(self, cookie: str | None) -> UiSession | None:
        """The session of a cookie value, or ``None`` when it is missing, forged or over.

        A session is over when it expired, was logged out, or its key was revoked or deleted
        (looked up on every call, so a revocation takes effect on the next request).
        """
        if not cookie or cookie.count(".") != 1:
            return None
        body, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            space_id, key_id = str(payload["s"]), str(payload["k"])
            expires, nonce = int(payload["e"]), str(payload["n"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < time.time():
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        space = live_key_space(self.db, key_id, space_id)
        if space is None:  # the key was revoked or deleted: its sessions end with it
            return None
        return UiSession(space, key_id, nonce, expires)

    def end(self, session: UiSession) -> None:
        """Log a session out: its cookie is refused from now on."""
        now = time.time()
        with self._lock:
            self._ended = {n: e for n, e in self._ended.items() if e > now}
            self._ended[session.nonce] = session.expires

    # --- CSRF ---------------------------------------------------------------------------------

    def csrf_token(self, session: UiSession) -> str:
        """The CSRF token of a session's forms."""
        return self._sign(f"csrf:{session.nonce}")[:32]

    def csrf_ok(self, session: UiSession, token: str | None) -> bool:
        """Whether a form's token belongs to the session."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))

    # --- one-time links -------------------------------------------------------------------

    def create_link(self, space_id: str, key_id: str) -> str:
        """A one-time login token, valid for :data:`LINK_SECONDS`."""
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._links = {t: v for t, v in self._links.items() if v.expires > now}
            self._links[token] = _Link(space_id, key_id, now + LINK_SECONDS)
        return token

    def redeem_link(self, token: str) -> str | None:
        """A session cookie value for a one-time token (which is used up), or ``None``.

        ``None`` too when the key that made the link has been revoked or deleted since.
        """
        with self._lock:
            link = self._links.pop(token, None)
        if link is None or link.expires < time.monotonic():
            return None
        if live_key_space(self.db, link.key_id, link.space_id) is None:
            return None
        return self.issue(link.space_id, link.key_id)

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self.secret, text.encode(), hashlib.sha256).digest())
