"""Outbound HTTP to URLs that callers name: a URL policy and a client that checks addresses.

The server calls URLs that tenants give (remote models, external scoring URLs). Such a call must
not reach the server's own network: loopback, private ranges, link-local (cloud metadata at
169.254.169.254), multicast, reserved and unspecified addresses, in any of their IPv6 spellings.

* :class:`UrlPolicy` holds what the operator allows beyond the public internet
  (``LIMNER_ALLOWED_URLS``: URL prefixes such as ``http://127.0.0.1:9000/`` or host patterns such
  as ``models.internal`` and ``*.example.com``). A listed URL is called as it is.
* :func:`guarded_client` is an ``httpx.Client`` whose connect step resolves the host, refuses it
  unless every address is public, and connects to the address it checked, so a DNS answer that
  changes between the check and the connection cannot reach an internal address. It never
  follows redirects and ignores proxy settings from the environment.
* :func:`read_bounded` makes one request and reads its answer under a byte cap and a total
  deadline (httpx's timeouts bound each read, not the call: a server that drips a byte at a
  time would hold a call forever). On a guarded client every socket operation (connect, TLS,
  each write and read) ends by the deadline; on another client the deadline is checked
  between the chunks of the body.

The CLI, which runs as the user's own process, does not use this module: it loads what its user
names, loopback URLs included.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from limner.errors import ForbiddenError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: NAT64 (RFC 6052) prefixes embed an IPv4 address in their last 32 bits.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlNotAllowedError(ForbiddenError):
    """A URL whose host is not public and that the operator did not allow."""


class AnswerRefusedError(Exception):
    """An answer :func:`read_bounded` will not read (the request was abandoned)."""


class AnswerTooLargeError(AnswerRefusedError):
    """An answer over the byte cap of its request."""


class DeadlineExceededError(httpx.TimeoutException):
    """A request that ran past its total deadline (the request was abandoned)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64) or int(ip) >> 32 == 0:  # NAT64, IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public_address(address: str | Address) -> bool:
    """Whether ``address`` is a public unicast address (what a tenant's URL may reach).

    Loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10), link-local
    (169.254/16, fe80::/10), multicast, reserved, unspecified (0.0.0.0, ::) and documentation
    ranges are not; IPv6 forms that embed an IPv4 address are judged by that address too.
    """
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    bad = (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
    )
    if bad:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(is_public_address(v4) for v4 in _embedded_ipv4(ip))
    return True


@dataclass(frozen=True)
class UrlPolicy:
    """URLs the operator allows whatever their address (``LIMNER_ALLOWED_URLS``)."""

    prefixes: tuple[str, ...] = ()
    host_patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> UrlPolicy:
        """Read a comma-separated list: entries with a scheme are URL prefixes, others hosts."""
        items = text.split(",") if isinstance(text, str) else list(text)
        prefixes, hosts = [], []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if "://" in item:
                prefixes.append(item)
            else:
                hosts.append(item.lower())
        return cls(tuple(prefixes), tuple(hosts))

    def lists(self, url: str) -> bool:
        """Whether the operator listed ``url``: its scheme, host and port equal a prefix's and
        its path starts with the prefix's path, or its host matches a host pattern.

        Paths are compared as a server reads them: encoded dots decoded and dot segments
        removed, so ``/v2/%2e%2e/admin`` is ``/admin``; a path that hides a separator
        (``%2f``, ``%5c``, ``%25``, a backslash) matches no prefix."""
        origin, path = _split(url)
        for prefix in self.prefixes:
            p_origin, p_path = _split(prefix)
            if origin != p_origin or path is None or p_path is None:
                continue
            if path.startswith(p_path):
                return True
        host = (urlsplit(url).hostname or "").lower()
        return bool(host) and any(fnmatch.fnmatchcase(host, p) for p in self.host_patterns)

    def check(self, url: str) -> None:
        """Refuse a URL before any connection: wrong scheme, credentials in it, or a literal
        address that is not public and not listed. Hostnames are checked when connecting."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UrlNotAllowedError(f"{url!r}: only http:// and https:// URLs with a host")
        if parts.username or parts.password:
            raise UrlNotAllowedError("a URL may not carry credentials; send them as headers")
        if self.lists(url):
            return
        try:
            ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if not is_public_address(parts.hostname):
            raise UrlNotAllowedError(refusal(parts.hostname))


def refusal(host: str) -> str:
    """The one message for a refused host: the same whether it resolves, listens or not."""
    return (
        f"the URL's host {host!r} is not allowed: it does not resolve to public addresses only "
        "(an operator can allow it in LIMNER_ALLOWED_URLS)"
    )


def _split(url: str) -> tuple[tuple[str, str, int | None], str | None]:
    """``((scheme, host, port), path)`` of a URL, the port filled in from the scheme and the
    path normalised (see :func:`_normal_path`; None when it hides a separator)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return (scheme, (parts.hostname or "").lower(), port), _normal_path(parts.path or "/")


#: Percent-encodings that hide a path separator (``/``, ``\``) or a second round of encoding.
_HIDDEN_SEPARATOR = re.compile(r"%(2f|5c|25)", re.IGNORECASE)
_ENCODED_DOT = re.compile("%2e", re.IGNORECASE)


def _normal_path(path: str) -> str | None:
    """The path a server would serve: ``%2e`` decoded to ``.``, then the dot segments removed
    (``/v2/%2e%2e/admin`` is ``/admin``; ``..;x`` counts as ``..``, as some servers read it).

    None where the path hides a separator (``%2f``, ``%5c``, a backslash) or encodes a ``%``
    (``%25``, which a server that decodes twice reads as another escape): such a path matches
    no prefix.
    """
    if "\\" in path or _HIDDEN_SEPARATOR.search(path):
        return None
    kept: list[str] = []
    segments = _ENCODED_DOT.sub(".", path).split("/")[1:]
    for i, segment in enumerate(segments):
        dots = segment.split(";", 1)[0]
        if dots in (".", ".."):
            if dots == ".." and kept:
                kept.pop()
            if i == len(segments) - 1:
                kept.append("")  # "/a/b/.." is "/a/"
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


#: When the request being made in this thread must be done (``time.monotonic()``), or None.
_DEADLINE: ContextVar[float | None] = ContextVar("limner_net_deadline", default=None)

#: Bytes written per socket operation, each under the time left before the deadline.
_WRITE_PIECE = 64 * 1024


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Every socket operation of a guarded client in this block (and this thread) ends within
    ``seconds`` from now: connecting, TLS, writing the request and reading the answer.

    Yields the deadline (``time.monotonic()`` seconds). An operation the deadline cuts short
    raises :class:`DeadlineExceededError`. Nested blocks keep the earlier deadline.
    """
    outer = _DEADLINE.get()
    end = time.monotonic() + seconds
    if outer is not None:
        end = min(end, outer)
    token = _DEADLINE.set(end)
    try:
        yield end
    finally:
        _DEADLINE.reset(token)


def _time_left(timeout: float | None) -> tuple[float | None, bool]:
    """``(timeout, cut)``: the operation's timeout, at most the time left before the deadline
    (``cut`` when the deadline set it); :class:`DeadlineExceededError` once none is left."""
    end = _DEADLINE.get()
    if end is None:
        return timeout, False
    left = end - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError("the request ran past its total time limit")
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline of :func:`deadline`."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left, cut = _time_left(timeout)
        try:
            return self._inner.read(max_bytes, left)
        except httpcore.ReadTimeout as exc:
            if cut:
                raise DeadlineExceededError("the request ran past its total time limit") from exc
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_PIECE):
            left, cut = _time_left(timeout)
            try:
                self._inner.write(bytes(view[start : start + _WRITE_PIECE]), left)
            except httpcore.WriteTimeout as exc:
                if cut:
                    raise DeadlineExceededError(
                        "the request ran past its total time limit"
                    ) from exc
                raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left, _ = _time_left(timeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, its connections held to the deadline of :func:`deadline`."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left, _ = _time_left(timeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UrlNotAllowedError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PublicOnlyBackend(_DeadlineBackend):
    """Resolves the host, refuses unless every address is public, connects to those addresses
    (each connection held to the deadline of :func:`deadline`)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UrlNotAllowedError(refusal(host)) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise UrlNotAllowedError(refusal(host))
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context for every guarded client (building one reads the CA bundle)."""
    return httpx.create_ssl_context(trust_env=False)


class _BackendTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool that connects through ``backend``.

    ``HTTPTransport`` takes no network backend, so its pool is replaced right after it is built
    (same TLS context and defaults; no proxy, since a proxy would connect on our behalf).
    """

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        super().__init__(verify=_tls(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class GuardedTransport(httpx.BaseTransport):
    """Listed URLs go out as they are; every other URL only to public addresses."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._listed = _BackendTransport(_DeadlineBackend())
        self._public = _BackendTransport(_PublicOnlyBackend())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.policy.check(url)
        transport = self._listed if self.policy.lists(url) else self._public
        return transport.handle_request(request)

    def close(self) -> None:
        self._listed.close()
        self._public.close()


def guarded_client(
    policy: UrlPolicy, *, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> httpx.Client:
    """An ``httpx.Client`` for URLs a tenant gave: public addresses or listed URLs only, no
    redirects followed, no proxies from the environment."""
    return httpx.Client(
        transport=GuardedTransport(policy),
        headers=headers or {},
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


#: Content codings an answer may come in: what :func:`read_bounded` asks for. Others (brotli,
#: zstd) are refused unread: one network chunk of them can expand to gigabytes before the byte
#: cap sees it, where a deflate chunk expands at most about a thousandfold.
_CODINGS = {"identity", "gzip", "x-gzip", "deflate"}
#: Bytes of an error answer (a status other than 2xx) kept; the rest is not read.
ERROR_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """An answer read whole by :func:`read_bounded`: the part of ``httpx.Response`` callers
    use (status, headers, body)."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        return json.loads(self.content)


def read_bounded(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    seconds: float,
    max_bytes: int,
    **kwargs: Any,
) -> Answer:
    """Make one request and read its answer whole, within ``seconds`` and ``max_bytes``.

    The body streams in with a running count and is never held beyond ``max_bytes``: a 2xx
    answer that declares or sends more raises :class:`AnswerTooLargeError`; an error answer is
    cut to :data:`ERROR_ANSWER_BYTES` (it only makes a message). ``seconds`` bound the whole
    request, connecting included (see :func:`deadline`); past them it is abandoned with
    :class:`DeadlineExceededError`. Other failures raise as ``client.stream`` raises them.
    ``kwargs`` go to ``client.stream`` (``content``, ``headers``, ...).
    """
    headers = httpx.Headers(kwargs.pop("headers", None))
    headers.setdefault("Accept-Encoding", "gzip, deflate")
    per_read = min(seconds, _client_timeout(client))
    with deadline(seconds) as end:
        try:
            with client.stream(method, url, headers=headers, timeout=per_read, **kwargs) as resp:
                return _read_body(resp, end, max_bytes)
        except httpx.TimeoutException as exc:
            if isinstance(exc, DeadlineExceededError) or time.monotonic() >= end:
                raise DeadlineExceededError(f"no whole answer within {seconds:g} s") from exc
            raise


def _client_timeout(client: httpx.Client) -> float:
    """The longest of the client's timeouts (seconds; infinite when it has none)."""
    values = [client.timeout.connect, client.timeout.read, client.timeout.write]
    return max((v for v in values if v is not None), default=float("inf"))


def _read_body(resp: httpx.Response, end: float, max_bytes: int) -> Answer:
    """The body of ``resp`` under the byte cap and the deadline (see :func:`read_bounded`)."""
    success = resp.is_success
    limit = max_bytes if success else min(max_bytes, ERROR_ANSWER_BYTES)
    declared = resp.headers.get("content-length", "")
    if success and declared.isdigit() and int(declared) > limit:
        raise AnswerTooLargeError(f"the answer is over {limit} bytes")
    codings = {c.strip().lower() for c in resp.headers.get("content-encoding", "").split(",")}
    if not codings - {""} <= _CODINGS:
        if success:
            raise AnswerRefusedError("the answer is compressed in a coding limner did not ask for")
        return Answer(resp.status_code, resp.headers, b"")  # an error: its status says enough
    body = bytearray()
    for chunk in resp.iter_bytes():
        if time.monotonic() >= end:
            raise DeadlineExceededError("the request ran past its total time limit")
        if len(body) + len(chunk) > limit:
            if success:
                raise AnswerTooLargeError(f"the answer is over {limit} bytes")
            body += chunk[: limit - len(body)]
            break
        body += chunk
    return Answer(resp.status_code, resp.headers, bytes(body))
