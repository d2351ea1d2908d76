"""What Django's error reports (the mail to ADMINS, any handler that renders them) may show of a request.

Django hides POST fields only in views marked with @sensitive_post_parameters. A crash in any other view
would still print a field such as `client_secret` or `token` verbatim, so every POST field whose name looks
secret (the same pattern Django applies to settings) is hidden everywhere.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, QueryDict
from django.views.debug import SafeExceptionReporterFilter


class SecretFieldsReporterFilter(SafeExceptionReporterFilter):
    def get_post_parameters(self, request: HttpRequest | None) -> Any:
        parameters = super().get_post_parameters(request)
        if request is None or not self.is_active(request):
            return parameters
        hidden = [name for name in parameters if self.hidden_settings.search(name)]
        if not hidden:
            return parameters
        cleansed = parameters.copy() if isinstance(parameters, QueryDict) else dict(parameters)
        for name in hidden:
            cleansed[name] = self.cleansed_substitute
        return cleansed
