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
    # Which listener received the request: ("main",) admin API and path-style orgs, ("idp",) the identity
    # provider, ("org", name) an organisation served at the root of its own origin (server.py).
    site: tuple[str, ...] = ("main",)

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else default

    def header_values(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def query(self) -> dict[str, str]:
        """Query parameters (last value wins), decoded as an HTML form would encode them.

        '+' is a space and a literal plus arrives as %2B: Dataverse accepts ``$filter=a+eq+'b'`` as well as
        ``$filter=a%20eq%20'b'`` (the "Use FetchXml with the Web API" examples send ``fetch+page%3D…``),
        and widely used clients (requests' ``params=``) encode spaces as '+'.
        """
        return dict(query_pairs(self.query_string))

    def form(self) -> dict[str, str]:
        """``application/x-www-form-urlencoded`` body (OAuth token requests, the sign-in page)."""
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON whatever the declared Content-Type (text/plain, none, odata parameters, …);
        a ``charset`` parameter other than UTF-8 is honoured, a BOM is skipped."""
        if not self.body:
            return None
        return json.loads(self.body.decode(self.charset()))

    def charset(self) -> str:
        content_type = self.header("content-type") or ""
        for parameter in content_type.split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"'):
                charset = value.strip().strip('"').lower()
                return "utf-8-sig" if charset in ("utf-8", "utf8") else charset
        return "utf-8-sig"


def query_pairs(query_string: str) -> list[tuple[str, str]]:
    """``a=1&b=x+y`` → [("a", "1"), ("b", "x y")] in order; '+' is a space, %2B a plus."""
    pairs = []
    for part in query_string.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value)))
    return pairs


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
