"""Refused API requests without a signed-in caller: counted per client and window, audited as one event.

- denied_request_tally(): count one refusal (the API exception handler calls it for every 401, and for every
  429 of an anonymous client) in the DeniedRequestTally row of its client address and window.
- denied_requests_flush(): turn every row whose window has ended into one `api.denied.unauthenticated` event
  (outcome denied, the client's address and first user agent, `after.count` and the count per refusal code)
  and delete the row in the same transaction. Beat runs it every ALM_DENIAL_AUDIT_WINDOW_SECONDS.

Refusals of signed-in callers are not counted here: they stay one `api.denied` event each, as evidence of
what that person or token tried.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from alm_portal.audit.canonical import format_timestamp
from alm_portal.audit.choices import ActorKind, Outcome
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import DeniedRequestTally
from alm_portal.audit.services import record

UNAUTHENTICATED_ACTION = "api.denied.unauthenticated"
FLUSH_BATCH = 500


def _window(now: datetime) -> tuple[datetime, datetime]:
    seconds = settings.ALM_DENIAL_AUDIT_WINDOW_SECONDS
    epoch = int(now.timestamp()) // seconds * seconds
    start = datetime.fromtimestamp(epoch, tz=UTC)
    return start, start + timedelta(seconds=seconds)


def denied_request_tally(
    *,
    client_ip: str | None,
    code: str,
    method: str,
    path: str,
    user_agent: str,
    request_id: str,
    now: datetime | None = None,
) -> None:
    """Count one refused request without a signed-in caller in its client's current window."""
    now = now or timezone.now()
    start, end = _window(now)
    address = (client_ip or "")[:64]
    with transaction.atomic():
        tally = DeniedRequestTally.objects.select_for_update().filter(client_ip=address, window_start=start).first()
        if tally is None:
            try:
                with transaction.atomic():
                    DeniedRequestTally.objects.create(
                        client_ip=address,
                        window_start=start,
                        window_end=end,
                        count=1,
                        codes={code: 1},
                        first_method=method[:10],
                        first_path=path[:200],
                        first_request_id=request_id[:100],
                        user_agent=user_agent[:500],
                        last_seen_at=now,
                    )
                return
            except IntegrityError:  # another request of this client made the row first
                tally = DeniedRequestTally.objects.select_for_update().get(client_ip=address, window_start=start)
        tally.count += 1
        tally.codes = {**tally.codes, code: int(tally.codes.get(code, 0)) + 1}
        tally.last_seen_at = max(tally.last_seen_at, now)
        tally.save(update_fields=["count", "codes", "last_seen_at"])


def denied_requests_flush(*, now: datetime | None = None, limit: int = FLUSH_BATCH) -> int:
    """Audit every tally whose window has ended as one event and remove it; returns how many were written.

    Safe to run twice and concurrently: each row is locked, audited and deleted in one transaction, and a row
    another run already took is skipped.
    """
    now = now or timezone.now()
    written = 0
    ended = DeniedRequestTally.objects.filter(window_end__lte=now).order_by("window_start", "pk")
    ids = list(ended.values_list("pk", flat=True)[:limit])
    for pk in ids:
        with transaction.atomic():
            tally = DeniedRequestTally.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if tally is None:
                continue
            context = AuditContext(
                actor_id=None,
                actor_display="anonymous",
                actor_kind=ActorKind.USER,
                auth_method="",
                request_id=tally.first_request_id,
                client_ip=tally.client_ip or None,
                user_agent=tally.user_agent,
            )
            record(
                context=context,
                action=UNAUTHENTICATED_ACTION,
                outcome=Outcome.DENIED,
                message=(
                    f"{tally.count} API request{'s' if tally.count != 1 else ''} without valid credentials refused "
                    f"from {tally.client_ip or 'an unknown address'}"
                ),
                after={
                    "count": tally.count,
                    "codes": dict(sorted(tally.codes.items())),
                    "window_start": format_timestamp(tally.window_start),
                    "window_end": format_timestamp(tally.window_end),
                    "last_seen_at": format_timestamp(tally.last_seen_at),
                    "first_request": {"method": tally.first_method, "path": tally.first_path},
                },
            )
            tally.delete()
            written += 1
    return written
