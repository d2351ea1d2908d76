"""HTML forms of environments. Secret fields never render a value back, not even after an error."""

from __future__ import annotations

from typing import Any

from django import forms

from alm_portal.accounts.models import Team
from alm_portal.forms import PortalForm
from environments.choices import CredentialKind, EnvironmentKind
from environments.services.validation import DESCRIPTION_MAX_LENGTH, MAX_PEM_LENGTH, MAX_SECRET_LENGTH

SECRET_FIELDS = ("client_secret", "certificate_pem", "private_key_pem")


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that is always empty when rendered (for PEM material)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"data-write-only": "true", **(attrs or {})})

    def format_value(self, value: Any) -> None:
        return None


class CredentialFields(PortalForm):
    client_id = forms.CharField(max_length=64, label="Client (application) id")
    credential_type = forms.ChoiceField(choices=CredentialKind.choices, initial=CredentialKind.SECRET)
    client_secret = forms.CharField(
        required=False, strip=False, max_length=MAX_SECRET_LENGTH, widget=forms.PasswordInput(render_value=False)
    )
    certificate_pem = forms.CharField(
        required=False, strip=False, max_length=MAX_PEM_LENGTH, widget=WriteOnlyTextarea, label="Certificate (PEM)"
    )
    private_key_pem = forms.CharField(
        required=False, strip=False, max_length=MAX_PEM_LENGTH, widget=WriteOnlyTextarea, label="Private key (PEM)"
    )
    credential_expires_at = forms.DateTimeField(
        required=False,
        label="Credential expires at (UTC)",
        help_text="From Entra ID; certificates carry their own.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class EnvironmentFields(PortalForm):
    name = forms.CharField(max_length=100)
    url = forms.CharField(
        max_length=300,
        label="Environment URL",
        help_text="https://<org>.crm<N>.dynamics.com, e.g. https://contoso-test.crm4.dynamics.com",
    )
    kind = forms.ChoiceField(choices=EnvironmentKind.choices)
    tenant_id = forms.CharField(
        max_length=64,
        label="Tenant id",
        help_text="The Directory (tenant) id, a GUID, or a verified domain of the tenant (contoso.onmicrosoft.com).",
    )
    authority = forms.CharField(
        max_length=300, required=False, help_text="Empty: https://login.microsoftonline.com/<tenant id>"
    )
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"))
    description = forms.CharField(
        required=False, max_length=DESCRIPTION_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2})
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Active")


class EnvironmentRegisterForm(EnvironmentFields, CredentialFields):
    """Register: the environment and its first credential, in the order people have them at hand:
    what the environment is and where, then how the portal signs in to it."""

    field_order = [*EnvironmentFields.base_fields, *CredentialFields.base_fields]


class EnvironmentEditForm(EnvironmentFields):
    """Edit the environment's own fields; credentials are rotated with CredentialRotateForm."""


class CredentialRotateForm(CredentialFields):
    """A new credential; it becomes active only after it worked against the environment."""
