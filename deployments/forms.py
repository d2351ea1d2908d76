"""HTML forms of the promotion pages: they validate input; the workflow decides."""

from __future__ import annotations

from typing import Any

from django import forms

from deployments.choices import RollbackStrategy


def _comment(*, required: bool = False, rows: int = 2) -> forms.CharField:
    return forms.CharField(
        label="Comment", required=required, max_length=2000, widget=forms.Textarea(attrs={"rows": rows})
    )


class PromotionRequestForm(forms.Form):
    stage = forms.ChoiceField(label="Stage")
    comment = _comment(rows=3)
    change_reference = forms.CharField(label="Change reference", required=False, max_length=100)
    backup_reference = forms.CharField(label="Backup reference", required=False, max_length=300)
    scheduled_for = forms.DateTimeField(
        label="Not before (UTC, optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, stages: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: forms.ChoiceField = self.fields["stage"]  # type: ignore[assignment]
        field.choices = [(str(pk), label) for pk, label in stages]


class DecisionForm(forms.Form):
    comment = _comment()


class CommentRequiredForm(forms.Form):
    comment = _comment(required=True)


class RollbackForm(forms.Form):
    strategy = forms.ChoiceField(choices=RollbackStrategy.choices)
    confirm = forms.CharField(label="Type the solution's unique name to confirm", required=False, max_length=200)
    comment = forms.CharField(label="Comment", required=False, max_length=2000)
