"""Tokens for Dataverse: MSAL client credentials, one application object per credential per process.

docs/dataverse.md §13. Decisions:

* One ``msal.ConfidentialClientApplication`` per (authority, client id, SHA-256 of the credential, TLS trust)
  per process, kept in a module-level registry behind a lock, so msal's in-memory token cache is shared by
  every client of that credential, and a rotated secret (different hash) gets a fresh application.
  The TLS trust (CA bundle, proxies) is part of the key because msal keeps the HTTP client it was built with.
* Authority per environment: ``https://login.microsoftonline.com/<tenant>`` by default, sovereign clouds
  through :func:`authority_url`, or any https authority (the emulator). ``instance_discovery=False`` for
  hosts that are not Microsoft's (docs/dataverse.md §13.2 point 2).
* TLS verification is always on. requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override
  ``Session.verify`` (docs/dataverse.md §13.2 point 7), so :class:`VerifiedSession` ignores the environment
  (``trust_env=False``) and passes ``verify=<bundle>`` on every request; msal gets one injected as its
  ``http_client``. ``ca_bundle=None`` means certifi's bundle, explicitly.
* A 401 from Dataverse: :meth:`MsalTokenProvider.invalidate_token` removes that access token from msal's
  cache so the next ``acquire_token_for_client`` goes to the authority (msal refuses ``force_refresh`` for
  client credentials, docs/dataverse.md §13.1).
* Token failures become :class:`~alm_portal.dataverse.errors.TokenError` naming the AADSTS code.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

import certifi
import msal
import requests

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.errors import AuthorityUnavailable, TlsError, TokenError, network_reason

__all__ = [
    "ClientCertificate",
    "ClientCredentials",
    "Cloud",
    "MsalTokenProvider",
    "StaticTokenProvider",
    "TokenProvider",
    "VerifiedSession",
    "authority_url",
    "resolve_ca_bundle",
]

logger = logging.getLogger(__name__)

_AADSTS = re.compile(r"\b(AADSTS\d+)\b")


def resolve_ca_bundle(ca_bundle: str | None) -> str:
    """The CA bundle path to verify against: the given one, else certifi's (never the environment's)."""
    return ca_bundle if ca_bundle else certifi.where()


class VerifiedSession(requests.Session):
    """A requests session that always verifies TLS against one bundle and never follows redirects.

    ``trust_env`` is off, so neither ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` nor proxy variables nor
    ``.netrc`` change what is sent; proxies are explicit. Every request gets ``verify=<bundle>``,
    ``allow_redirects=False`` and a (connect, read) timeout.
    """

    def __init__(
        self,
        *,
        ca_bundle: str | None = None,
        proxies: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        user_agent: str = "alm-portal-dataverse",
    ) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = resolve_ca_bundle(ca_bundle)
        self.proxies.update(dict(proxies or {}))
        self.default_timeout = timeout
        self.headers["User-Agent"] = user_agent

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self.verify
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class Cloud(Enum):
    """Entra ID sign-in hosts of the public and sovereign clouds."""

    PUBLIC = "login.microsoftonline.com"
    US_GOVERNMENT = "login.microsoftonline.us"  # GCC High and DoD
    CHINA = "login.chinacloudapi.cn"  # operated by 21Vianet


def authority_url(tenant_id: str, cloud: Cloud = Cloud.PUBLIC) -> str:
    """``https://<cloud host>/<tenant>`` (a tenant id or domain; never ``common``, docs/dataverse.md §13.1)."""
    tenant = tenant_id.strip().strip("/")
    if not tenant or tenant.lower() in ("common", "organizations", "consumers"):
        raise ValueError("client credentials need a specific tenant, not common/organizations/consumers")
    return f"https://{cloud.value}/{tenant}"


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate credential: private key and certificate in PEM (docs/dataverse.md §13.1).

    Sent to msal as ``{"private_key", "public_certificate"}`` so msal computes the SHA-256 thumbprint and
    signs with PS256 (and sends the ``x5c`` chain for subject-name/issuer auth). ``sha1_thumbprint`` selects
    the legacy RS256/SHA-1 form instead (ADFS).
    """

    private_key_pem: str = field(repr=False)
    certificate_pem: str
    passphrase: str | None = field(default=None, repr=False)
    sha1_thumbprint: str | None = None

    def msal_credential(self) -> dict[str, str]:
        credential = {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}
        if self.passphrase:
            credential["passphrase"] = self.passphrase
        if self.sha1_thumbprint:
            credential["thumbprint"] = self.sha1_thumbprint
        return credential


@dataclass(frozen=True)
class ClientCredentials:
    """An application registration's client credentials and the authority that issues its tokens."""

    authority: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate: ClientCertificate | None = None

    def __post_init__(self) -> None:
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("give exactly one of client_secret and certificate")
        parts = urlsplit(self.authority)
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") == "":
            raise ValueError("the authority must be an https URL with a tenant path, e.g. https://host/<tenant>")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("the authority must not carry credentials, a query or a fragment")
        if not self.client_id.strip():
            raise ValueError("client_id is required")

    @property
    def normalized_authority(self) -> str:
        parts = urlsplit(self.authority)
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"https://{netloc}{parts.path.rstrip('/')}"

    @property
    def is_microsoft_authority(self) -> bool:
        return (urlsplit(self.authority).hostname or "").lower() in unconfirmed.MICROSOFT_AUTHORITY_HOSTS

    def msal_credential(self) -> str | dict[str, str]:
        if self.certificate is not None:
            return self.certificate.msal_credential()
        assert self.client_secret is not None
        return self.client_secret

    def fingerprint(self) -> str:
        """SHA-256 over the credential material: a rotated secret or certificate changes it."""
        digest = hashlib.sha256()
        if self.certificate is not None:
            for part in (
                "certificate",
                self.certificate.private_key_pem,
                self.certificate.certificate_pem,
                self.certificate.passphrase or "",
                self.certificate.sha1_thumbprint or "",
            ):
                digest.update(part.encode("utf-8"))
                digest.update(b"\0")
        else:
            digest.update(b"secret\0")
            digest.update((self.client_secret or "").encode("utf-8"))
        return digest.hexdigest()


class TokenProvider(Protocol):
    """What the Dataverse client needs from authentication."""

    def get_token(self, scope: str) -> str:
        """A bearer token for ``scope`` (``<environment url>/.default``)."""
        ...

    def invalidate_token(self, scope: str, token: str) -> None:
        """Forget ``token`` (Dataverse answered 401 with it) so the next get_token fetches a new one."""
        ...


class StaticTokenProvider:
    """A fixed token, for callers that obtain tokens elsewhere (and for tools); cannot refresh."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, scope: str) -> str:
        return self._token

    def invalidate_token(self, scope: str, token: str) -> None:
        return None


# --- the process-wide application registry ----------------------------------------------------------------

_AppKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]
_registry_lock = threading.Lock()
_applications: dict[_AppKey, msal.ConfidentialClientApplication] = {}
_creation_locks: dict[_AppKey, threading.Lock] = {}


def _application_key(credentials: ClientCredentials, ca_bundle: str, proxies: Mapping[str, str]) -> _AppKey:
    return (
        credentials.normalized_authority,
        credentials.client_id.strip().lower(),
        credentials.fingerprint(),
        ca_bundle,
        tuple(sorted(proxies.items())),
    )


def registered_application_count() -> int:
    """How many msal applications this process holds (for diagnostics and tests)."""
    with _registry_lock:
        return len(_applications)


def _build_application(
    credentials: ClientCredentials, ca_bundle: str, proxies: Mapping[str, str], timeout: tuple[float, float]
) -> msal.ConfidentialClientApplication:
    session = VerifiedSession(ca_bundle=ca_bundle, proxies=proxies, timeout=timeout)
    kwargs: dict[str, Any] = {
        "client_credential": credentials.msal_credential(),
        "authority": credentials.normalized_authority,
        "http_client": session,
    }
    if not credentials.is_microsoft_authority:
        # A non-Microsoft host (emulator, ADFS, a test double): no instance discovery, and no alias lookup
        # after a failed token request (docs/dataverse.md §13.2 point 2).
        kwargs["instance_discovery"] = False
    try:
        return msal.ConfidentialClientApplication(credentials.client_id, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise TlsError(
            f"TLS verification of the sign-in authority {_host(credentials.normalized_authority)} failed.",
            details={"cause": str(exc)[:500]},
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise AuthorityUnavailable(
            f"The sign-in authority {_host(credentials.normalized_authority)} could not be reached: "
            f"{network_reason(exc)}.",
            details={"cause": str(exc)[:500]},
        ) from exc
    except ValueError as exc:
        # msal raises ValueError for an authority it cannot use (4xx on discovery, bad token endpoint).
        raise TokenError(f"the authority was rejected: {exc}", error="invalid_authority") from exc


def _application_for(
    credentials: ClientCredentials, ca_bundle: str, proxies: Mapping[str, str], timeout: tuple[float, float]
) -> msal.ConfidentialClientApplication:
    key = _application_key(credentials, ca_bundle, proxies)
    with _registry_lock:
        app = _applications.get(key)
        if app is not None:
            return app
        creation_lock = _creation_locks.setdefault(key, threading.Lock())
    # Building an application performs discovery over the network: hold only this key's lock meanwhile.
    with creation_lock:
        with _registry_lock:
            app = _applications.get(key)
        if app is None:
            app = _build_application(credentials, ca_bundle, proxies, timeout)
            with _registry_lock:
                _applications[key] = app
        return app


def _host(url: str) -> str:
    """host[:port] of a URL, how a person recognises a server."""
    return urlsplit(url).netloc or url


def _token_error(result: Mapping[str, Any]) -> TokenError:
    description = str(result.get("error_description") or "")
    match = _AADSTS.search(description)
    aadsts = match.group(1) if match else None
    if aadsts is None:
        codes = result.get("error_codes")
        if isinstance(codes, list) and codes:
            aadsts = f"AADSTS{codes[0]}"
    error = str(result.get("error") or "") or None
    first_line = description.splitlines()[0] if description else (error or "token request failed")
    return TokenError(
        f"The sign-in authority refused a token: {first_line}",
        aadsts_code=aadsts,
        error=error,
        correlation_id=str(result.get("correlation_id") or "") or None,
    )


class MsalTokenProvider:
    """Client-credentials tokens from msal, sharing the process-wide application for these credentials."""

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        ca_bundle: str | None = None,
        proxies: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = (10.0, 30.0),
    ) -> None:
        self.credentials = credentials
        self._ca_bundle = resolve_ca_bundle(ca_bundle)
        self._proxies = dict(proxies or {})
        self._timeout = timeout

    def application(self) -> msal.ConfidentialClientApplication:
        """The shared msal application (built on first use; discovery happens then)."""
        return _application_for(self.credentials, self._ca_bundle, self._proxies, self._timeout)

    def get_token(self, scope: str) -> str:
        """docs/dataverse.md §13.1: ``acquire_token_for_client`` (cache first, then the authority)."""
        app = self.application()
        try:
            result = app.acquire_token_for_client(scopes=[scope])
        except requests.exceptions.SSLError as exc:
            raise TlsError(
                f"TLS verification of the sign-in authority {_host(self.credentials.normalized_authority)} failed.",
                details={"cause": str(exc)[:500]},
            ) from exc
        except requests.exceptions.RequestException as exc:
            # msal raises for 5xx (raise_for_status) and for network failures (docs/dataverse.md §13.2 point 5).
            raise AuthorityUnavailable(
                f"The sign-in authority {_host(self.credentials.normalized_authority)} could not issue a token: "
                f"{network_reason(exc)}.",
                details={"cause": str(exc)[:500]},
            ) from exc
        if not isinstance(result, Mapping):
            raise TokenError("msal returned no result", error="no_result")
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        error = _token_error(result)
        if error.error == "temporarily_unavailable":
            raise AuthorityUnavailable(error.message, details={"aadsts_code": error.aadsts_code}) from error
        raise error

    def invalidate_token(self, scope: str, token: str) -> None:
        """Remove ``token`` from msal's cache (docs/dataverse.md §13.1: force_refresh is refused for this flow)."""
        app = self.application()
        cache = app.token_cache
        stale = list(
            cache.search(
                msal.TokenCache.CredentialType.ACCESS_TOKEN,
                query={"client_id": app.client_id, "secret": token},
            )
        )
        for entry in stale:
            cache.remove_at(entry)
        logger.info("dropped %d cached access token(s) after a 401 for %s", len(stale), scope)
