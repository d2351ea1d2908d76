"""Counting and sharing Dataverse's service-protection 429s per environment (issue 8: /metrics, and "no
request to that org before Retry-After elapses, across all workers").

Any web or worker process may receive them, so both live on the environment's row: the count is raised
with one UPDATE ... SET n = n + 1 (concurrent processes never lose an increment), and the Retry-After
becomes the row's `throttled_until` (only ever moved later), which every process loads into its client
before it sends anything to that environment. Every Retry-After is shared, even one short enough for the
receiving process to sleep through. It is an operational counter, not a change of the environment, so no
audit event is written for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from environments.models import Environment


def environment_count_throttled_response(*, environment_id: int, retry_after: float | None = None) -> None:
    """Add one 429 to the environment's counter and share its Retry-After with every other process
    (called by the Dataverse client for each one)."""
    now = timezone.now()
    changes: dict[str, object] = {"throttled_responses": F("throttled_responses") + 1, "last_throttled_at": now}
    if retry_after is not None and retry_after > 0:
        until = now + timedelta(seconds=retry_after)
        changes["throttled_until"] = Case(
            When(throttled_until__gte=until, then=F("throttled_until")), default=Value(until)
        )
    Environment.objects.filter(pk=environment_id).update(**changes)


def environment_share_throttle(*, environment_id: int, until: datetime) -> None:
    """Share a Retry-After's end with every process: the environment's `throttled_until` becomes `until`
    unless it is already later (a 429 that is not counted here: the client counted it when it came)."""
    Environment.objects.filter(pk=environment_id).filter(
        Q(throttled_until__isnull=True) | Q(throttled_until__lt=until)
    ).update(throttled_until=until)
