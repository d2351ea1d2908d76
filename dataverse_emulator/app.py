"""The emulator as one object: state, Entra, the Web API, solution operations and the admin API.

``Emulator.dispatch`` is the single entry point server.py calls for every request:
    /_emulator/…                        admin API (admin.py), loopback clients only
    /common/discovery/instance          msal instance discovery (auth.py)
    /<org>/api/data/v9.x/…              Dataverse Web API of that org (webapi.py)
    /<tenant>/…                         Entra ID endpoints of that tenant (auth.py)
"""

from __future__ import annotations

import logging
import traceback
import urllib.parse
from pathlib import Path

from .admin import Admin
from .auth import Entra
from .solutions import SolutionService
from .store import Store
from .webapi import WebApi
from .wire import Request, Response

log = logging.getLogger("dataverse_emulator")


class Emulator:
    """Everything the server needs; ``port`` is set once the socket is bound."""

    def __init__(self, state_path: Path, *, host: str = "127.0.0.1", default_operation_duration: float = 3.0) -> None:
        self.state_path = state_path
        self.host = host
        self.port = 0
        self.default_operation_duration = default_operation_duration
        self.ca_file: Path = state_path.parent / "ca.pem"
        self.store = Store(state_path)
        self.entra = Entra(self)
        self.solutions = SolutionService(self)
        self.webapi = WebApi(self)
        self.admin = Admin(self)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - URL host, not a bind
        return f"https://{host}:{self.port}"

    def org_url(self, name: str) -> str:
        """An org's base URL: ``https://127.0.0.1:PORT/<org>`` (the Web API is under /api/data/v9.2/)."""
        return f"{self.base_url}/{name}"

    def org_for_resource(self, resource: str) -> str | None:
        """The org a token resource (``<org url>`` from ``<org url>/.default``) names, if any."""
        parsed = urllib.parse.urlsplit(resource)
        if parsed.scheme != "https" or parsed.port != self.port:
            return None
        if parsed.hostname not in ("127.0.0.1", "localhost", self.host):
            return None
        segments = [s for s in parsed.path.split("/") if s]
        if len(segments) != 1 or self.store.org(segments[0]) is None:
            return None
        return segments[0]

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
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self.admin.handle(request)
        if path.rstrip("/") == "/common/discovery/instance":
            return self.entra.instance_discovery(request)
        segments = path.lstrip("/").split("/", 1)
        first = urllib.parse.unquote(segments[0])
        rest = segments[1] if len(segments) > 1 else ""
        if self.store.org(first) is not None:
            parts = rest.split("/", 3)
            if len(parts) >= 3 and parts[0] == "api" and parts[1] == "data" and parts[2].startswith("v9."):
                resource = parts[3] if len(parts) > 3 else ""
                return self.webapi.handle(request, first, parts[2], urllib.parse.unquote(resource))
        if self.store.tenant(first) is not None or rest.startswith(("v2.0/", "oauth2/", ".well-known", "discovery/")):
            response = self.entra.handle(request, first, rest)
            if response is not None:
                return response
        return Response.json(404, {"error": {"code": "", "message": f"Resource not found: {path}"}})
