"""Forms of the solution pages: they validate input; the services decide."""

from __future__ import annotations

from typing import Any

from django import forms

from alm_portal.accounts import policy
from alm_portal.accounts.models import Team
from alm_portal.forms import PortalForm
from environments.choices import EnvironmentKind
from environments.models import Environment
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


class SourceBindForm(PortalForm):
    url = forms.CharField(
        max_length=500,
        label="Repository",
        help_text="https://host/owner/repo.git (with a token), ssh://git@host/owner/repo.git or "
        "git@host:owner/repo.git (with a key); a local path only where the portal allows it.",
    )
    branch = forms.CharField(max_length=200, initial="main")
    root_folder = forms.CharField(
        max_length=200, initial="solutions", required=False, help_text="Versions go to <root>/<UniqueName>/src/."
    )
    username = forms.CharField(max_length=100, required=False, help_text="https only; most hosts accept any name.")
    token = forms.CharField(
        max_length=4000,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="https: a personal access token with write access. Left empty, the stored one is kept.",
    )
    ssh_private_key = forms.CharField(
        max_length=20000,
        required=False,
        label="SSH private key",
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="ssh: an OpenSSH private key. Left empty, the stored one is kept.",
    )

    build_environment = forms.ModelChoiceField(
        queryset=Environment.objects.none(),
        required=False,
        help_text="Where a build is imported and exported managed (not the development environment, not "
        "production). Without one, a build registers the unmanaged package only.",
    )

    def __init__(self, *args: Any, solution: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        candidates = Environment.objects.filter(team_id=solution.team_id).exclude(pk=solution.home_environment_id)
        self.fields["build_environment"].queryset = candidates.exclude(kind=EnvironmentKind.PRODUCTION)  # type: ignore[attr-defined]


class SourceBuildForm(PortalForm):
    ref = forms.CharField(max_length=255, label="Branch, tag or commit", initial="main")
