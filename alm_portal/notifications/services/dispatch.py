"""The dispatcher: audit events above the cursor become delivery rows, and the cursor moves past them,
in one transaction.

Why this never skips or duplicates:
- The cursor row is locked for the whole batch (SELECT … FOR UPDATE on PostgreSQL; on SQLite every
  transaction is BEGIN IMMEDIATE, one writer at a time), so a second dispatcher waits and then starts
  after the first one's new position. Unique (subscriber, audit seq) constraints would turn a
  mistake into an error instead of a second email.
- Audit seqs become visible in order: audit.record() takes seq = max + 1 under a lock held until
  commit, so once seq N is visible every seq below it is too. A batch reads only up to the head it
  saw first, and reads subscribers after that: a subscriber it missed was created later, so its
  `since_seq` is above everything in the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from alm_portal.accounts import policy
from alm_portal.audit.models import AuditEvent
from alm_portal.notifications import selectors
from alm_portal.notifications.choices import FAILED_EVENTS_THAT_NOTIFY, NEVER_DISPATCHED
from alm_portal.notifications.events import matching_pattern
from alm_portal.notifications.models import (
    EmailDelivery,
    EmailSubscription,
    NotificationCursor,
    WebhookDelivery,
    WebhookEndpoint,
)
from alm_portal.notifications.services.payloads import email_body, email_subject, event_payload
from alm_portal.notifications.services.publishing import publish_deliveries_on_commit

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_BATCHES_PER_RUN = 20


@dataclass
class DispatchReport:
    """What one dispatcher run did."""

    events_read: int = 0
    webhook_deliveries: int = 0
    email_deliveries: int = 0
    cursor: int = 0
    batches: int = 0


@dataclass
class _Plan:
    webhooks: list[WebhookDelivery] = field(default_factory=list)
    emails: list[EmailDelivery] = field(default_factory=list)


def notifications_dispatch(*, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES_PER_RUN) -> DispatchReport:
    """Turn new audit events into deliveries, a batch per transaction, until caught up (or
    `max_batches`: the next beat run continues). Safe to run any number of times, concurrently too."""
    report = DispatchReport()
    for _ in range(max_batches):
        more = _dispatch_batch(batch_size=batch_size, report=report)
        report.batches += 1
        if not more:
            break
    return report


def _locked_cursor() -> NotificationCursor:
    """The cursor row, locked. The migration makes it (at the audit head of that moment); should it be
    missing, it restarts after the newest event that has a delivery, since deliveries and the cursor
    always commit together. get_or_create survives two first runs at once (its INSERT is in a
    savepoint)."""
    if not NotificationCursor.objects.filter(pk=1).exists():
        NotificationCursor.objects.get_or_create(pk=1, defaults={"last_seq": selectors.last_delivered_seq()})
    return NotificationCursor.objects.select_for_update().get(pk=1)


def _advance(cursor: NotificationCursor, seq: int) -> None:
    if seq > cursor.last_seq:
        cursor.last_seq = seq
        cursor.updated_at = timezone.now()
        cursor.save(update_fields=["last_seq", "updated_at"])


def _dispatch_batch(*, batch_size: int, report: DispatchReport) -> bool:
    """One batch; True when more events are waiting."""
    with transaction.atomic():
        cursor = _locked_cursor()
        head = selectors.audit_head_seq()
        report.cursor = cursor.last_seq
        if head <= cursor.last_seq:
            return False
        endpoints = selectors.active_webhook_endpoints()
        subscriptions = selectors.active_email_subscriptions()
        if not endpoints and not subscriptions:
            # Nobody listens: whoever subscribes later starts after their own creation event anyway.
            _advance(cursor, head)
            report.cursor = cursor.last_seq
            return False
        events = selectors.audit_events_between(after_seq=cursor.last_seq, up_to_seq=head, limit=batch_size)
        if not events:
            logger.error("audit seqs %s..%s are missing; run verify_audit", cursor.last_seq + 1, head)
            _advance(cursor, head)
            report.cursor = cursor.last_seq
            return False
        plan = _plan(events=events, endpoints=endpoints, subscriptions=subscriptions)
        webhooks = WebhookDelivery.objects.bulk_create(plan.webhooks)
        emails = EmailDelivery.objects.bulk_create(plan.emails)
        _advance(cursor, events[-1].seq)
        publish_deliveries_on_commit(
            webhook_ids=[delivery.pk for delivery in webhooks], email_ids=[delivery.pk for delivery in emails]
        )
    report.events_read += len(events)
    report.webhook_deliveries += len(webhooks)
    report.email_deliveries += len(emails)
    report.cursor = cursor.last_seq
    return cursor.last_seq < head


def notifies(event: AuditEvent) -> bool:
    """Successful actions notify; of the failed ones only job.failed; the webhook ping never."""
    if event.action in NEVER_DISPATCHED:
        return False
    return event.outcome == "success" or event.action in FAILED_EVENTS_THAT_NOTIFY


def _plan(
    *, events: list[AuditEvent], endpoints: list[WebhookEndpoint], subscriptions: list[EmailSubscription]
) -> _Plan:
    """Which subscriber gets which event: pattern and `since_seq` first (no queries), then, only for
    the events someone wants, the owning team and a promotion's approvers (a few queries per batch)."""
    wanted: list[tuple[AuditEvent, list[WebhookEndpoint], list[tuple[EmailSubscription, str]]]] = []
    for event in events:
        if not notifies(event):
            continue
        hooks = [e for e in endpoints if e.since_seq < event.seq and matching_pattern(e.events, event.action)]
        mails = []
        for subscription in subscriptions:
            if subscription.since_seq >= event.seq or subscription.user_id == event.actor_id:
                continue  # older than the opt-in, or the subscriber's own action
            pattern = matching_pattern(subscription.events, event.action)
            if pattern:
                mails.append((subscription, pattern))
        if hooks or mails:
            wanted.append((event, hooks, mails))
    if not wanted:
        return _Plan()

    needs_team = [
        event
        for event, hooks, mails in wanted
        if any(hook.team_id is not None for hook in hooks) or any(not policy.sees_all_teams(s.user) for s, _ in mails)
    ]
    teams = selectors.event_teams(events=needs_team)
    promotion_ids = {e.object_id for e in needs_team if e.object_type == selectors.PROMOTION_TYPE}
    approvers = selectors.promotion_approver_ids(promotion_ids=promotion_ids)
    people_teams = selectors.team_ids_of_users(
        user_ids=[s.user_id for s in subscriptions if not policy.sees_all_teams(s.user)]
    )

    now = timezone.now()
    plan = _Plan()
    for event, hooks, mails in wanted:
        team_id = teams.get(event.seq)
        payload = event_payload(event) if hooks else None
        for hook in hooks:
            if hook.team_id is None or hook.team_id == team_id:
                plan.webhooks.append(
                    WebhookDelivery(
                        endpoint=hook,
                        audit_seq=event.seq,
                        event=event.action,
                        payload=payload,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        for subscription, pattern in mails:
            if _may_see(subscription, event, team_id=team_id, people_teams=people_teams, approvers=approvers):
                plan.emails.append(
                    EmailDelivery(
                        subscription=subscription,
                        audit_seq=event.seq,
                        event=event.action,
                        recipient=subscription.user.email,
                        subject=email_subject(event),
                        body=email_body(event, pattern=pattern),
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
    return plan


def _may_see(
    subscription: EmailSubscription,
    event: AuditEvent,
    *,
    team_id: int | None,
    people_teams: dict[int, set[int]],
    approvers: dict[str, set[int]],
) -> bool:
    """docs/roles.md: admins and auditors see everything; others their teams' objects, and
    approvers the promotions of stages that name them. Events about no known team: admins only."""
    user = subscription.user
    if policy.sees_all_teams(user):
        return True
    if team_id is not None and team_id in people_teams.get(user.pk, set()):
        return True
    return event.object_type == selectors.PROMOTION_TYPE and user.pk in approvers.get(event.object_id, set())


def cursor_position() -> int:
    """Where the dispatcher stands (0 before its first run)."""
    return NotificationCursor.objects.filter(pk=1).values_list("last_seq", flat=True).first() or 0
