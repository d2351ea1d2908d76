"""Forms of the solution pages: they validate input; the services decide."""

from __future__ import annotations

from typing import Any

from django import forms

from alm_portal.accounts import policy
from alm_portal.accounts.models import Team
from alm_portal.forms import PortalForm
from solutions.choices import Bump


class VersionUploadForm(PortalForm):
    file = forms.FileField(help_text="An exported solution zip, managed or unmanaged.")
    release_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, max_length=20000)
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), required=False, help_text="Only needed for a solution the portal does not know."
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        visible = policy.team_ids_visible_to(user)
        teams = Team.objects.all() if visible is None else Team.objects.filter(pk__in=visible)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]


class ExportForm(PortalForm):
    bump = forms.ChoiceField(choices=Bump.choices, initial=Bump.REVISION)


class CompareForm(PortalForm):
    against = forms.IntegerField(min_value=1)
