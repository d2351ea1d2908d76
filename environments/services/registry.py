"""Registering and changing environments, and queueing their health checks and syncs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.accounts.models import Team
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.jobs.services import job_enqueue
from environments.choices import CredentialStatus, EnvironmentJobKind, EnvironmentKind, HealthStatus
from environments.models import Credential, Environment
from environments.services.credentials import credential_insert, credential_rotate, credential_set_expiry
from environments.services.scheduling import enqueue_once
from environments.services.validation import (
    checked_credential,
    checked_kind,
    checked_name,
    checked_tenant,
    checked_url,
    credential_facts,
    environment_facts,
    field_error,
)

_UNSET: Any = object()


@sensitive_variables()
def environment_create(
    *,
    name: str,
    url: str,
    kind: str,
    tenant_id: str,
    team: Team,
    client_id: str,
    credential_type: str,
    context: AuditContext,
    client_secret: str | None = None,
    certificate_pem: str | None = None,
    private_key_pem: str | None = None,
    credential_expires_at: datetime | None = None,
    authority: str | None = None,
    description: str = "",
    is_active: bool = True,
    check_health: bool = True,
) -> Environment:
    """Register an environment with its first (active) credential and queue its first health check.

    The credential is active at once, since there is nothing to fall back to; the health check
    shows within seconds whether it works (healthy, or unauthorized with the AADSTS code).
    """
    tenant_id = checked_tenant(tenant_id)
    values = {
        "name": checked_name(name),
        "url": checked_url(url, purpose=outbound.Purpose.DATAVERSE, field_name="url"),
        "kind": checked_kind(kind),
        "tenant_id": tenant_id,
        "authority": checked_url(
            authority or outbound.default_authority(tenant_id),
            purpose=outbound.Purpose.AUTHORITY,
            field_name="authority",
        ),
        "description": (description or "").strip(),
        "is_active": bool(is_active),
    }
    material = checked_credential(
        client_id=client_id,
        kind=credential_type,
        client_secret=client_secret,
        certificate_pem=certificate_pem,
        private_key_pem=private_key_pem,
        expires_at=credential_expires_at,
    )
    now = timezone.now()
    try:
        with transaction.atomic():
            environment = Environment.objects.create(team=team, created_at=now, updated_at=now, **values)
            credential = credential_insert(
                environment=environment, material=material, status=CredentialStatus.ACTIVE, context=context, now=now
            )
            if check_health and environment.is_active:
                job_enqueue(kind=EnvironmentJobKind.HEALTH_CHECK, environment=environment, params={}, context=context)
            record(
                context=context,
                action="environment.created",
                target=environment,
                related=team,
                after=environment_facts(environment),
            )
            record(
                context=context,
                action="credential.added",
                target=credential,
                related=environment,
                after=credential_facts(credential),
            )
    except IntegrityError:
        raise field_error("name", "An environment with this name exists.") from None
    return environment


@sensitive_variables()
def environment_update(
    *,
    environment: Environment,
    context: AuditContext,
    name: str = _UNSET,
    url: str = _UNSET,
    kind: str = _UNSET,
    tenant_id: str = _UNSET,
    authority: str = _UNSET,
    team: Team = _UNSET,
    description: str = _UNSET,
    is_active: bool = _UNSET,
    client_id: str | None = None,
    credential_type: str | None = None,
    client_secret: str | None = None,
    certificate_pem: str | None = None,
    private_key_pem: str | None = None,
    credential_expires_at: datetime | None = _UNSET,
) -> Environment:
    """Change an environment's own fields; only the given ones. Audited with before/after of what
    changed; nothing changed, nothing written. A new URL, tenant or authority resets health to
    unknown and queues a health check.

    New credential material (a secret, or a certificate and key) starts a rotation
    (credential_rotate: a pending credential and the check that activates it once it works); the
    client id and type default to the active credential's. An expiry alone corrects the active
    credential's recorded expiry. Everything commits together or not at all.
    """
    wanted: dict[str, Any] = {}
    if name is not _UNSET:
        wanted["name"] = checked_name(name, exclude_pk=environment.pk)
    if url is not _UNSET:
        wanted["url"] = checked_url(url, purpose=outbound.Purpose.DATAVERSE, field_name="url")
    if kind is not _UNSET:
        wanted["kind"] = checked_kind(kind)
    if tenant_id is not _UNSET:
        wanted["tenant_id"] = checked_tenant(tenant_id)
    if authority is not _UNSET:
        wanted["authority"] = checked_url(authority, purpose=outbound.Purpose.AUTHORITY, field_name="authority")
    if team is not _UNSET:
        wanted["team_id"] = team.pk
    if description is not _UNSET:
        wanted["description"] = (description or "").strip()
    if is_active is not _UNSET:
        wanted["is_active"] = bool(is_active)
    rotating = bool(client_secret or certificate_pem or private_key_pem)
    if (client_id or credential_type) and not rotating:
        raise field_error("client_secret", "A new client id or credential type needs its secret or certificate.")
    try:
        with transaction.atomic():
            current = Environment.objects.select_for_update().get(pk=environment.pk)
            _change_credential(
                environment=current,
                context=context,
                rotating=rotating,
                client_id=client_id,
                credential_type=credential_type,
                client_secret=client_secret,
                certificate_pem=certificate_pem,
                private_key_pem=private_key_pem,
                expires_at=credential_expires_at,
            )
            before = environment_facts(current)
            changes = {key: value for key, value in wanted.items() if before[key] != value}
            if not changes:
                return current
            if changes.get("kind") == EnvironmentKind.PRODUCTION:
                _refuse_production_without_approvals(current)
            for key, value in changes.items():
                setattr(current, key, value)
            current.updated_at = timezone.now()
            update_fields = [*changes, "updated_at"]
            reconnect = bool({"url", "authority", "tenant_id"} & set(changes))
            if reconnect:
                current.health_status = HealthStatus.UNKNOWN
                current.throttled_until = None
                update_fields += ["health_status", "throttled_until"]
            current.save(update_fields=update_fields)
            if reconnect and current.is_active:
                enqueue_once(environment=current, kind=EnvironmentJobKind.HEALTH_CHECK, params={}, context=context)
            record(
                context=context,
                action="environment.updated",
                target=current,
                before={key: before[key] for key in changes},
                after=changes,
            )
    except IntegrityError:
        raise field_error("name", "An environment with this name exists.") from None
    return current


def _refuse_production_without_approvals(environment: Environment) -> None:
    """An environment becomes production only once every stage into it requires an approval or explicitly
    allows none (deployments.services.stages.production_approval_errors)."""
    stages = environment.stages_targeting.filter(required_approvals=0, production_without_approval=False)
    names = sorted(f"{stage.pipeline.name} → {stage.name}" for stage in stages.select_related("pipeline"))
    if names:
        raise field_error(
            "kind",
            f"Stages into {environment.name} require no approval ({', '.join(names)}); a production environment needs "
            "at least one, or the stage must allow production without approval. Change the stages first.",
        )


@sensitive_variables()
def _change_credential(
    *,
    environment: Environment,
    context: AuditContext,
    rotating: bool,
    client_id: str | None,
    credential_type: str | None,
    client_secret: str | None,
    certificate_pem: str | None,
    private_key_pem: str | None,
    expires_at: datetime | None,
) -> None:
    active = Credential.objects.filter(environment=environment, status=CredentialStatus.ACTIVE).first()
    if rotating:
        kind = credential_type or (active.kind if active else "")
        credential_rotate(
            environment=environment,
            client_id=client_id or (active.client_id if active else ""),
            kind=kind,
            client_secret=client_secret,
            certificate_pem=certificate_pem,
            private_key_pem=private_key_pem,
            expires_at=None if expires_at is _UNSET else expires_at,
            context=context,
        )
    elif expires_at is not _UNSET:
        if active is None:
            raise field_error("credential_expires_at", "The environment has no active credential.")
        credential_set_expiry(credential=active, expires_at=expires_at, context=context)
