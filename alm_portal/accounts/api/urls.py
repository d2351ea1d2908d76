from django.urls import path

from alm_portal.accounts.api import views

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("tokens/", views.ApiTokenListView.as_view(), name="token-list"),
    path("tokens/<int:pk>/revoke/", views.ApiTokenRevokeView.as_view(), name="token-revoke"),
]
