"""The project's URLs plus the registry's pages, until the project includes them itself under solutions/."""

from django.urls import include, path

from alm_portal.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *(pattern for pattern in project_urlpatterns if getattr(pattern, "namespace", None) != "solutions"),
    path("solutions/", include("solutions.urls")),
]
