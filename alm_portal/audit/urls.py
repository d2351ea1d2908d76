from django.urls import path

from alm_portal.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.audit_timeline, name="timeline"),
    path("verify/", views.audit_verify, name="verify"),
    path("verification/", views.audit_verification, name="verification"),
]
