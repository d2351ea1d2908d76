"""Health checks: WhoAmI + RetrieveVersion, mapped to a status, stored, credential expiry warnings, and the
privileges the deploying identity lacks for the portal's operations (``Environment.privileges``)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.crypto import SecretUnreadable
from alm_portal.dataverse import privileges
from alm_portal.dataverse.client import DataverseClient, throttle_not_before
from alm_portal.dataverse.errors import (
    AccessDenied,
    AuthenticationFailed,
    DataverseError,
    EnvironmentBusy,
    NotFound,
    ServerError,
    Throttled,
    TlsError,
    TokenError,
    TransientError,
    UnexpectedRedirect,
)
from environments import selectors
from environments.choices import CredentialStatus, HealthStatus, NotificationKind
from environments.clients import SecretMaterial, client_for
from environments.models import Credential, Environment, EnvironmentNotification
from environments.services.credentials import credential_activate, credential_verify
from environments.services.errors import CredentialVerificationFailed, dataverse_error_code, dataverse_error_text
from environments.services.notifications import notify
from environments.services.scheduling import environment_queue_first_inventory_sync


@dataclass(frozen=True)
class HealthReport:
    """What one health check found (also the health_check job's result)."""

    status: str
    checked_at: datetime
    error_code: str = ""
    error: str = ""
    dataverse_version: str = ""
    candidate_verified: bool | None = None
    # The first inventory sync queued because the environment answered for the first time.
    inventory_sync_job: int | None = None

    def as_result(self) -> dict[str, Any]:
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat()
        return data


def _status_for(exc: DataverseError) -> str:
    """TokenError and 401/403 → unauthorized; 5xx and throttling → degraded; the rest of the
    transient errors (connection, timeouts, the authority unreachable) → unreachable."""
    if isinstance(exc, TokenError | AuthenticationFailed | AccessDenied):
        return HealthStatus.UNAUTHORIZED
    if isinstance(exc, Throttled | EnvironmentBusy | ServerError):
        return HealthStatus.DEGRADED
    # TLS failures and redirects mean we did not reach the environment we registered.
    if isinstance(exc, TransientError | NotFound | TlsError | UnexpectedRedirect):
        return HealthStatus.UNREACHABLE
    return HealthStatus.DEGRADED


@dataclass(frozen=True)
class _Probe:
    status: str
    error_code: str = ""
    error: str = ""
    dataverse_version: str = ""
    organization_id: str = ""
    throttled_until: datetime | None = None
    privileges: dict[str, Any] | None = None


def privilege_report(client: DataverseClient, user_id: uuid.UUID, *, now: datetime) -> dict[str, Any]:
    """What the deploying identity lacks among the privileges each operation of the portal needs.

    ``RetrieveUserPrivileges`` of the WhoAmI user, compared with alm_portal.dataverse.privileges: per
    operation (export, import, stage_and_upgrade, delete_and_promote, uninstall) the missing ones, each with
    where the need comes from and, for component-dependent ones, the component types that need it. A refusal
    to read the privileges is recorded, not raised: the check still tells whether the environment answers.
    """
    try:
        held = {privilege.name for privilege in client.retrieve_user_privileges(user_id)}
    except TransientError:
        raise
    except DataverseError as exc:
        return {
            "checked_at": now.isoformat(),
            "user_id": str(user_id),
            "read": False,
            "error_code": dataverse_error_code(exc),
            "error": dataverse_error_text(exc)[:500],
        }
    return {
        "checked_at": now.isoformat(),
        "user_id": str(user_id),
        "read": True,
        "held_count": len(held),
        "missing": {
            operation: [need.to_dict() for need in privileges.missing(held, operation)]
            for operation in privileges.OPERATION_LABELS
        },
    }


@sensitive_variables()
def _probe(environment: Environment, credential: Credential | None) -> _Probe:
    if credential is None:
        return _Probe(HealthStatus.UNAUTHORIZED, "no_credential", "The environment has no active credential.")
    material = SecretMaterial(values=())
    try:
        client, material = client_for(environment, credential)
        with client:
            who = client.who_am_i()
            version = client.retrieve_version()
            report = privilege_report(client, who.user_id, now=timezone.now())
    except Throttled as exc:
        until = throttle_not_before(environment.url) or (
            timezone.now() + timedelta(seconds=exc.retry_after) if exc.retry_after else None
        )
        return _Probe(
            HealthStatus.DEGRADED,
            dataverse_error_code(exc),
            material.redact(dataverse_error_text(exc)),
            throttled_until=until,
        )
    except DataverseError as exc:
        return _Probe(_status_for(exc), dataverse_error_code(exc), material.redact(dataverse_error_text(exc)))
    except outbound.OutboundRefused as refusal:
        return _Probe(HealthStatus.UNREACHABLE, "outbound_refused", refusal.message)
    except SecretUnreadable as exc:
        return _Probe(HealthStatus.UNAUTHORIZED, "secret_unreadable", str(exc))
    except ValueError as exc:
        return _Probe(HealthStatus.UNAUTHORIZED, "invalid_credential", material.redact(str(exc))[:500])
    return _Probe(
        HealthStatus.HEALTHY,
        dataverse_version=version,
        organization_id=str(who.organization_id),
        privileges={**report, "error": material.redact(report["error"])} if "error" in report else report,
    )


def _warning_thresholds() -> list[int]:
    return sorted(int(days) for days in settings.ALM_CREDENTIAL_WARNING_DAYS)


def _expiry_warning(
    *, environment: Environment, credential: Credential, now: datetime, notes: list[EnvironmentNotification]
) -> int | None:
    """Notify once per threshold (30 and 7 days by default) that `credential` expires; returns the
    threshold notified now, if any. Call inside the transaction that records it."""
    if credential.expires_at is None:
        return None
    days_left = (credential.expires_at - now).total_seconds() / 86400
    crossed = [days for days in _warning_thresholds() if days_left <= days]
    if not crossed:
        return None
    threshold = min(crossed)
    if credential.expiry_warned_days is not None and credential.expiry_warned_days <= threshold:
        return None
    changed = (
        Credential.objects.filter(pk=credential.pk)
        .exclude(expiry_warned_days__lte=threshold)
        .update(expiry_warned_days=threshold)
    )
    if not changed:
        return None
    credential.expiry_warned_days = threshold
    when = "has expired" if days_left < 0 else f"expires in {max(0, int(days_left))} day(s)"
    notify(
        notes,
        environment,
        NotificationKind.CREDENTIAL_EXPIRING,
        f"The credential {credential.client_id} of {environment.name} {when} ({credential.expires_at:%Y-%m-%d}).",
        {"credential_id": credential.pk, "threshold_days": threshold, "expires_at": credential.expires_at.isoformat()},
    )
    return threshold


def environment_check_health(
    *, environment: Environment, context: AuditContext, candidate: Credential | None = None
) -> HealthReport:
    """WhoAmI + RetrieveVersion + RetrieveUserPrivileges with the active credential; store and return the health.

    With a pending `candidate`, verify it first and, when it works, activate it (retiring the old
    one) so the check runs with it. Success is `healthy`, or `credential_expiring` when the active
    credential expires within 30 days (notified once at 30 and once at 7 days: `credential.expiring`).
    A change of status is audited (`environment.health_changed`); a throttled environment gets
    `throttled_until` from the Retry-After. An environment that answers and was never synced gets its
    first inventory sync queued now, so its inventory is known minutes after registration instead of
    after the hourly schedule's first run.
    """
    candidate_verified: bool | None = None
    if candidate is not None and candidate.status == CredentialStatus.PENDING_VERIFICATION:
        try:
            credential_verify(credential=candidate, context=context)
            credential_activate(credential=candidate, context=context)
            candidate_verified = True
        except CredentialVerificationFailed:
            candidate_verified = False
    credential = selectors.active_credential(environment=environment)
    probe = _probe(environment, credential)
    now = timezone.now()
    status = probe.status
    warn_from = timedelta(days=max(_warning_thresholds(), default=30))
    expiring = credential is not None and credential.expires_at is not None and credential.expires_at - now <= warn_from
    if status == HealthStatus.HEALTHY and expiring:
        status = HealthStatus.CREDENTIAL_EXPIRING
    notes: list[EnvironmentNotification] = []
    with transaction.atomic():
        current = Environment.objects.select_for_update(no_key=True).get(pk=environment.pk)
        before = {"health_status": current.health_status, "health_error_code": current.health_error_code}
        current.health_status = status
        current.health_checked_at = now
        update_fields = ["health_status", "health_checked_at", "throttled_until"]
        current.throttled_until = probe.throttled_until
        if probe.error_code:
            current.health_error = probe.error
            current.health_error_code = probe.error_code
            current.health_error_seen_at = now
            update_fields += ["health_error", "health_error_code", "health_error_seen_at"]
        if probe.dataverse_version:
            current.dataverse_version = probe.dataverse_version
            current.organization_id = probe.organization_id
            update_fields += ["dataverse_version", "organization_id"]
        if probe.privileges is not None:
            current.privileges = probe.privileges
            update_fields.append("privileges")
        current.save(update_fields=update_fields)
        threshold = None
        if credential is not None:
            threshold = _expiry_warning(environment=current, credential=credential, now=now, notes=notes)
        EnvironmentNotification.objects.bulk_create(notes)
        if threshold is not None and credential is not None:
            record(
                context=context,
                action="credential.expiring",
                target=credential,
                related=current,
                after={"threshold_days": threshold, "expires_at": credential.expires_at},
            )
        first_sync = None
        if status in (HealthStatus.HEALTHY, HealthStatus.CREDENTIAL_EXPIRING):
            first_sync = environment_queue_first_inventory_sync(environment=current, context=context)
        if before["health_status"] != status:
            record(
                context=context,
                action="environment.health_changed",
                target=current,
                before=before,
                after={"health_status": status, "health_error_code": probe.error_code},
                message=probe.error[:500],
            )
    for name in update_fields:
        setattr(environment, name, getattr(current, name))
    return HealthReport(
        status=status,
        checked_at=now,
        error_code=probe.error_code,
        error=probe.error,
        dataverse_version=probe.dataverse_version,
        candidate_verified=candidate_verified,
        inventory_sync_job=first_sync.pk if first_sync is not None else None,
    )


# --- inventory --------------------------------------------------------------------------------------------
