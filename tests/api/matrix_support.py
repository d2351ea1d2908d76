"""Shared by the authorization matrix and the query-count tests: every /api/v1/ endpoint, enumerated from
the URL resolver, with concrete URLs for the api_world fixture's objects."""

from __future__ import annotations

import re
from typing import Any

# The id that {id} stands for, by the collection the path starts with.
RESOURCE_IDS = {
    "environments": "environment",
    "solutions": "solution",
    "versions": "version",
    "pipelines": "pipeline",
    "stages": "stage_prod",
    "promotions": "promotion",
    "jobs": "job",
    "webhooks": "webhook",
    "tokens": "token",
}
OTHER_IDS = {"other_id": "old_version", "window_id": "window", "freeze_id": "freeze"}


def api_endpoints() -> list[tuple[str, str]]:
    """(METHOD, path template) of every API operation, from the URL resolver (via drf-spectacular's
    enumerator, which walks the resolver's patterns and each view's allowed methods)."""
    from drf_spectacular.generators import EndpointEnumerator

    endpoints = EndpointEnumerator().get_api_endpoints()
    return sorted({(method, path) for path, _regex, method, _view in endpoints if path.startswith("/api/v1/")})


def concrete(path: str, ids: dict[str, int]) -> str:
    collection = path.split("/")[3]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        key = RESOURCE_IDS[collection] if name in ("id", "pk") else OTHER_IDS[name]
        return str(ids[key])

    return re.sub(r"\{(\w+)\}", value, path)


def call(client: Any, method: str, url: str, body: Any = None) -> Any:
    handler = getattr(client, method.lower())
    if method in ("POST", "PUT", "PATCH"):
        response = handler(url, body if body is not None else {}, format="json")
    else:
        response = handler(url)
    if getattr(response, "streaming", False):
        # Read to the end, as a client does: the test client then closes the response, and a streamed export
        # frees its export slot.
        response.streamed_body = b"".join(response.streaming_content)
    return response
