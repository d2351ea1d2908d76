from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from alm_portal.accounts import selectors, services
from alm_portal.accounts.backends import LOCKED_OUT_ATTRIBUTE
from alm_portal.accounts.choices import Scope
from alm_portal.forms import PortalForm


class ApiTokenForm(PortalForm):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="Leave empty to name it after the time it is made (cli-2026-01-31T09:30:00.000000Z).",
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ], required=False
    )
    days = forms.IntegerField(min_value=1, max_value=90, initial=30, help_text="1 to 90 days.")


class EntraLinkForm(PortalForm):
    """An admin links a local account to an Entra ID identity (both GUIDs; the service checks them)."""

    tenant_id = forms.CharField(max_length=64, label="Tenant id", help_text="The directory (tenant) id, a GUID.")
    object_id = forms.CharField(
        max_length=64,
        label="Object id",
        help_text="The user's object id in that tenant, a GUID (a refused sign-in names both).",
    )


class SignInForm(AuthenticationForm):
    """Django's password form; when the lockout refuses (or this failure started it) it says so, in words
    that are the same whether or not the username exists."""

    def clean(self) -> dict[str, object]:
        try:
            return super().clean()
        except ValidationError:
            username = self.cleaned_data.get("username") or ""
            client_ip = getattr(self.request, "client_ip", None)
            if getattr(self.request, LOCKED_OUT_ATTRIBUTE, False) or (
                username and selectors.sign_in_locked(username=username, client_ip=client_ip)
            ):
                raise ValidationError(services.sign_in_locked_message(), code="locked_out") from None
            raise
