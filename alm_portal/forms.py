"""What every HTML form of the portal shares: free text is never cut short or dropped without a word.

A browser silently cuts whatever is typed or pasted beyond an input's `maxlength` attribute, so a
12,000-character comment pasted into a 2,000-character field would arrive cut and be stored as if it
were whole. PortalForm therefore renders no `maxlength`: the limit is stated next to the field
(`data-max-length`, shown by templates/_form_fields.html) and enforced on the server, which refuses the
whole form with the limit in words and renders the text back as it was sent, so nothing is lost.

Write-only fields (secrets and key material) are refused the same way but never rendered back.
"""

from __future__ import annotations

from typing import Any

from django import forms

MAX_LENGTH_MESSAGE = "At most %(limit_value)d characters; this has %(show_value)d. Nothing was saved: shorten it."


class PortalForm(forms.Form):
    """Base of the portal's forms: text fields state their limit instead of letting the browser cut."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            bound_text_field(field)


def bound_text_field(field: forms.Field) -> None:
    """Move a text field's limit from the browser's `maxlength` (which cuts silently) to the server."""
    if not isinstance(field, forms.CharField) or isinstance(field.widget, forms.HiddenInput):
        return
    field.widget.attrs.pop("maxlength", None)
    if field.max_length is None:
        return
    field.widget.attrs["data-max-length"] = str(field.max_length)
    # Field.run_validators puts error_messages[code] in place of the validator's own message.
    field.error_messages["max_length"] = MAX_LENGTH_MESSAGE
