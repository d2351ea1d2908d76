from django import forms

from alm_portal.accounts.choices import Scope


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="Leave empty for cli-<time>.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ], required=False
    )
    days = forms.IntegerField(min_value=1, max_value=90, initial=30, help_text="1 to 90 days.")
