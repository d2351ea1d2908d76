from django.contrib.auth import views as auth_views
from django.urls import path

from alm_portal.accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("sso/login/", views.sso_login, name="sso-login"),
    path("sso/callback/", views.sso_callback, name="sso-callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.api_tokens, name="api-tokens"),
    path("tokens/<int:pk>/revoke/", views.api_token_revoke, name="api-token-revoke"),
    path("users/", views.user_list, name="user-list"),
    path("users/<int:pk>/sessions/", views.user_sessions, name="user-sessions"),
    path("users/<int:pk>/sessions/end/", views.user_sessions_end, name="user-sessions-end"),
    path("users/<int:pk>/entra/", views.user_entra_link, name="user-entra-link"),
]
