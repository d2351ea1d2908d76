"""Pages of environments (mounted at /environments/ by alm_portal/urls.py)."""

from django.urls import path

from environments import views

app_name = "environments"

urlpatterns = [
    path("", views.environment_list, name="list"),
    path("new/", views.environment_register, name="register"),
    path("<int:pk>/", views.environment_detail, name="detail"),
    path("<int:pk>/edit/", views.environment_edit, name="edit"),
    path("<int:pk>/rotate/", views.credential_rotate, name="rotate"),
    path("<int:pk>/check/", views.environment_check, name="check"),
    path("<int:pk>/sync/", views.environment_sync, name="sync"),
]
