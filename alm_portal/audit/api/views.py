"""The audit log over the API, for auditors and admins (issue 6 "audit-events/").

- list: newest first, cursor pagination on seq without a count (the log only grows; counting
  millions of rows per page would be the slowest part of every request);
- verification: the last result (GET) or a new full verification queued as a job (POST, 202 with the
  job and its Location; GET jobs/{id}/ shows its progress and result);
- export: JSON Lines or CSV, streamed.
Reading the log is itself audited: one `audit.viewed` event per query, one `audit.exported` per export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.audit import selectors
from alm_portal.audit.api.exports import csv_stream, export_header, jsonl_stream
from alm_portal.audit.api.serializers import (
    AuditEventSerializer,
    AuditExportQuerySerializer,
    AuditQuerySerializer,
    VerificationAcceptedSerializer,
    VerificationSerializer,
)
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.audit_verification.services import audit_verification_request
from alm_portal.limits.concurrency import SlotLease, export_slots_acquire

_MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class LeasedStream:
    """The export's chunks, renewing its slots as they go and releasing them when the response is closed
    (finished, or the client went away), also when not one chunk was read."""

    def __init__(self, chunks: Iterator[str], lease: SlotLease) -> None:
        self._chunks = chunks
        self._lease = lease

    def __iter__(self) -> LeasedStream:
        return self

    def __next__(self) -> str:
        self._lease.renew()
        return next(self._chunks)

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._lease.release()


class AuditCursorPagination(CursorPagination):
    ordering = "-seq"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class _TextRenderer(BaseRenderer):
    """Lets clients ask for the export's own media type; errors still render as JSON."""

    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


class CsvRenderer(_TextRenderer):
    media_type = "text/csv"
    format = "csv"


class JsonLinesRenderer(_TextRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


def _filters(data: dict[str, Any]) -> dict[str, Any]:
    """Validated query parameters → audit_events() arguments."""
    related_type = related_id = None
    if data.get("related_object"):
        related_type, related_id = data["related_object"].split(":", 1)
    return {
        "action_prefix": data.get("action"),
        "actor_id": data.get("actor"),
        "actor_kind": data.get("actor_kind"),
        "object_type": data.get("object_type"),
        "object_id": data.get("object_id"),
        "related_type": related_type,
        "related_id": related_id,
        "outcome": data.get("outcome"),
        "request_id": data.get("request_id"),
        "occurred_from": data.get("since"),
        "occurred_before": data.get("until"),
    }


def _as_text(data: dict[str, Any]) -> dict[str, Any]:
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in data.items()}


def _audit_read(request: Request, action_code: str, after: dict[str, Any]) -> None:
    with transaction.atomic():
        record(context=AuditContext.from_request(request), action=action_code, after=after)


def job_location(job_id: int) -> str:
    """Where a client polls a queued job (the jobs API belongs to deployments)."""
    try:
        return reverse("api:deployments:job-detail", kwargs={"pk": job_id})
    except NoReverseMatch:
        return f"/api/v1/jobs/{job_id}/"


class AuditEventViewSet(viewsets.GenericViewSet):
    serializer_class = AuditEventSerializer
    pagination_class = AuditCursorPagination
    filter_backends: list[Any] = []
    required_scopes = {"GET": Scope.READ, "POST": Scope.READ}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not policy.reads_audit_log(portal_user(request)):
            raise exceptions.PermissionDenied("Only auditors and admins read the audit log.")

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.none()

    def _query(self, serializer_class: type[AuditQuerySerializer]) -> dict[str, Any]:
        form = serializer_class(data=self.request.query_params)
        form.is_valid(raise_exception=True)
        return dict(form.validated_data)

    @extend_schema(parameters=[AuditQuerySerializer], responses={200: AuditEventSerializer(many=True)})
    def list(self, request: Request) -> Response:
        """Events matching the filters, newest first; follow `next` for older ones."""
        query = self._query(AuditQuerySerializer)
        page = self.paginate_queryset(selectors.audit_events(**_filters(query)))
        assert page is not None
        body = AuditEventSerializer(page, many=True).data
        _audit_read(request, "audit.viewed", {"filters": _as_text(query), "returned": len(page)})
        return self.get_paginated_response(body)

    @extend_schema(responses={200: VerificationSerializer})
    @action(detail=False, methods=["get"])
    def verification(self, request: Request) -> Response:
        """The last verification of the hash chain (a scheduled one, or one asked for here)."""
        event = selectors.audit_last_verification()
        after = (event.after or {}) if event is not None else {}
        body = {
            "valid": None if event is None else event.outcome == "success",
            "checked": after.get("checked", 0),
            "head_seq": after.get("head_seq", 0),
            "head_hash": after.get("head_hash", ""),
            "first_broken_seq": after.get("first_broken_seq"),
            "reason": after.get("reason"),
            "verified_at": None if event is None else event.occurred_at,
            "event_seq": None if event is None else event.seq,
        }
        _audit_read(request, "audit.viewed", {"view": "verification"})
        return Response(VerificationSerializer(body).data)

    @extend_schema(request=None, responses={202: VerificationAcceptedSerializer})
    @verification.mapping.post
    def verification_start(self, request: Request) -> Response:
        """Queue a verification of the whole chain as a job; poll the job at `Location`, then GET
        verification/ shows the result. A verification still waiting to start is returned instead."""
        job = audit_verification_request(context=AuditContext.from_request(request))
        body = VerificationAcceptedSerializer({"job": job}).data
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        response["Location"] = job_location(job.pk)
        return response

    @extend_schema(
        parameters=[AuditExportQuerySerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[JSONRenderer, CsvRenderer, JsonLinesRenderer],
        pagination_class=None,
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        """Matching events in seq order, streamed; `file_format=jsonl` (default) re-verifies offline with
        scripts/verify_audit_export.py, `file_format=csv` has formula-like cells neutralised. With any
        filter, the JSON Lines file starts with a header record `{"audit_export": {"filtered": true,
        "filters": {...}, "to_seq": N, ...}}` and the verifier checks it as a filtered export. At most
        ALM_EXPORT_MAX_CONCURRENT_PER_USER exports of a user and ALM_EXPORT_MAX_CONCURRENT in all run at a time;
        beyond that the answer is 429 `exports_busy` with Retry-After."""
        query = self._query(AuditExportQuerySerializer)
        file_format = query.pop("file_format")
        # One of the user's export slots and one of the portal's, held while the stream runs (429 exports_busy).
        lease = export_slots_acquire(user_id=request.user.pk)
        now = timezone.now()
        filters = {key: value for key, value in _as_text(query).items() if value not in (None, "")}
        try:
            head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
            _audit_read(
                request, "audit.exported", {"file_format": file_format, "filters": _as_text(query), "to_seq": head}
            )
            events = selectors.audit_events(**_filters(query))
            if file_format == "csv":
                stream = csv_stream(events, to_seq=head)
            else:
                header = export_header(filters=filters, to_seq=head, exported_at=now.isoformat()) if filters else None
                stream = jsonl_stream(events, to_seq=head, header=header)
        except BaseException:
            lease.release()
            raise
        response = StreamingHttpResponse(
            LeasedStream(stream, lease), content_type=f"{_MEDIA[file_format]}; charset=utf-8"
        )
        if filters:
            # The filter travels with the file too (its header record); this says it to the client at once.
            response["X-Audit-Export-Filtered"] = "true"
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{file_format}"'
        return response
