"""The portal's URLs plus the environments pages, until alm_portal/urls.py mounts them."""

from django.urls import include, path

from alm_portal.urls import urlpatterns as portal_urlpatterns

urlpatterns = [*portal_urlpatterns]
if not any(getattr(p, "app_name", None) == "environments" for p in portal_urlpatterns):
    urlpatterns.append(path("environments/", include("environments.urls")))
