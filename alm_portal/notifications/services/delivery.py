"""Sending deliveries: one attempt at a time, claimed first, retried with backoff for up to a day.

An attempt claims its row with a conditional UPDATE (attempts + 1, next_attempt_at pushed out by a
lease) and proceeds only if that hit the row, so a duplicate message, the beat sweep and a retry can
all ask for the same delivery and it is sent once per attempt. The network call happens outside any
transaction; its outcome is written with another conditional UPDATE that only the claimant's attempt
number can match.

Webhooks go through the one outbound policy: the URL is checked again before each attempt and the
socket is pinned to an address the policy allowed (no redirects; 5 s to connect, 10 s to answer).
2xx is delivered; 410 Gone switches the endpoint off (audited); anything else is retried with
exponential backoff and jitter until ALM_NOTIFICATION_RETRY_HOURS (24) after the delivery was made,
then marked failed. An endpoint whose every attempt has failed for ALM_WEBHOOK_DISABLE_AFTER_HOURS
(24) is switched off (audited, `disabled_reason` says why) until an admin turns it on again; any
success ends the run. Errors recorded on the row are short and never carry the secret or the body.

In development loopback mode (ALM_ALLOW_LOOPBACK) a webhook may point at any port of this machine, so the
row does not say why no HTTP answer came (refused, silent, not TLS): otherwise the delivery log would
tell an admin which local ports are open. The worker's log line keeps the reason for whoever runs it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone
from urllib3.exceptions import MaxRetryError, NewConnectionError

from alm_portal import outbound
from alm_portal.audit.context import AuditContext
from alm_portal.crypto import SecretUnreadable, decrypt_secret
from alm_portal.notifications import selectors
from alm_portal.notifications.choices import WEBHOOK_TEST_EVENT, DeliveryStatus
from alm_portal.notifications.models import EmailDelivery, WebhookDelivery, WebhookEndpoint
from alm_portal.notifications.services.endpoints import webhook_endpoint_disable
from alm_portal.notifications.services.payloads import payload_body
from alm_portal.notifications.services.publishing import publish_now
from alm_portal.notifications.signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

USER_AGENT = "ALM-Portal"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
# Longer than one attempt can take, so a live sender never loses its claim; a dead one's row is
# picked up again by the sweep once it runs out.
CLAIM_LEASE = timedelta(seconds=120)
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
SWEEP_LIMIT = 500
LOOPBACK_NO_ANSWER = (
    "Could not deliver: no HTTP answer. (In loopback mode the reason is not recorded, so that this log cannot "
    "tell which local ports are open; the worker's log has it.)"
)

_random = secrets.SystemRandom()

DeliveryModel = type[WebhookDelivery] | type[EmailDelivery]


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt did. `sent` is False when the row was not ours to send (not due, done, or
    claimed by someone else)."""

    delivery_id: int
    sent: bool
    status: str
    status_code: int | None = None
    error: str = ""


def retry_window() -> timedelta:
    return timedelta(hours=float(settings.ALM_NOTIFICATION_RETRY_HOURS))


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with "equal jitter": 30 s, 1 min, 2 min … capped at 1 h, each between half
    and all of that, so receivers that failed together do not all get retried at the same instant."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=ceiling / 2 + _random.uniform(0, ceiling / 2))


def _ca_bundle() -> str | None:
    """Public CAs (certifi) unless ALM_WEBHOOK_CA_BUNDLE names a bundle (a private CA, or tests)."""
    return settings.ALM_WEBHOOK_CA_BUNDLE or None


# --- claim and finish ------------------------------------------------------------------------------


def _claim(model: DeliveryModel, pk: int, now: datetime) -> int | None:
    """Take the next attempt of a due pending row; its attempt number, or None if it is not ours."""
    attempts = (
        model.objects.filter(pk=pk, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .values_list("attempts", flat=True)
        .first()
    )
    if attempts is None:
        return None
    changed = model.objects.filter(
        pk=pk, status=DeliveryStatus.PENDING, attempts=attempts, next_attempt_at__lte=now
    ).update(attempts=attempts + 1, next_attempt_at=now + CLAIM_LEASE)
    return attempts + 1 if changed == 1 else None


def _finish(model: DeliveryModel, pk: int, attempt: int, **fields: Any) -> bool:
    """Record the attempt's outcome, unless a later attempt has taken the row meanwhile."""
    return model.objects.filter(pk=pk, status=DeliveryStatus.PENDING, attempts=attempt).update(**fields) == 1


def _give_up(model: DeliveryModel, pk: int, attempt: int, error: str, status_code: int | None = None) -> AttemptOutcome:
    fields: dict[str, Any] = {"status": DeliveryStatus.FAILED, "last_error": error[:300]}
    if model is WebhookDelivery:
        fields["last_status_code"] = status_code
    _finish(model, pk, attempt, **fields)
    return AttemptOutcome(pk, sent=False, status=DeliveryStatus.FAILED, status_code=status_code, error=error)


def _retry_or_fail(
    model: DeliveryModel,
    delivery: WebhookDelivery | EmailDelivery,
    attempt: int,
    now: datetime,
    error: str,
    status_code: int | None = None,
) -> AttemptOutcome:
    due = now + retry_delay(attempt)
    if due > delivery.created_at + retry_window():
        hours = retry_window().total_seconds() / 3600
        return _give_up(model, delivery.pk, attempt, f"{error} Gave up after {hours:g} h.", status_code)
    fields: dict[str, Any] = {"next_attempt_at": due, "last_error": error[:300]}
    if model is WebhookDelivery:
        fields["last_status_code"] = status_code
    _finish(model, delivery.pk, attempt, **fields)
    return AttemptOutcome(delivery.pk, sent=True, status=DeliveryStatus.PENDING, status_code=status_code, error=error)


def _expired(delivery: WebhookDelivery | EmailDelivery, attempt: int, now: datetime) -> bool:
    """Past the retry window. The first attempt is always made, however late a worker gets to it."""
    return attempt > 1 and now >= delivery.created_at + retry_window()


# --- webhooks --------------------------------------------------------------------------------------


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> AttemptOutcome:
    """Make the next attempt of one webhook delivery if it is due. Safe to call any number of times."""
    now = now or timezone.now()
    attempt = _claim(WebhookDelivery, delivery_id, now)
    if attempt is None:
        status = WebhookDelivery.objects.filter(pk=delivery_id).values_list("status", flat=True).first()
        return AttemptOutcome(delivery_id, sent=False, status=status or "missing")
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_active and delivery.event != WEBHOOK_TEST_EVENT:
        return _give_up(WebhookDelivery, delivery_id, attempt, "The endpoint is switched off.")
    if _expired(delivery, attempt, now):
        return _give_up(WebhookDelivery, delivery_id, attempt, "Not sent within the retry window.")
    try:
        secret = decrypt_secret(endpoint.secret_ciphertext)
    except SecretUnreadable:
        return _give_up(WebhookDelivery, delivery_id, attempt, "The signing secret cannot be decrypted.")
    try:
        outbound.check_url(endpoint.url, purpose=outbound.Purpose.WEBHOOK)
    except outbound.OutboundRefused as refused:
        message = f"Refused by the outbound policy: {refused.message}"
        _endpoint_failed(endpoint, now=now, error=message)
        return _give_up(WebhookDelivery, delivery_id, attempt, message)

    body = payload_body(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        "X-ALM-Event": delivery.event,
        "X-ALM-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature_header(secret=secret, body=body),
    }
    del secret
    status_code, error = _post(endpoint.url, body=body, headers=headers)
    logger.info(
        "webhook delivery %s (endpoint %s, %s) attempt %s: %s",
        delivery.pk,
        endpoint.pk,
        delivery.event,
        attempt,
        status_code if status_code is not None else error,
    )
    if status_code is not None and 200 <= status_code < 300:
        _endpoint_answered(endpoint)
        _finish(
            WebhookDelivery,
            delivery_id,
            attempt,
            status=DeliveryStatus.DELIVERED,
            delivered_at=timezone.now(),
            last_status_code=status_code,
            last_error="",
        )
        return AttemptOutcome(delivery_id, sent=True, status=DeliveryStatus.DELIVERED, status_code=status_code)
    if status_code == 410:
        message = "410 Gone: the receiver asked to stop; the endpoint was switched off."
        outcome = _give_up(WebhookDelivery, delivery_id, attempt, message, status_code)
        webhook_endpoint_disable(
            endpoint_id=endpoint.pk, reason="The receiver answered 410 Gone.", context=AuditContext.worker("")
        )
        return outcome
    if status_code is not None:
        error = f"HTTP {status_code}."
    elif outbound.loopback_allowed() and not error.startswith(POLICY_REFUSAL):
        error = LOOPBACK_NO_ANSWER
    _endpoint_failed(endpoint, now=now, error=error)
    return _retry_or_fail(WebhookDelivery, delivery, attempt, now, error, status_code)


POLICY_REFUSAL = "Refused by the outbound policy"


def _endpoint_answered(endpoint: WebhookEndpoint) -> None:
    """A success ends the endpoint's run of failures."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(failing_since=None)


def _endpoint_failed(endpoint: WebhookEndpoint, *, now: datetime, error: str) -> None:
    """Count a failed attempt against the endpoint; a day of nothing but failures switches it off, audited."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    since = WebhookEndpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
    hours = settings.ALM_WEBHOOK_DISABLE_AFTER_HOURS
    if since is None or now - since < timedelta(hours=hours):
        return
    last = error.split(" (", 1)[0].rstrip(".")  # the error's own sentence, without its explanation
    reason = f"Every delivery failed for {hours} h (last: {last}); turn it on again once it answers."
    webhook_endpoint_disable(endpoint_id=endpoint.pk, reason=reason, context=AuditContext.worker(""))


def _post(url: str, *, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(status code, "") or (None, a short reason). The response body is never read."""
    session = outbound.outbound_session(
        ca_bundle=_ca_bundle(), timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS), user_agent=USER_AGENT
    )
    try:
        with session:
            response = session.post(url, data=body, headers=headers, stream=True)
            response.close()
    except requests.RequestException as exc:
        return None, describe_failure(exc)
    except outbound.OutboundRefused as refused:
        return None, f"Refused by the outbound policy: {refused.message}"
    return response.status_code, ""


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests → urllib3 MaxRetryError → the connection error)."""
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or any(current is known for known in seen) or len(seen) > 20:
            continue
        seen.append(current)
        stack.extend([current.__cause__, current.__context__])
        if isinstance(current, MaxRetryError):
            stack.append(current.reason)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return seen


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free reason for a failed request (no URL, no headers)."""
    for item in _chain(exc):
        if isinstance(item, outbound.AddressRefused):
            text = str(item.args[-1]) if item.args else str(item)
            text = text.split("refused by the outbound policy:", 1)[-1].strip()
            return f"Refused by the outbound policy: {text}"[:300]
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate verification failed."
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"No connection within {CONNECT_TIMEOUT_SECONDS:g} s."
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"No answer within {READ_TIMEOUT_SECONDS:g} s."
    if isinstance(exc, requests.exceptions.ConnectionError):
        for item in _chain(exc):
            # The pinned connection reports the socket's OSError as text ("[Errno 111] Connection refused").
            if isinstance(item, ConnectionRefusedError) or (
                isinstance(item, NewConnectionError) and "connection refused" in str(item).lower()
            ):
                return "Connection refused."
        return "Could not connect."
    return f"Request failed ({type(exc).__name__})."


# --- email -----------------------------------------------------------------------------------------


def email_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> AttemptOutcome:
    """Send one notification email if it is due, through settings.EMAIL_BACKEND."""
    now = now or timezone.now()
    attempt = _claim(EmailDelivery, delivery_id, now)
    if attempt is None:
        status = EmailDelivery.objects.filter(pk=delivery_id).values_list("status", flat=True).first()
        return AttemptOutcome(delivery_id, sent=False, status=status or "missing")
    delivery = EmailDelivery.objects.select_related("subscription__user").get(pk=delivery_id)
    subscription = delivery.subscription
    if not subscription.is_active or not subscription.user.is_active:
        return _give_up(EmailDelivery, delivery_id, attempt, "The subscriber opted out or was disabled.")
    if _expired(delivery, attempt, now):
        return _give_up(EmailDelivery, delivery_id, attempt, "Not sent within the retry window.")
    message = EmailMessage(
        subject=delivery.subject,
        body=delivery.body,
        to=[delivery.recipient],
        headers={"X-ALM-Event": delivery.event, "X-ALM-Delivery": f"email-{delivery.pk}"},
    )
    try:
        message.send(fail_silently=False)
    except Exception as exc:  # any backend: SMTP errors, refused connections, bad addresses
        logger.warning("email delivery %s attempt %s failed: %s", delivery.pk, attempt, type(exc).__name__)
        return _retry_or_fail(EmailDelivery, delivery, attempt, now, f"Sending failed ({type(exc).__name__}).")
    _finish(
        EmailDelivery,
        delivery_id,
        attempt,
        status=DeliveryStatus.DELIVERED,
        delivered_at=timezone.now(),
        last_error="",
    )
    return AttemptOutcome(delivery_id, sent=True, status=DeliveryStatus.DELIVERED)


# --- the sweep -------------------------------------------------------------------------------------


def notifications_publish_due(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> int:
    """Beat's safety net: publish a task for every delivery that is due (new ones whose message was
    lost, retries whose time has come, attempts whose sender died). Returns how many were published."""
    now = now or timezone.now()
    webhook_ids = selectors.due_webhook_delivery_ids(now=now, limit=limit)
    email_ids = selectors.due_email_delivery_ids(now=now, limit=limit)
    publish_now(webhook_ids=webhook_ids, email_ids=email_ids)
    return len(webhook_ids) + len(email_ids)


def notifications_deliver_due(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> list[AttemptOutcome]:
    """Attempt every due delivery in this process (management commands, tests, a worker-less demo)."""
    now = now or timezone.now()
    outcomes = [
        webhook_delivery_attempt(delivery_id=pk, now=now)
        for pk in selectors.due_webhook_delivery_ids(now=now, limit=limit)
    ]
    outcomes += [
        email_delivery_attempt(delivery_id=pk, now=now) for pk in selectors.due_email_delivery_ids(now=now, limit=limit)
    ]
    return outcomes
