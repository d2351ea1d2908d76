"""Nudging workers after commit. Best effort (alm_portal.celery.publish_best_effort): a lost message
only delays a delivery until the beat sweep publishes what is due."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from alm_portal import celery as celery_app
from alm_portal.notifications import tasks


def _publish(task_name: str, ids: Iterable[int]) -> None:
    task = getattr(tasks, task_name)
    for pk in ids:
        celery_app.publish_best_effort(task, args=(pk,))


def publish_webhook_delivery_on_commit(delivery_id: int) -> None:
    transaction.on_commit(lambda: _publish("deliver_webhook", [delivery_id]))


def publish_deliveries_on_commit(*, webhook_ids: list[int], email_ids: list[int]) -> None:
    if webhook_ids:
        transaction.on_commit(lambda: _publish("deliver_webhook", list(webhook_ids)))
    if email_ids:
        transaction.on_commit(lambda: _publish("deliver_email", list(email_ids)))


def publish_now(*, webhook_ids: list[int], email_ids: list[int]) -> None:
    """For the sweep, which runs outside any transaction."""
    _publish("deliver_webhook", webhook_ids)
    _publish("deliver_email", email_ids)
