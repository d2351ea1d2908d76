"""Idempotency-Key for every POST under /api/v1/ (issue 6), applied in one place: this middleware.

- Scope: (principal, method, path), where the principal is the bearer token (by its SHA-256, never
  its text) or the session's user. Anonymous requests pass through (they are refused with 401).
- Same key and same body within 24 h → the first response again (status, body, Location, ETag),
  marked `Idempotent-Replayed: true`; another body → 409 `idempotency_key_reused`; while the
  first request is still being handled → 409 `idempotency_in_progress`.
- The body fingerprint is the SHA-256 of the canonical JSON (key order does not matter) or of the
  raw bytes; multipart bodies are fingerprinted by each streamed file's SHA-256 plus the other
  fields, so an upload is never held in memory. The query string and content type are part of it.
- Not kept (a retry runs again): 5xx answers, 401/403 refusals (nothing ran; fixing the
  credentials must not replay the refusal), 429, streamed answers.
- Secrets shown once are never stored: a view whose answer holds one (a new API token) puts what a
  replay answers instead on the response (`REPLAY_INSTEAD_ATTRIBUTE`), and that is what is stored. As
  a safety net, an answer that holds API token text anyway is not kept at all.

A middleware rather than a view mixin because every POST of every app must honour the key, and the
claim must be taken before the view runs; it is limited to the API path so pages are unaffected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError

from alm_portal.errors import DomainError
from alm_portal.idempotency.services import (
    StoredResponse,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
)
from alm_portal.log_redaction import TOKEN_TEXT_PATTERN

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_META_KEY = "HTTP_IDEMPOTENCY_KEY"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")
_NOT_KEPT = frozenset({401, 403, 429})
# Set by a view on its response: (status, JSON-able body) that a replay answers instead of the response.
REPLAY_INSTEAD_ATTRIBUTE = "idempotency_replay_instead"
# Multipart boundaries and small fields around a file (as the upload view allows).
_MULTIPART_ALLOWANCE = 1024 * 1024
_CHUNK = 1024 * 1024


def _error(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "details": details or {}}}, status=status)


def principal_of(request: HttpRequest) -> str | None:
    """Whose key this is: the bearer token DRF will authenticate first, else the session's user."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return "bearer:" + hashlib.sha256(credentials.strip().encode("utf-8", "replace")).hexdigest()
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


def _file_digest(upload: Any) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    upload.seek(0)
    for chunk in upload.chunks(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    upload.seek(0)  # the view reads it again
    return {"name": upload.name, "size": size, "sha256": digest.hexdigest()}


def body_fingerprint(request: HttpRequest) -> str | None:
    """SHA-256 over content type, query string and body; None when the body cannot be read here
    (too large: the view refuses it anyway, and nothing is claimed)."""
    content_type = (request.content_type or "").lower()
    parts: dict[str, Any] = {"content_type": content_type, "query": request.META.get("QUERY_STRING", "")}
    if content_type == "multipart/form-data":
        limit = int(getattr(settings, "ALM_MAX_UPLOAD_BYTES", 0)) + _MULTIPART_ALLOWANCE
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return None
        try:
            fields = {name: sorted(request.POST.getlist(name)) for name in sorted(request.POST)}
            files = {name: [_file_digest(f) for f in request.FILES.getlist(name)] for name in sorted(request.FILES)}
        except (MultiPartParserError, RequestDataTooBig, SuspiciousOperation):
            return None
        parts.update(fields=fields, files=files)
    else:
        try:
            body = request.body
        except (RequestDataTooBig, SuspiciousOperation):
            return None
        try:
            parts["json"] = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parts["raw_sha256"] = hashlib.sha256(body).hexdigest()
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _replay(stored: StoredResponse) -> HttpResponse:
    response = HttpResponse(stored.body, status=stored.status_code)
    for name, value in stored.headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def _storable(response: HttpResponse) -> StoredResponse | None:
    """What to keep for a replay: the response, or what its view said to answer instead; None when it
    holds token text (never stored, so the key is released and a retry runs again)."""
    instead = getattr(response, REPLAY_INSTEAD_ATTRIBUTE, None)
    if instead is not None:
        status_code, data = instead
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        return StoredResponse(status_code=status_code, body=body, headers={"Content-Type": "application/json"})
    if TOKEN_TEXT_PATTERN.search(response.content.decode("utf-8", "replace")):
        logger.warning("an answer holding API token text was not kept for idempotent replay")
        return None
    headers = {name: response[name] for name in _REPLAYED_HEADERS if response.has_header(name)}
    return StoredResponse(status_code=response.status_code, body=response.content, headers=headers)


class IdempotencyMiddleware:
    """Honour `Idempotency-Key` on POSTs under /api/v1/ (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.META.get(_META_KEY)
        if key is None or request.method != "POST" or not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if not _VALID_KEY.match(key):
            return _error(
                400,
                "validation_error",
                "The Idempotency-Key header is not valid.",
                {HEADER: ["1 to 255 printable ASCII characters without spaces."]},
            )
        principal = principal_of(request)
        fingerprint = body_fingerprint(request) if principal else None
        if principal is None or fingerprint is None:
            return self.get_response(request)
        try:
            claim = idempotency_claim(
                key=key, principal=principal, method=request.method, path=request.path, fingerprint=fingerprint
            )
        except DomainError as refusal:
            return _error(refusal.status, refusal.code, refusal.message, refusal.details)
        if claim.replay is not None:
            return _replay(claim.replay)
        assert claim.record is not None
        try:
            response = self.get_response(request)
        except BaseException:
            idempotency_release(record=claim.record)
            raise
        if response.streaming or response.status_code >= 500 or response.status_code in _NOT_KEPT:
            idempotency_release(record=claim.record)
            return response
        stored = _storable(response)
        if stored is None:
            idempotency_release(record=claim.record)
            return response
        idempotency_complete(record=claim.record, response=stored)
        return response
