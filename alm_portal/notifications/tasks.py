"""Celery tasks of notifications: thin, each calls one service; every one is safe to run twice.

- `notifications.dispatch` (beat, every 10 s): new audit events → deliveries, then publish what is due.
- `notifications.deliver_webhook` / `notifications.deliver_email`: one attempt of one delivery,
  published after the commit that made it due; the claim makes duplicates harmless.
Retries are rows with a `next_attempt_at`, never Celery countdowns.
"""

from __future__ import annotations

from celery import shared_task

from alm_portal.notifications import services


@shared_task(name="notifications.dispatch", acks_late=True, ignore_result=True, time_limit=120, soft_time_limit=115)
def dispatch() -> str:
    report = services.notifications_dispatch()
    published = services.notifications_publish_due()
    return (
        f"events={report.events_read} webhooks={report.webhook_deliveries} "
        f"emails={report.email_deliveries} due={published}"
    )


@shared_task(
    name="notifications.deliver_webhook", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=55
)
def deliver_webhook(delivery_id: int) -> str:
    return services.webhook_delivery_attempt(delivery_id=delivery_id).status


@shared_task(name="notifications.deliver_email", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=55)
def deliver_email(delivery_id: int) -> str:
    return services.email_delivery_attempt(delivery_id=delivery_id).status
