"""Input checks shared by the environment and credential services (raise ValidationFailed with
details per field; secret values are never echoed)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.crypto import certificate_facts, check_private_key, encrypt_secret
from alm_portal.errors import ValidationFailed
from environments.choices import CredentialKind, EnvironmentKind
from environments.models import Credential, Environment

# A Microsoft Entra tenant is named by its id (a GUID) or by one of its verified domain names
# (contoso.onmicrosoft.com, contoso.com): a DNS name of at least two labels whose last is letters.
# https://learn.microsoft.com/entra/identity-platform/v2-protocols#endpoints
TENANT_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TENANT_DOMAIN = re.compile(r"^(?=.{4,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
TENANT_MESSAGE = (
    "A tenant id is a GUID (Directory (tenant) id in Entra ID, e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47) "
    "or a verified domain name of the tenant (e.g. contoso.onmicrosoft.com)."
)
MAX_SECRET_LENGTH = 1024
MAX_PEM_LENGTH = 32_768
DESCRIPTION_MAX_LENGTH = 2000


def field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={name: [message]})


def checked_url(value: str, *, purpose: outbound.Purpose, field_name: str) -> str:
    try:
        return outbound.check_url(value.strip(), purpose=purpose).url
    except outbound.OutboundRefused as refusal:
        raise ValidationFailed(refusal.message, details={field_name: [refusal.message]}) from None


def checked_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise field_error("name", "A name of 1 to 100 characters is required.")
    clash = Environment.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise field_error("name", "An environment with this name exists.")
    return name


def checked_tenant(tenant_id: str) -> str:
    tenant_id = (tenant_id or "").strip()
    if not (TENANT_GUID.match(tenant_id) or TENANT_DOMAIN.match(tenant_id)):
        raise field_error("tenant_id", TENANT_MESSAGE)
    return tenant_id


def checked_kind(kind: str) -> str:
    if kind not in EnvironmentKind.values:
        raise field_error("kind", f"Kind must be one of: {', '.join(EnvironmentKind.values)}.")
    return kind


@dataclass(frozen=True)
class CredentialInput:
    client_id: str
    kind: str
    ciphertext: str
    certificate_pem: str
    thumbprint: str
    expires_at: datetime | None


@sensitive_variables()
def checked_credential(
    *,
    client_id: str,
    kind: str,
    client_secret: str | None,
    certificate_pem: str | None,
    private_key_pem: str | None,
    expires_at: datetime | None,
) -> CredentialInput:
    client_id = (client_id or "").strip()
    if not client_id or len(client_id) > 64:
        raise field_error("client_id", "A client id of 1 to 64 characters is required.")
    if kind not in CredentialKind.values:
        raise field_error("credential_type", f"Credential type must be one of: {', '.join(CredentialKind.values)}.")
    if expires_at is not None and timezone.is_naive(expires_at):
        raise field_error("credential_expires_at", "The expiry needs a time zone.")
    if kind == CredentialKind.SECRET:
        if not client_secret or len(client_secret) > MAX_SECRET_LENGTH or client_secret != client_secret.strip():
            raise field_error("client_secret", "A client secret (without surrounding spaces) is required.")
        if certificate_pem or private_key_pem:
            raise field_error("certificate_pem", "Give either a client secret or a certificate, not both.")
        return CredentialInput(client_id, kind, encrypt_secret(client_secret), "", "", expires_at)
    if client_secret:
        raise field_error("client_secret", "Give either a client secret or a certificate, not both.")
    if not certificate_pem or len(certificate_pem) > MAX_PEM_LENGTH:
        raise field_error("certificate_pem", "The certificate (PEM) is required.")
    if not private_key_pem or len(private_key_pem) > MAX_PEM_LENGTH:
        raise field_error("private_key_pem", "The private key (PEM) is required.")
    thumbprint, not_after = certificate_facts(certificate_pem)
    check_private_key(private_key_pem)
    return CredentialInput(
        client_id, kind, encrypt_secret(private_key_pem), certificate_pem.strip(), thumbprint, expires_at or not_after
    )


def credential_facts(credential: Credential) -> dict[str, Any]:
    """What the audit log may know about a credential: never its secret."""
    return {
        "client_id": credential.client_id,
        "kind": credential.kind,
        "status": credential.status,
        "expires_at": credential.expires_at,
        "thumbprint": credential.certificate_thumbprint or None,
    }


ENVIRONMENT_FIELDS = ("name", "url", "kind", "tenant_id", "authority", "team_id", "description", "is_active")


def environment_facts(environment: Environment) -> dict[str, Any]:
    return {name: getattr(environment, name) for name in ENVIRONMENT_FIELDS}


# --- environments ----------------------------------------------------------------------------------------
