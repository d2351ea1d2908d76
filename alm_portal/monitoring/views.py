"""GET /metrics: Prometheus text for a scraper, never for the public.

Who may read it: a scraper presenting `Authorization: Bearer <ALM_METRICS_TOKEN>` (a static secret
set only in the scraper's configuration), an admin's or auditor's API token with the read scope,
or a signed-in admin or auditor. Anyone else gets 401 (no credentials) or 403; with no
ALM_METRICS_TOKEN set, only the people above can read it.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from alm_portal.accounts import policy
from alm_portal.accounts import services as accounts
from alm_portal.monitoring.exposition import CONTENT_TYPE, render
from alm_portal.monitoring.selectors import metric_families


def _refusal(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="alm-portal-metrics"'
    return response


def _bearer_allowed(presented: str) -> bool | None:
    """True/False for a recognised credential; None when it is neither the metrics token nor an API token."""
    configured = settings.ALM_METRICS_TOKEN
    if configured and hmac.compare_digest(presented.encode(), configured.encode()):
        return True
    try:
        token = accounts.api_token_authenticate(presented)
    except accounts.TokenRejected:
        return None
    return policy.reads_metrics(user=token.user, token=token)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return _refusal(401, "Send 'Authorization: Bearer <token>'.")
        allowed = _bearer_allowed(presented.strip())
        if allowed is None:
            return _refusal(401, "The token is not valid.")
    else:
        user = request.user
        if not user.is_authenticated:
            return _refusal(401, "Authentication required.")
        allowed = policy.reads_metrics(user=user, token=None)
    if not allowed:
        return _refusal(403, "Metrics are for admins, auditors and the configured scraper.")
    return HttpResponse(render(metric_families()), content_type=CONTENT_TYPE)
