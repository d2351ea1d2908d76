"""The emulator as one object: state, Entra, the Web API, solution operations and the admin API.

``Emulator.dispatch`` is the single entry point server.py calls for every request. Which host a request
went to is the port it arrived on (``Request.site``), as Dataverse and Entra ID are hosts of their own:

    main port        /_emulator/…                        admin API (admin.py), loopback clients only
                     /<org>/api/data/v9.x/…              an organisation served under a path ("path" addressing)
    identity port    /common/discovery/instance          msal instance discovery (auth.py)
                     /<tenant>/…                         Entra ID endpoints of that tenant (auth.py)
    an org's port    /api/data/v9.x/…                    that organisation at the root of its own origin
                                                         ("origin" addressing, the default)
"""

from __future__ import annotations

import logging
import traceback
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from .admin import Admin
from .auth import Entra
from .solutions import SolutionService
from .store import Store
from .webapi import WebApi
from .wire import Request, Response

if TYPE_CHECKING:
    from .server import Listeners

log = logging.getLogger("dataverse_emulator")
ADDRESSING_CHOICES = ("origin", "path")
MAIN_SITE = ("main",)
IDP_SITE = ("idp",)


class Emulator:
    """Everything the server needs; ``port`` is set once the main socket is bound, ``listeners`` when the
    emulator serves HTTPS (in-process tests run without them, and then organisations live under a path)."""

    def __init__(
        self,
        state_path: Path,
        *,
        host: str = "127.0.0.1",
        default_operation_duration: float = 3.0,
        default_addressing: str = "origin",
    ) -> None:
        if default_addressing not in ADDRESSING_CHOICES:
            raise ValueError(f"addressing must be one of {ADDRESSING_CHOICES}")
        self.state_path = state_path
        self.host = host
        self.port = 0
        self.idp_port = 0
        self.listeners: Listeners | None = None
        self.default_operation_duration = default_operation_duration
        self._default_addressing = default_addressing
        self.ca_file: Path = state_path.parent / "ca.pem"
        self.store = Store(state_path)
        self.entra = Entra(self)
        self.solutions = SolutionService(self)
        self.webapi = WebApi(self)
        self.admin = Admin(self)

    # --- addresses -----------------------------------------------------------------------------------
    @property
    def url_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - URL host, not a bind

    @property
    def base_url(self) -> str:
        """The main port: admin API and path-addressed organisations."""
        return f"https://{self.url_host}:{self.port}"

    @property
    def idp_url(self) -> str:
        """The identity provider's origin (the emulator's ``https://login.microsoftonline.com``)."""
        return f"https://{self.url_host}:{self.idp_port or self.port}"

    @property
    def default_addressing(self) -> str:
        return self._default_addressing if self.listeners is not None else "path"

    def org_url(self, name: str) -> str:
        """An org's base URL (= token resource): ``https://127.0.0.1:<its port>`` at the root of its own
        origin, or ``https://127.0.0.1:PORT/<org>`` under a path. The Web API is under /api/data/v9.2/."""
        org = self.store.org(name)
        if org is not None and org.get("port"):
            return f"https://{self.url_host}:{org['port']}"
        return f"{self.base_url}/{name}"

    def open_org_port(self, name: str, port: int | None = None) -> int:
        """Listen for ``name`` at the root of its own origin on ``port`` (0/None: one the OS picks)."""
        if self.listeners is None:
            raise RuntimeError("this emulator serves no HTTPS, so it cannot give an organisation its own port")
        return self.listeners.open(port or 0, ("org", name))

    def reopen_org_port(self, name: str, remembered: int | None) -> int:
        """After a restart: the remembered port if it is still free, else a new one."""
        assert self.listeners is not None
        return self.listeners.open_preferring(remembered, ("org", name))

    def close_org_port(self, port: int | None) -> None:
        if port and self.listeners is not None:
            self.listeners.close(int(port))

    def org_for_resource(self, resource: str) -> str | None:
        """The org a token resource (``<org url>`` from ``<org url>/.default``) names, if any."""
        parsed = urllib.parse.urlsplit(resource)
        if parsed.scheme != "https" or parsed.hostname not in ("127.0.0.1", "localhost", self.url_host):
            return None
        try:
            port = parsed.port
        except ValueError:
            return None
        segments = [s for s in parsed.path.split("/") if s]
        if port == self.port:
            if len(segments) != 1:
                return None
            org = self.store.org(segments[0])
            return segments[0] if org is not None and not org.get("port") else None
        if segments:
            return None
        for name, org in self.store.data["orgs"].items():
            if org.get("port") == port:
                return name
        return None

    # --- dispatch ------------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except Exception as exc:  # the emulator must answer, and say what went wrong
            log.error("unhandled error for %s %s\n%s", request.method, request.path, traceback.format_exc())
            return Response.json(
                500,
                {"error": {"code": "0x80040216", "message": f"Emulator internal error: {type(exc).__name__}: {exc}"}},
            )

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        site = request.site
        if site[0] == "org":
            return self._org_site(request, site[1])
        if site == IDP_SITE or self.idp_port == 0:
            if path.rstrip("/") == "/common/discovery/instance":
                return self.entra.instance_discovery(request)
            segments = path.lstrip("/").split("/", 1)
            tenant = urllib.parse.unquote(segments[0])
            rest = segments[1] if len(segments) > 1 else ""
            if self.store.tenant(tenant) is not None or rest.startswith(
                ("v2.0/", "oauth2/", ".well-known", "discovery/")
            ):
                response = self.entra.handle(request, tenant, rest)
                if response is not None:
                    return response
            if site == IDP_SITE:
                return _not_found(path)
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self.admin.handle(request)
        segments = path.lstrip("/").split("/", 1)
        first = urllib.parse.unquote(segments[0])
        rest = segments[1] if len(segments) > 1 else ""
        org = self.store.org(first)
        if org is not None and not org.get("port"):
            api = _api_path(rest)
            if api is not None:
                return self.webapi.handle(request, first, api[0], api[1])
        return _not_found(path)

    def _org_site(self, request: Request, name: str) -> Response:
        org = self.store.org(name)
        api = _api_path(request.path.lstrip("/"))
        if org is None or org.get("port") is None or api is None:
            return _not_found(request.path)
        return self.webapi.handle(request, name, api[0], api[1])


def _api_path(path: str) -> tuple[str, str] | None:
    """``api/data/v9.2/<resource>`` → ("v9.2", "<resource>", percent-decoded), else None."""
    parts = path.split("/", 3)
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "data" and parts[2].startswith("v9."):
        return parts[2], urllib.parse.unquote(parts[3] if len(parts) > 3 else "")
    return None


def _not_found(path: str) -> Response:
    return Response.json(404, {"error": {"code": "", "message": f"Resource not found: {path}"}})
