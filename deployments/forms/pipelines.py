"""HTML forms of the pipeline editor: they check the shape of the input; deployments.services decides.

Every field has a label; times of day are HH:MM on the window's own clock, freeze times are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django import forms

from alm_portal.accounts.models import Team, User
from alm_portal.forms import PortalForm
from deployments.choices import ImportMode
from deployments.services.calendar import FREEZE_REASON_MAX_LENGTH, known_time_zones
from deployments.services.pipelines import DESCRIPTION_MAX_LENGTH
from deployments.services.pipelines import NAME_MAX_LENGTH as PIPELINE_NAME_MAX_LENGTH
from deployments.services.stages import APPROVING_ROLES, MAX_REQUIRED_APPROVALS
from deployments.services.stages import NAME_MAX_LENGTH as STAGE_NAME_MAX_LENGTH
from deployments.settings_documents import MAX_VALUE_LENGTH
from environments.models import Environment

WEEKDAYS = [
    (1, "Monday"),
    (2, "Tuesday"),
    (3, "Wednesday"),
    (4, "Thursday"),
    (5, "Friday"),
    (6, "Saturday"),
    (7, "Sunday"),
]


@lru_cache(maxsize=1)
def time_zone_choices() -> list[tuple[str, str]]:
    """Every IANA zone name the services accept, UTC first, so a window saved through the API with any
    of them can still be edited here."""
    names = sorted(known_time_zones() - {"UTC"})
    return [("UTC", "UTC"), *[(name, name.replace("_", " ")) for name in names]]


class PipelineForm(PortalForm):
    name = forms.CharField(label="Name", max_length=PIPELINE_NAME_MAX_LENGTH)
    team = forms.ModelChoiceField(label="Team", queryset=Team.objects.order_by("name"))
    development_environment = forms.ModelChoiceField(
        label="Development environment",
        queryset=Environment.objects.order_by("name"),
        help_text="Where the pipeline's solutions are made and exported from; it must belong to the team.",
    )
    description = forms.CharField(
        label="Description", required=False, max_length=DESCRIPTION_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2})
    )


class StageForm(PortalForm):
    name = forms.CharField(label="Name", max_length=STAGE_NAME_MAX_LENGTH)
    target_environment = forms.ModelChoiceField(
        label="Target environment",
        queryset=Environment.objects.order_by("name"),
        help_text="Each environment is the target of at most one stage of a pipeline.",
    )
    required_approvals = forms.IntegerField(
        label="Required approvals",
        min_value=0,
        max_value=MAX_REQUIRED_APPROVALS,
        initial=1,
        help_text="Distinct people; at most as many as the approvers named below can provide. 0 starts promotions "
        "without approval (rollbacks still need one; a production target needs the box below ticked).",
    )
    production_without_approval = forms.BooleanField(
        label="Allow production without approval",
        required=False,
        help_text="Only for a production target with 0 required approvals: promotions then start with nobody's "
        "approval, an admin's own included. Changing it is audited.",
    )
    approver_users = forms.ModelMultipleChoiceField(
        label="Approvers (people)",
        required=False,
        queryset=User.objects.filter(is_active=True, role__in=APPROVING_ROLES).order_by("username"),
        widget=forms.CheckboxSelectMultiple,
    )
    approver_teams = forms.ModelMultipleChoiceField(
        label="Approvers (teams: their approvers and admins)",
        required=False,
        queryset=Team.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
    )
    import_mode = forms.ChoiceField(label="Import mode", choices=ImportMode.choices, widget=forms.RadioSelect)
    requires_previous_stage = forms.BooleanField(
        label="Gating: the same version must have succeeded in the previous stage first",
        required=False,
        initial=True,
    )
    overwrite_unmanaged_customizations = forms.BooleanField(label="Overwrite unmanaged customizations", required=False)
    activate_flows_and_plugins = forms.BooleanField(
        label="Activate flows and plug-ins after import", required=False, initial=True
    )
    change_reference_required = forms.BooleanField(label="A change reference is required", required=False)
    change_reference_pattern = forms.CharField(
        label="Change reference pattern (regular expression, optional)", required=False, max_length=200
    )
    backup_reference_required = forms.BooleanField(
        label="A pre-deployment backup reference is required", required=False
    )
    require_source_branch = forms.CharField(
        label="Only versions built from a commit on this branch (optional)",
        required=False,
        max_length=200,
        help_text="A protected branch such as main: a version must be built from source control from a commit on "
        "this branch of its repository, checked when it is requested and again before the import starts. "
        "Empty: any version.",
    )

    def __init__(self, *args: Any, previous_stage: str | None, **kwargs: Any) -> None:
        """`previous_stage`: the name of the stage this one comes after, None when it is the first."""
        super().__init__(*args, **kwargs)
        self.fields["requires_previous_stage"].help_text = (
            f"Here: the version must have succeeded in {previous_stage} first."
            if previous_stage
            else "This is the first stage: there is no previous stage, so gating does not apply to it."
        )


class WindowForm(PortalForm):
    weekdays = forms.TypedMultipleChoiceField(
        label="Days", choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )
    start_time = forms.TimeField(
        label="Opens at (HH:MM)",
        input_formats=["%H:%M"],
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
    )
    end_time = forms.TimeField(
        label="Closes at (HH:MM; not after the opening time means the next day)",
        input_formats=["%H:%M"],
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
    )
    time_zone = forms.ChoiceField(label="Time zone", choices=time_zone_choices, initial="UTC")


class FreezeForm(PortalForm):
    starts_at = forms.DateTimeField(
        label="From (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    ends_at = forms.DateTimeField(
        label="Until (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    reason = forms.CharField(label="Reason", max_length=FREEZE_REASON_MAX_LENGTH)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The form says UTC; a browser's datetime-local value carries no offset.
        for name in ("starts_at", "ends_at"):
            value = cleaned.get(name)
            if isinstance(value, datetime):
                cleaned[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return cleaned


class _SettingsRow(PortalForm):
    """A row of the settings table; the name is its key. A row without a name is removed, so a value typed
    into a row whose name is empty would vanish: that row is refused instead, asking for a name."""

    key: str = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not (cleaned.get(self.key) or "").strip():
            typed = [name for name in self.fields if name != self.key and (cleaned.get(name) or "").strip()]
            if typed:
                self.add_error(self.key, "Give this row a name, or clear the row to remove it; nothing was saved.")
        return cleaned


class EnvironmentVariableRow(_SettingsRow):
    key = "SchemaName"
    SchemaName = forms.CharField(label="Schema name", required=False, max_length=MAX_VALUE_LENGTH)
    Value = forms.CharField(label="Value", required=False, max_length=MAX_VALUE_LENGTH)


class ConnectionReferenceRow(_SettingsRow):
    key = "LogicalName"
    LogicalName = forms.CharField(label="Logical name", required=False, max_length=MAX_VALUE_LENGTH)
    ConnectionId = forms.CharField(label="Connection id", required=False, max_length=MAX_VALUE_LENGTH)
    ConnectorId = forms.CharField(label="Connector id", required=False, max_length=MAX_VALUE_LENGTH)


# A row whose name is left empty is dropped, so the spare rows cost nothing and clearing a name removes it.
EnvironmentVariableRows = forms.formset_factory(EnvironmentVariableRow, extra=2, max_num=500)
ConnectionReferenceRows = forms.formset_factory(ConnectionReferenceRow, extra=2, max_num=500)


class SettingsImportForm(PortalForm):
    file = forms.FileField(
        label="Settings file (JSON made by pac solution create-settings, or exported here)",
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
    )
    etag = forms.CharField(widget=forms.HiddenInput, required=False)
