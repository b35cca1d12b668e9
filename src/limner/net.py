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

The CLI, which runs as the user's own process, does not use this module: it loads what its user
names, loopback URLs included.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpcore
import httpx

from limner.errors import ForbiddenError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: NAT64 (RFC 6052) prefixes embed an IPv4 address in their last 32 bits.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlNotAllowedError(ForbiddenError):
    """A URL whose host is not public and that the operator did not allow."""


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
        its path starts with the prefix's path, or its host matches a host pattern."""
        origin, path = _split(url)
        for prefix in self.prefixes:
            p_origin, p_path = _split(prefix)
            if origin == p_origin and path.startswith(p_path):
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


def _split(url: str) -> tuple[tuple[str, str, int | None], str]:
    """``((scheme, host, port), path)`` of a URL, the port filled in from the scheme."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return (scheme, (parts.hostname or "").lower(), port), parts.path or "/"


class _PublicOnlyBackend(httpcore.NetworkBackend):
    """Resolves the host, refuses unless every address is public, connects to those addresses."""

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
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UrlNotAllowedError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context for every guarded client (building one reads the CA bundle)."""
    return httpx.create_ssl_context(trust_env=False)


class _PublicTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose connect step is :class:`_PublicOnlyBackend`.

    ``HTTPTransport`` takes no network backend, so its pool is replaced right after it is built
    (same TLS context and defaults; no proxy, since a proxy would connect on our behalf).
    """

    def __init__(self) -> None:
        super().__init__(verify=_tls(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_PublicOnlyBackend(),
        )


class GuardedTransport(httpx.BaseTransport):
    """Listed URLs go out as they are; every other URL only to public addresses."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._listed = httpx.HTTPTransport(verify=_tls(), trust_env=False)
        self._public = _PublicTransport()

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
