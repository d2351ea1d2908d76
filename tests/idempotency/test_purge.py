"""Expired Idempotency-Key records are purged on a schedule; records still in their lifetime stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from alm_portal.idempotency.choices import RecordState
from alm_portal.idempotency.models import IdempotencyRecord
from alm_portal.idempotency.services import idempotency_purge_expired
from alm_portal.idempotency.tasks import idempotency_purge_expired_run

pytestmark = pytest.mark.django_db


def _record(key: str, *, expires_in: timedelta, state: str = RecordState.COMPLETED) -> IdempotencyRecord:
    now = timezone.now()
    return IdempotencyRecord.objects.create(
        key=key,
        principal="user:1",
        method="POST",
        path="/api/v1/promotions/",
        fingerprint="0" * 64,
        state=state,
        created_at=now + expires_in - timedelta(hours=24),
        expires_at=now + expires_in,
    )


def test_expired_records_go_and_fresh_ones_stay_in_small_batches():
    for number in range(7):
        _record(f"old-{number}", expires_in=-timedelta(minutes=1 + number))
    _record("old-in-flight", expires_in=-timedelta(seconds=1), state=RecordState.IN_FLIGHT)
    fresh = _record("fresh", expires_in=timedelta(hours=23))
    fresh_in_flight = _record("fresh-in-flight", expires_in=timedelta(minutes=1), state=RecordState.IN_FLIGHT)

    assert idempotency_purge_expired(batch_size=3) == 8

    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {fresh.pk, fresh_in_flight.pk}
    assert idempotency_purge_expired() == 0


def test_the_beat_task_purges_and_is_scheduled():
    _record("old", expires_in=-timedelta(hours=1))
    kept = _record("fresh", expires_in=timedelta(hours=1))

    assert idempotency_purge_expired_run.apply().get() == 1
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    scheduled = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "idempotency.purge_expired" in scheduled
