"""HTML forms of the promotion pages: they validate input; the workflow decides.

Limits are the workflow's own (deployments.policy), so a page refuses exactly what the API refuses.
"""

from __future__ import annotations

from typing import Any

from django import forms

from alm_portal.forms import PortalForm
from deployments.choices import RollbackStrategy
from deployments.policy import BACKUP_REFERENCE_MAX_LENGTH, CHANGE_REFERENCE_MAX_LENGTH, COMMENT_MAX_LENGTH


def _comment(*, label: str = "Comment", required: bool = False, rows: int = 2) -> forms.CharField:
    return forms.CharField(
        label=label, required=required, max_length=COMMENT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": rows})
    )


class PromotionRequestForm(PortalForm):
    stage = forms.ChoiceField(label="Stage")
    # The API calls it `justification`; the page says so too.
    comment = _comment(label="Justification", rows=3)
    change_reference = forms.CharField(label="Change reference", required=False, max_length=CHANGE_REFERENCE_MAX_LENGTH)
    backup_reference = forms.CharField(label="Backup reference", required=False, max_length=BACKUP_REFERENCE_MAX_LENGTH)
    scheduled_for = forms.DateTimeField(
        label="Not before (UTC, optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, stages: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: forms.ChoiceField = self.fields["stage"]  # type: ignore[assignment]
        field.choices = [(str(pk), label) for pk, label in stages]


class DecisionForm(PortalForm):
    comment = _comment(label="Comment (optional)")


class RejectForm(PortalForm):
    comment = _comment(label="Why reject?", required=True)


class CancelForm(PortalForm):
    comment = _comment(label="Why cancel?", required=True)


class RollbackForm(PortalForm):
    strategy = forms.ChoiceField(choices=RollbackStrategy.choices, widget=forms.HiddenInput)
    confirm = forms.CharField(label="Type the solution's unique name to confirm", required=False, max_length=200)
    comment = _comment(label="Justification")
