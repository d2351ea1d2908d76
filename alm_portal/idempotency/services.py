"""Claiming, completing and replaying Idempotency-Key records (issue 6, docs/api.md).

A key is claimed by INSERTing an in-flight row; the unique constraint on (key, principal, method,
path) decides which of two concurrent requests runs. The loser reads the winner's row: a different
body fingerprint is `idempotency_key_reused`, an in-flight row `idempotency_in_progress`, a
completed row is replayed. Rows live 24 hours. A request that dies without completing its row
leaves it in flight; after IN_FLIGHT_LEASE another request may take it over. Expired rows are
removed a few at a time by each claim and all of them by the hourly beat task
(idempotency.purge_expired), so the table stays small however quiet or busy the API is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from alm_portal.errors import Conflict
from alm_portal.idempotency.choices import RecordState
from alm_portal.idempotency.models import IdempotencyRecord

KEY_LIFETIME = timedelta(hours=24)
# Longer than any API request may take (gunicorn's timeout, an upload of ALM_MAX_UPLOAD_BYTES).
IN_FLIGHT_LEASE = timedelta(minutes=15)
# Expired rows removed by each claim (a bounded extra cost per request).
PURGE_BATCH = 100
# Rows per DELETE in the scheduled purge: short statements, so no long lock on a busy table.
SCHEDULED_PURGE_BATCH = 1000


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Claim:
    """Either a fresh claim (`record` to complete or release) or the stored first response."""

    record: IdempotencyRecord | None = None
    replay: StoredResponse | None = None


def idempotency_purge_expired(
    *, now: Any = None, batch_size: int = SCHEDULED_PURGE_BATCH, max_batches: int | None = None
) -> int:
    """Delete the records whose key has expired, `batch_size` rows per statement; return how many went.

    A record still in its lifetime is never touched, whatever its state, so a replay within 24 hours
    keeps working. Safe to run twice or concurrently: a row deleted by another run is simply not counted.
    """
    now = now or timezone.now()
    removed = batches = 0
    while max_batches is None or batches < max_batches:
        expired = list(IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:batch_size])
        if not expired:
            break
        removed += IdempotencyRecord.objects.filter(pk__in=expired, expires_at__lte=now).delete()[0]
        batches += 1
    return removed


def _purge_expired(now: Any) -> None:
    idempotency_purge_expired(now=now, batch_size=PURGE_BATCH, max_batches=1)


def idempotency_claim(*, key: str, principal: str, method: str, path: str, fingerprint: str) -> Claim:
    """Claim `key` for this caller and endpoint, or answer what an earlier request with it did.

    Raises IdempotencyKeyReused (409) when the key was used with another body, IdempotencyInProgress
    (409) while the first request with the key is still being handled.
    """
    now = timezone.now()
    _purge_expired(now)
    identity = {"key": key, "principal": principal, "method": method, "path": path}
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    **identity, fingerprint=fingerprint, created_at=now, expires_at=now + KEY_LIFETIME
                )
            return Claim(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(**identity).first()
        if existing is None:
            continue  # released or purged meanwhile: try the INSERT again
        abandoned = existing.state == RecordState.IN_FLIGHT and existing.created_at <= now - IN_FLIGHT_LEASE
        if existing.expires_at <= now or abandoned:
            # Conditional on the row we read, so two late-comers cannot both take it over.
            IdempotencyRecord.objects.filter(
                pk=existing.pk, state=existing.state, created_at=existing.created_at
            ).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with another request body; use a new key.",
                details={"key": key},
            )
        if existing.state == RecordState.IN_FLIGHT:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still being handled; retry when it has finished.",
                details={"key": key},
            )
        return Claim(
            replay=StoredResponse(
                status_code=existing.status_code or 200,
                body=bytes(existing.response_body),
                headers=dict(existing.response_headers),
            )
        )
    raise IdempotencyInProgress("The Idempotency-Key is contended; retry.", details={"key": key})


def idempotency_complete(*, record: IdempotencyRecord, response: StoredResponse) -> None:
    """Store the first response, to be replayed for the same key and body until the key expires."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=RecordState.IN_FLIGHT).update(
        state=RecordState.COMPLETED,
        status_code=response.status_code,
        response_body=response.body,
        response_headers=response.headers,
        completed_at=timezone.now(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose response is not kept (5xx, refused credentials): a retry runs again."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=RecordState.IN_FLIGHT).delete()
