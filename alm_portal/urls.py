from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from alm_portal import probes, views
from alm_portal.monitoring import views as monitoring_views

api_v1 = [
    path("", include(("alm_portal.accounts.api.urls", "accounts"), namespace="accounts")),
    path("", include(("environments.api.urls", "environments"), namespace="environments")),
    path("", include(("solutions.api.urls", "solutions"), namespace="solutions")),
    path("", include(("deployments.api.urls", "deployments"), namespace="deployments")),
    path("", include(("alm_portal.notifications.api.urls", "notifications"), namespace="notifications")),
    path("", include(("alm_portal.audit.api.urls", "audit"), namespace="audit")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("accounts/", include("alm_portal.accounts.urls")),
    path("environments/", include("environments.urls")),
    path("solutions/", include("solutions.urls")),
    path("deploy/", include("deployments.urls")),
    path("audit/", include("alm_portal.audit.urls")),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its init script from a URL, so the docs page runs under the strict CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
if settings.ALM_DJANGO_ADMIN:
    # Read-only (alm_portal/readonly_admin.py); off in the demo, whose people are not staff.
    urlpatterns.append(path("admin/", admin.site.urls))

handler500 = "alm_portal.server_errors.server_error"
