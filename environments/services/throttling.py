"""Counting Dataverse's service-protection 429s per environment (issue 8: /metrics).

Any web or worker process may receive them, so the count lives on the environment's row and is
raised with one UPDATE ... SET n = n + 1: concurrent processes never lose an increment. It is an
operational counter, not a change of the environment, so no audit event is written for it.
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from environments.models import Environment


def environment_count_throttled_response(*, environment_id: int) -> None:
    """Add one 429 to the environment's counter (called by the Dataverse client for each one)."""
    Environment.objects.filter(pk=environment_id).update(
        throttled_responses=F("throttled_responses") + 1, last_throttled_at=timezone.now()
    )
