"""Credential lifecycle: add (pending), verify against the environment, activate (retiring the old
one), discard, correct the expiry, re-encrypt with a new key. All audited, secrets never."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.crypto import SecretUnreadable, rotate_ciphertext
from alm_portal.dataverse.errors import DataverseError
from alm_portal.errors import InvalidState
from alm_portal.jobs.models import Job
from environments.choices import CREDENTIAL_TRANSITIONS, CredentialStatus
from environments.clients import SecretMaterial, client_for
from environments.models import Credential, Environment
from environments.services.errors import CredentialVerificationFailed, dataverse_error_code, dataverse_error_text
from environments.services.scheduling import environment_request_health_check
from environments.services.validation import CredentialInput, checked_credential, credential_facts, field_error


def _credential_move(
    credential_id: int, *, current: str, to: str, require: dict[str, Any] | None = None, **fields: Any
) -> bool:
    """The one way a credential's status changes: a conditional UPDATE from `current` to `to` along
    CREDENTIAL_TRANSITIONS, with `fields` set in the same statement and `require` as further conditions.
    True when the row moved; False when it was no longer `current` (someone else moved it first)."""
    if to not in CREDENTIAL_TRANSITIONS.get(current, ()):
        raise InvalidState(
            f"A credential cannot move from {current} to {to}.",
            details={
                "current": current,
                "allowed": [status for status, moves in CREDENTIAL_TRANSITIONS.items() if to in moves],
            },
        )
    rows = Credential.objects.filter(pk=credential_id, status=current, **(require or {}))
    return rows.update(status=to, **fields) == 1


def credential_insert(
    *, environment: Environment, material: CredentialInput, status: str, context: AuditContext, now: datetime
) -> Credential:
    return Credential.objects.create(
        environment=environment,
        client_id=material.client_id,
        kind=material.kind,
        secret_ciphertext=material.ciphertext,
        certificate_pem=material.certificate_pem,
        certificate_thumbprint=material.thumbprint,
        expires_at=material.expires_at,
        status=status,
        created_at=now,
        created_by_id=context.actor_id if context.actor_kind in ("user", "api_token") else None,
        activated_at=now if status == CredentialStatus.ACTIVE else None,
    )


@sensitive_variables()
def credential_add(
    *,
    environment: Environment,
    client_id: str,
    kind: str,
    context: AuditContext,
    client_secret: str | None = None,
    certificate_pem: str | None = None,
    private_key_pem: str | None = None,
    expires_at: datetime | None = None,
) -> Credential:
    """Add a credential pending verification (the first step of a rotation)."""
    material = checked_credential(
        client_id=client_id,
        kind=kind,
        client_secret=client_secret,
        certificate_pem=certificate_pem,
        private_key_pem=private_key_pem,
        expires_at=expires_at,
    )
    with transaction.atomic():
        credential = credential_insert(
            environment=environment,
            material=material,
            status=CredentialStatus.PENDING_VERIFICATION,
            context=context,
            now=timezone.now(),
        )
        record(
            context=context,
            action="credential.added",
            target=credential,
            related=environment,
            after=credential_facts(credential),
        )
    return credential


@sensitive_variables()
def credential_rotate(
    *,
    environment: Environment,
    client_id: str,
    kind: str,
    context: AuditContext,
    client_secret: str | None = None,
    certificate_pem: str | None = None,
    private_key_pem: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[Credential, Job]:
    """Start a rotation: add the new credential (pending) and queue the health check that verifies
    it against the environment and, if it works, activates it and retires the old one."""
    with transaction.atomic():
        credential = credential_add(
            environment=environment,
            client_id=client_id,
            kind=kind,
            context=context,
            client_secret=client_secret,
            certificate_pem=certificate_pem,
            private_key_pem=private_key_pem,
            expires_at=expires_at,
        )
        job = environment_request_health_check(environment=environment, context=context, candidate=credential)
    return credential, job


@sensitive_variables()
def credential_verify(*, credential: Credential, context: AuditContext) -> Credential:
    """Prove the credential works: a token from its authority and WhoAmI through the client.

    Success sets verified_at (`credential.verified`); failure stores the redacted error on the
    credential and writes `credential.verification_failed` (outcome failed), then raises
    CredentialVerificationFailed.
    """
    environment = credential.environment
    problem: tuple[str, str] | None = None
    material = SecretMaterial(values=())
    try:
        client, material = client_for(environment, credential)
        with client:
            client.who_am_i()
    except DataverseError as exc:
        problem = (dataverse_error_code(exc), material.redact(dataverse_error_text(exc)))
    except outbound.OutboundRefused as refusal:
        problem = ("outbound_refused", refusal.message)
    except SecretUnreadable as exc:
        problem = ("secret_unreadable", str(exc))
    except ValueError as exc:
        problem = ("invalid_credential", material.redact(str(exc))[:500])
    now = timezone.now()
    with transaction.atomic():
        if problem is not None:
            code, message = problem
            Credential.objects.filter(pk=credential.pk).update(last_error=f"{code}: {message}"[:2000])
            record(
                context=context,
                action="credential.verification_failed",
                target=credential,
                related=environment,
                outcome="failed",
                message=f"{code}: {message}"[:500],
                after={"error_code": code},
            )
        else:
            Credential.objects.filter(pk=credential.pk).update(verified_at=now, last_error="")
            record(
                context=context,
                action="credential.verified",
                target=credential,
                related=environment,
                after={"verified_at": now},
            )
    if problem is not None:
        raise CredentialVerificationFailed(
            f"The credential could not be verified: {problem[1]}", details={"error_code": problem[0]}
        )
    credential.refresh_from_db()
    return credential


def credential_activate(*, credential: Credential, context: AuditContext) -> Credential:
    """Make a verified pending credential the active one and retire the one it replaces."""
    allowed = {"current": credential.status, "allowed": [CredentialStatus.PENDING_VERIFICATION]}
    if credential.status != CredentialStatus.PENDING_VERIFICATION:
        raise InvalidState("Only a pending credential can be activated.", details=allowed)
    if credential.verified_at is None:
        raise InvalidState("Verify the credential before activating it.", details={**allowed, "verified": False})
    now = timezone.now()
    with transaction.atomic():
        replaced = list(
            Credential.objects.select_for_update().filter(
                environment_id=credential.environment_id, status=CredentialStatus.ACTIVE
            )
        )
        for old in replaced:
            _credential_move(old.pk, current=CredentialStatus.ACTIVE, to=CredentialStatus.RETIRED, retired_at=now)
        moved = _credential_move(
            credential.pk,
            current=CredentialStatus.PENDING_VERIFICATION,
            to=CredentialStatus.ACTIVE,
            require={"verified_at__isnull": False},
            activated_at=now,
            expiry_warned_days=None,
        )
        if not moved:
            raise InvalidState("The credential changed meanwhile; reload and try again.", details=allowed)
        for old in replaced:
            record(
                context=context,
                action="credential.retired",
                target=old,
                related=credential.environment,
                before={"status": CredentialStatus.ACTIVE},
                after={"status": CredentialStatus.RETIRED, "replaced_by": credential.pk},
            )
        record(
            context=context,
            action="credential.activated",
            target=credential,
            related=credential.environment,
            before={"status": CredentialStatus.PENDING_VERIFICATION},
            after={"status": CredentialStatus.ACTIVE, "replaces": [old.pk for old in replaced]},
        )
    credential.refresh_from_db()
    return credential


def credential_discard(*, credential: Credential, context: AuditContext) -> Credential:
    """Retire a pending credential that will not be used (e.g. it failed verification)."""
    with transaction.atomic():
        moved = _credential_move(
            credential.pk,
            current=CredentialStatus.PENDING_VERIFICATION,
            to=CredentialStatus.RETIRED,
            retired_at=timezone.now(),
        )
        if not moved:
            raise InvalidState(
                "Only a pending credential can be discarded.",
                details={"current": credential.status, "allowed": [CredentialStatus.PENDING_VERIFICATION]},
            )
        record(
            context=context,
            action="credential.retired",
            target=credential,
            related=credential.environment,
            before={"status": CredentialStatus.PENDING_VERIFICATION},
            after={"status": CredentialStatus.RETIRED},
        )
    credential.refresh_from_db()
    return credential


def credential_set_expiry(*, credential: Credential, expires_at: datetime | None, context: AuditContext) -> Credential:
    """Correct a credential's recorded expiry (e.g. the secret's end date in Entra ID)."""
    if expires_at is not None and timezone.is_naive(expires_at):
        raise field_error("credential_expires_at", "The expiry needs a time zone.")
    if credential.expires_at == expires_at:
        return credential
    with transaction.atomic():
        before = credential.expires_at
        Credential.objects.filter(pk=credential.pk).update(expires_at=expires_at, expiry_warned_days=None)
        record(
            context=context,
            action="credential.expiry_changed",
            target=credential,
            related=credential.environment,
            before={"expires_at": before},
            after={"expires_at": expires_at},
        )
    credential.refresh_from_db()
    return credential


def credentials_reencrypt(*, context: AuditContext, batch_size: int = 500) -> int:
    """Re-encrypt every stored secret with the newest ALM_ENCRYPTION_KEY (key rotation); returns
    the rows changed. Each batch commits on its own, so a stopped run can simply be started again."""
    changed = 0
    last_id = 0
    while True:
        with transaction.atomic():
            rows = list(
                Credential.objects.select_for_update()
                .filter(pk__gt=last_id)
                .order_by("pk")
                .only("pk", "secret_ciphertext")[:batch_size]
            )
            if not rows:
                break
            moved = []
            for row in rows:
                rotated = rotate_ciphertext(row.secret_ciphertext)
                if rotated != row.secret_ciphertext:
                    row.secret_ciphertext = rotated
                    moved.append(row)
            if moved:
                Credential.objects.bulk_update(moved, ["secret_ciphertext"])
            changed += len(moved)
            last_id = rows[-1].pk
    with transaction.atomic():
        record(context=context, action="credential.keys_rotated", after={"reencrypted": changed})
    return changed
