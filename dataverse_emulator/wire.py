"""Transport-neutral request and response objects passed between server.py and the handlers."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One HTTP request as the handlers see it (the path is already split from the query string)."""

    method: str
    path: str
    query_string: str
    headers: dict[str, list[str]]  # lower-case header name -> values
    body: bytes = b""
    client_ip: str = "127.0.0.1"

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else default

    def header_values(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def query(self) -> dict[str, str]:
        """Query parameters (last value wins); '+' is not a space in OData URLs, so decode with unquote."""
        result: dict[str, str] = {}
        for part in self.query_string.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            result[urllib.parse.unquote(name)] = urllib.parse.unquote(value)
        return result

    def form(self) -> dict[str, str]:
        """``application/x-www-form-urlencoded`` body (OAuth token requests, the sign-in page)."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8-sig"))


@dataclass
class Response:
    """What a handler answers. ``drop_connection`` makes the server reset the socket instead of replying."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop_connection: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        body = json.dumps(payload).encode("utf-8")
        return cls(status, body, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])])

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode("utf-8"), [("Content-Type", content_type)])

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(302, b"", [("Location", location)])
