"""Webhook endpoints and email opt-ins: the writes people make, each audited in its transaction.

The HMAC secret is write-only: it is encrypted here (alm_portal.crypto, MultiFernet over
ALM_ENCRYPTION_KEYS) and decrypted only by the delivery code. Audit rows say that it changed, never
what it is.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.crypto import encrypt_secret
from alm_portal.errors import ValidationFailed
from alm_portal.notifications.choices import WEBHOOK_TEST_ACTION, WEBHOOK_TEST_EVENT
from alm_portal.notifications.events import checked_patterns
from alm_portal.notifications.models import EmailSubscription, WebhookDelivery, WebhookEndpoint
from alm_portal.notifications.services.payloads import event_payload
from alm_portal.notifications.services.publishing import publish_webhook_delivery_on_commit

_UNSET: Any = object()
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={field: [message]})


def _checked_name(name: str) -> str:
    text = (name or "").strip()
    if not text or len(text) > 100:
        raise _field_error("name", "A name of 1 to 100 characters is required.")
    return text


def _checked_url(url: str) -> str:
    """The URL as given (trimmed) once the one outbound policy accepts it for webhooks."""
    text = (url or "").strip()
    try:
        outbound.check_url(text, purpose=outbound.Purpose.WEBHOOK)
    except outbound.OutboundRefused as refused:
        raise ValidationFailed(refused.message, details={"url": [refused.message], "reason": refused.reason}) from None
    return text


@sensitive_variables()
def _checked_secret(secret: str) -> str:
    if not isinstance(secret, str) or not (MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH):
        raise _field_error("secret", f"A secret of {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters is required.")
    if secret != secret.strip() or not secret.isprintable():
        raise _field_error("secret", "The secret must be printable, without leading or trailing spaces.")
    return secret


def endpoint_facts(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the audit log keeps of an endpoint (never the secret)."""
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "team_id": endpoint.team_id,
        "events": list(endpoint.events),
        "is_active": endpoint.is_active,
    }


def _mark_since(model: type[WebhookEndpoint] | type[EmailSubscription], pk: int, event: AuditEvent) -> None:
    """Deliver only events after `event` (the creation or re-activation) to this subscriber."""
    model.objects.filter(pk=pk).update(since_seq=event.seq)


@sensitive_variables()
def webhook_endpoint_create(
    *,
    name: str,
    url: str,
    events: list[str],
    secret: str,
    context: AuditContext,
    team: Team | None = None,
    is_active: bool = True,
) -> WebhookEndpoint:
    """Register an endpoint. It receives events that happen after this (its `since_seq`)."""
    values = {
        "name": _checked_name(name),
        "url": _checked_url(url),
        "events": checked_patterns(events),
        "secret_ciphertext": encrypt_secret(_checked_secret(secret)),
        "team": team,
        "is_active": bool(is_active),
    }
    now = timezone.now()
    try:
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.create(
                created_at=now, updated_at=now, created_by_id=_person(context), **values
            )
            event = record(
                context=context,
                action="webhook.created",
                target=endpoint,
                related=team,
                after=endpoint_facts(endpoint),
            )
            _mark_since(WebhookEndpoint, endpoint.pk, event)
    except IntegrityError:
        raise _field_error("name", "A webhook with this name exists.") from None
    endpoint.since_seq = event.seq
    return endpoint


@sensitive_variables()
def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    context: AuditContext,
    name: str = _UNSET,
    url: str = _UNSET,
    events: list[str] = _UNSET,
    team: Team | None = _UNSET,
    is_active: bool = _UNSET,
    secret: str | None = None,
) -> WebhookEndpoint:
    """Change the given fields; a new secret replaces the old one at once. Re-activating an endpoint
    (also one disabled by a 410) starts its delivery afresh from now. Nothing changed, nothing written."""
    wanted: dict[str, Any] = {}
    if name is not _UNSET:
        wanted["name"] = _checked_name(name)
    if url is not _UNSET:
        wanted["url"] = _checked_url(url)
    if events is not _UNSET:
        wanted["events"] = checked_patterns(events)
    if team is not _UNSET:
        wanted["team_id"] = team.pk if team is not None else None
    if is_active is not _UNSET:
        wanted["is_active"] = bool(is_active)
    new_ciphertext = encrypt_secret(_checked_secret(secret)) if secret is not None else None

    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        before = endpoint_facts(current)
        changes = {key: value for key, value in wanted.items() if getattr(current, key) != value}
        if not changes and new_ciphertext is None:
            return current
        reactivated = changes.get("is_active") is True
        if reactivated:
            changes.update(disabled_at=None, disabled_reason="", failing_since=None)
        if new_ciphertext is not None:
            changes["secret_ciphertext"] = new_ciphertext
        for key, value in changes.items():
            setattr(current, key, value)
        current.updated_at = timezone.now()
        try:
            with transaction.atomic():
                current.save()
        except IntegrityError:
            raise _field_error("name", "A webhook with this name exists.") from None
        after = endpoint_facts(current)
        changed_keys = [key for key in after if after[key] != before[key]]
        audit_after: dict[str, Any] = {key: after[key] for key in changed_keys}
        if new_ciphertext is not None:
            audit_after["shared_key_changed"] = True
        event = record(
            context=context,
            action="webhook.updated",
            target=current,
            related=current.team,
            before={key: before[key] for key in changed_keys},
            after=audit_after,
        )
        if reactivated:
            _mark_since(WebhookEndpoint, current.pk, event)
            current.since_seq = event.seq
    return current


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, context: AuditContext) -> None:
    """Remove the endpoint and its delivery log (the audit log keeps that it existed)."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        facts = endpoint_facts(current)
        record(context=context, action="webhook.deleted", target=current, related=current.team, before=facts)
        current.delete()


def webhook_endpoint_disable(*, endpoint_id: int, reason: str, context: AuditContext) -> bool:
    """Switch an endpoint off (a receiver answered 410 Gone). True if this call switched it off."""
    now = timezone.now()
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).update(
            is_active=False, disabled_at=now, disabled_reason=reason[:200], updated_at=now
        )
        if changed != 1:
            return False
        endpoint = WebhookEndpoint.objects.select_related("team").get(pk=endpoint_id)
        record(
            context=context,
            action="webhook.disabled",
            target=endpoint,
            related=endpoint.team,
            before={"is_active": True},
            after={"is_active": False, "reason": reason[:200]},
        )
    return True


def webhook_endpoint_test(*, endpoint: WebhookEndpoint, context: AuditContext) -> WebhookDelivery:
    """Queue a `webhook.test` ping to this endpoint alone (also while it is switched off, so it can be
    tried before it goes live). The ping is a delivery like any other: signed, retried, logged."""
    with transaction.atomic():
        event = record(context=context, action=WEBHOOK_TEST_ACTION, target=endpoint, related=endpoint.team)
        payload = event_payload(event, event_name=WEBHOOK_TEST_EVENT)
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            audit_seq=event.seq,
            event=WEBHOOK_TEST_EVENT,
            payload=payload,
            next_attempt_at=event.occurred_at,
        )
        publish_webhook_delivery_on_commit(delivery.pk)
    return delivery


def email_subscription_set(
    *, user: User, events: list[str], context: AuditContext, is_active: bool = True
) -> EmailSubscription:
    """Opt `user` in to email for `events` (codes or prefixes), or out with is_active=False.

    Mail goes to the account's address, so one is required to opt in. A new or re-activated
    subscription receives events from now on.
    """
    patterns = checked_patterns(events) if is_active or events else []
    if is_active and not (user.email or "").strip():
        raise _field_error("events", "Your account has no email address to send notifications to.")
    now = timezone.now()
    with transaction.atomic():
        subscription = EmailSubscription.objects.select_for_update().filter(user=user).first()
        before = {"events": subscription.events, "is_active": subscription.is_active} if subscription else None
        starts = is_active and (subscription is None or not subscription.is_active)
        if subscription is None:
            subscription = EmailSubscription.objects.create(
                user=user, events=patterns, is_active=is_active, created_at=now, updated_at=now
            )
        else:
            if before == {"events": patterns, "is_active": is_active}:
                return subscription
            subscription.events, subscription.is_active, subscription.updated_at = patterns, is_active, now
            subscription.save(update_fields=["events", "is_active", "updated_at"])
        event = record(
            context=context,
            action="email_subscription.changed",
            target=subscription,
            related=user,
            before=before,
            after={"events": patterns, "is_active": is_active},
        )
        if starts:
            _mark_since(EmailSubscription, subscription.pk, event)
            subscription.since_seq = event.seq
    return subscription


def _person(context: AuditContext) -> int | None:
    return context.actor_id if context.actor_kind in ("user", "api_token") else None
