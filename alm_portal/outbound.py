"""The one outbound-URL policy: environment URLs, token authorities and (later) webhooks.

Two halves, against server-side request forgery through environment URLs:

1. `check_url()` decides whether a URL may ever be called, from its text alone: https only, port
   443, no user info, no query or fragment, no IP literal, ASCII host names only (no IDN look-alikes,
   no punycode), and a host that matches the purpose's allow-list: `<org>.crm[N].dynamics.com` and
   the configured sovereign suffixes for Dataverse, the Microsoft sign-in hosts for authorities, any
   public DNS name for webhooks. The emulator at `https://127.0.0.1:PORT/<org>` passes only while
   ALM_ALLOW_LOOPBACK is on; only such loopback URLs may carry a path (an authority carries its
   tenant as its single path segment).
2. `PinnedHTTPAdapter` (a requests transport adapter) re-checks at connect time: it resolves the
   host through `resolve()` (our DNS boundary), refuses the connection unless every address is
   public (loopback only while ALM_ALLOW_LOOPBACK is on), and then connects the socket to one of
   the addresses it checked. TLS still uses the host name for SNI and certificate verification,
   and the Host header stays the name, so DNS rebinding between check and connect is impossible.

Redirects are never followed: sessions made here (and the Dataverse client's) send every request
with allow_redirects=False.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from alm_portal.dataverse.auth import VerifiedSession
from alm_portal.errors import ValidationFailed

__all__ = [
    "DEFAULT_AUTHORITY_HOSTS",
    "DEFAULT_DATAVERSE_SUFFIXES",
    "AddressRefused",
    "CheckedUrl",
    "OutboundRefused",
    "PinnedHTTPAdapter",
    "Purpose",
    "address_refusal",
    "check_url",
    "default_authority",
    "outbound_session",
    "pin_session",
    "resolve",
    "resolve_checked",
]

# Public cloud (crm, crm2 … crm21 are regions), US Government GCC High and DoD, China (21Vianet).
# GCC lives under crm9.dynamics.com and is covered by the crm[N] rule.
DEFAULT_DATAVERSE_SUFFIXES: tuple[str, ...] = (
    ".crm.dynamics.com",
    ".crm.microsoftdynamics.us",
    ".crm.appsplatform.us",
    ".crm.dynamics.cn",
)
DEFAULT_AUTHORITY_HOSTS: tuple[str, ...] = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Addresses that are "global" by the IANA tables but are well-known cloud control planes.
_ALWAYS_REFUSED = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # instance metadata (AWS, Azure IMDS, GCP)
        ipaddress.ip_address("168.63.129.16"),  # Azure WireServer
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")
_FORBIDDEN_TENANTS = frozenset({"common", "organizations", "consumers"})


class Purpose(StrEnum):
    DATAVERSE = "dataverse"
    AUTHORITY = "authority"
    WEBHOOK = "webhook"
    GIT = "git"  # a Git host: any public DNS name, as for webhooks


class OutboundRefused(ValidationFailed):
    """The URL or address may not be called. `reason` is a short stable word for tests and logs."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


class AddressRefused(NewConnectionError):
    """Raised inside a connection attempt: the name resolved to an address the policy refuses.

    A subclass of urllib3's NewConnectionError, so requests (and the Dataverse client) treat it as
    a connection that never existed: nothing was sent.
    """


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed check_url(): normalised (lower-case host, no default port, no trailing slash)."""

    url: str
    host: str
    port: int
    path: str
    is_loopback: bool


# --- settings ---------------------------------------------------------------------------------------


def loopback_allowed() -> bool:
    return bool(settings.ALM_ALLOW_LOOPBACK)


def dataverse_suffixes() -> tuple[str, ...]:
    return (*DEFAULT_DATAVERSE_SUFFIXES, *settings.ALM_DATAVERSE_EXTRA_SUFFIXES)


def authority_hosts() -> tuple[str, ...]:
    return (*DEFAULT_AUTHORITY_HOSTS, *settings.ALM_AUTHORITY_EXTRA_HOSTS)


def _suffix_pattern(suffix: str) -> re.Pattern[str]:
    """`.crm.dynamics.com` → `<org>.crm[N].dynamics.com` or `<org>.api.crm[N].dynamics.com`."""
    labels = suffix.strip(".").lower().split(".")
    if not labels or not all(re.fullmatch(_LABEL, label) for label in labels):
        raise ValueError(f"not a DNS suffix: {suffix!r}")
    if labels[0] == "crm":
        head = r"crm[0-9]{0,2}"
        rest = labels[1:]
    else:
        head = re.escape(labels[0])
        rest = labels[1:]
    tail = "".join(r"\." + re.escape(label) for label in rest)
    return re.compile(rf"^{_LABEL}\.(?:api\.)?{head}{tail}$")


def default_authority(tenant_id: str) -> str:
    """`https://login.microsoftonline.com/<tenant>`: the public cloud's authority for a tenant."""
    return f"https://{DEFAULT_AUTHORITY_HOSTS[0]}/{tenant_id.strip().strip('/')}"


# --- static check ---------------------------------------------------------------------------------------


def _refuse(message: str, reason: str) -> OutboundRefused:
    return OutboundRefused(message, reason=reason)


def _is_numeric_host(host: str) -> bool:
    """True for anything the C resolver would read as an IPv4 address: 127.1, 2130706433, 0x7f.1."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def check_url(url: str, *, purpose: Purpose | str, allow_loopback: bool | None = None) -> CheckedUrl:
    """Return the normalised URL if the policy allows calling it for `purpose`, else raise OutboundRefused.

    Checks only the text; addresses are checked when connecting (PinnedHTTPAdapter).
    """
    purpose = Purpose(purpose)
    loopback_ok = loopback_allowed() if allow_loopback is None else allow_loopback
    if not isinstance(url, str) or not url:
        raise _refuse("A URL is required.", "empty")
    if len(url) > 2000:
        raise _refuse("The URL is too long.", "too_long")
    if not url.isascii():
        raise _refuse("The URL must be plain ASCII (international look-alike names are refused).", "non_ascii")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise _refuse("The URL contains spaces, control characters or backslashes.", "bad_characters")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise _refuse("Only https URLs are allowed.", "scheme")
    netloc = parts.netloc
    if "@" in netloc:
        raise _refuse("The URL must not contain user information (user:password@).", "userinfo")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise _refuse("The URL must not have a query or a fragment.", "query")
    try:
        port = parts.port
    except ValueError:
        raise _refuse("The URL's port is not valid.", "port") from None
    if netloc.endswith(":"):
        raise _refuse("The URL's port is not valid.", "port")
    host = (parts.hostname or "").lower()
    if not host:
        raise _refuse("The URL has no host.", "host")

    if host in LOOPBACK_HOSTS:
        if not loopback_ok:
            raise _refuse("Loopback addresses are not allowed here.", "loopback")
        if port is None:
            port = 443
        path = parts.path.rstrip("/")
        if purpose is Purpose.AUTHORITY:
            _check_tenant_path(path)
        shown = f"[{host}]" if ":" in host else host
        netloc_out = shown if port == 443 else f"{shown}:{port}"
        return CheckedUrl(url=f"https://{netloc_out}{path}", host=host, port=port, path=path, is_loopback=True)

    if netloc.startswith("[") or _is_numeric_host(host):
        raise _refuse("IP addresses are not allowed; use the service's DNS name.", "ip_literal")
    if port is not None and port != 443:
        raise _refuse("Only the standard https port 443 is allowed.", "port")
    if host.endswith(".") or not _HOST_CHARS.match(host) or ".." in host:
        raise _refuse("The host name is not valid.", "host")
    labels = host.split(".")
    if any(not re.fullmatch(_LABEL, label) for label in labels):
        raise _refuse("The host name is not valid.", "host")
    if any(label.startswith("xn--") for label in labels):
        raise _refuse("International (punycode) host names are refused.", "idn")

    path = parts.path.rstrip("/")
    if purpose is Purpose.DATAVERSE:
        if not any(_suffix_pattern(suffix).match(host) for suffix in dataverse_suffixes()):
            raise _refuse(
                "The host is not a Dataverse environment (expected <org>.crm<N>.dynamics.com or a configured "
                "sovereign-cloud domain).",
                "host_not_allowed",
            )
        if path:
            raise _refuse("A Dataverse environment URL has no path.", "path")
    elif purpose is Purpose.AUTHORITY:
        if host not in {h.lower() for h in authority_hosts()}:
            raise _refuse("The authority must be a Microsoft sign-in host.", "host_not_allowed")
        _check_tenant_path(path)
    return CheckedUrl(url=f"https://{host}{path}", host=host, port=443, path=path, is_loopback=False)


def _check_tenant_path(path: str) -> None:
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) != 1 or not _TENANT.match(segments[0]):
        raise _refuse("The authority must be https://<host>/<tenant id or domain>.", "path")
    if segments[0].lower() in _FORBIDDEN_TENANTS:
        raise _refuse("Client credentials need a specific tenant, not common/organizations/consumers.", "path")


# --- addresses -------------------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str, *, allow_loopback: bool | None = None) -> str | None:
    """Why the policy refuses to connect to `address`, or None when it may be used."""
    loopback_ok = loopback_allowed() if allow_loopback is None else allow_loopback
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        if candidate in _ALWAYS_REFUSED:
            return f"{candidate} is a cloud metadata address"
        if candidate.is_loopback:
            if not loopback_ok:
                return f"{candidate} is a loopback address"
            continue
        if (
            candidate.is_private
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or not candidate.is_global
        ):
            return f"{candidate} is not a public address"
    return None


AddrInfo = tuple[int, int, int, str, Any]


def resolve(host: str, port: int) -> list[AddrInfo]:
    """The DNS boundary: every TCP address of `host` (tests replace socket.getaddrinfo to lie)."""
    return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))


def resolve_checked(host: str, port: int, *, allow_loopback: bool | None = None) -> list[AddrInfo]:
    """Resolve `host` and return its addresses if every one is allowed; one bad answer refuses all,
    so a resolver that mixes a public and a private address cannot steer us to the private one."""
    infos = resolve(host, port)
    if not infos:
        raise _refuse(f"{host} has no address.", "no_address")
    for info in infos:
        problem = address_refusal(str(info[4][0]), allow_loopback=allow_loopback)
        if problem:
            raise _refuse(f"{host} resolves to a refused address: {problem}.", "address")
    return infos


# --- pinned connections -----------------------------------------------------------------------------


class _PinnedHTTPSConnection(HTTPSConnection):
    """Connects the socket to an address checked by resolve_checked(); TLS and Host keep the name."""

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        try:
            infos = resolve_checked(host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except OutboundRefused as exc:
            raise AddressRefused(self, f"refused by the outbound policy: {exc.message}") from exc
        timeout = None if self.timeout is _DEFAULT_TIMEOUT else self.timeout
        last: OSError | None = None
        for family, socktype, proto, _name, sockaddr in infos:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                last = exc
                if sock is not None:
                    sock.close()
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(last, TimeoutError | socket.timeout):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={timeout})")
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}") from last


class _PlainHTTPRefused(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        raise AddressRefused(self, "refused by the outbound policy: only https is allowed")


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PlainHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PlainHTTPRefused


class PinnedHTTPAdapter(HTTPAdapter):
    """A requests transport adapter whose connections go only to addresses the policy allows.

    Proxies are refused: through a proxy we could not know which address is reached.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PlainHTTPPool, "https": _PinnedHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("Outbound calls do not go through proxies.", reason="proxy")


def pin_session(session: requests.Session) -> requests.Session:
    """Mount the pinned adapter on `session` for both schemes and return it."""
    adapter = PinnedHTTPAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def outbound_session(
    *, ca_bundle: str | None = None, timeout: tuple[float, float] = (5.0, 30.0), user_agent: str = "alm-portal"
) -> requests.Session:
    """A session for calls outside the Dataverse client (webhooks): TLS verified, no environment
    proxies or CA overrides, no redirects, explicit timeouts, addresses pinned."""
    return pin_session(VerifiedSession(ca_bundle=ca_bundle, timeout=timeout, user_agent=user_agent))
