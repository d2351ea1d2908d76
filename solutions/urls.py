"""Pages of the registry; included by the project's urls under `solutions/`."""

from django.urls import path

from solutions import views

app_name = "solutions"

urlpatterns = [
    path("", views.solution_list, name="solution-list"),
    path("<int:pk>/", views.solution_detail, name="solution-detail"),
    path("<int:pk>/export/", views.solution_export, name="solution-export"),
    path("<int:pk>/exports/", views.solution_exports, name="solution-exports"),
    path("<int:pk>/source/", views.solution_source_bind, name="solution-source-bind"),
    path("<int:pk>/source/unbind/", views.solution_source_unbind, name="solution-source-unbind"),
    path("<int:pk>/source/builds/", views.solution_source_build, name="solution-source-build"),
    path("upload/", views.version_upload, name="version-upload"),
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/compare/", views.version_compare, name="version-compare"),
    path("versions/<int:pk>/diff/<int:other_pk>/", views.version_diff, name="version-diff"),
]
