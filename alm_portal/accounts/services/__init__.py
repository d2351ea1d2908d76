"""Use cases for people, teams and API tokens. The only code that writes these tables.

Every change writes one audit event in the same transaction (docs/audit.md). One module per subject:
tokens (API tokens), users (accounts, their role and identity, disabling), teams (membership), and
sign_in (sessions, failed and refused sign-ins). Callers import from here.
"""

from alm_portal.accounts.policy import ScopeNotAllowed as ScopeNotAllowed  # raised by the services, named here
from alm_portal.accounts.services.sign_in import (
    SIGN_IN_LOCKED_MESSAGE,
    session_signed_in,
    session_signed_out,
    sign_in_failed,
    sign_in_locked_message,
    sso_sign_in_failed,
    sso_sign_in_refused,
)
from alm_portal.accounts.services.teams import team_add_member, team_create, team_remove_member, user_sync_teams
from alm_portal.accounts.services.tokens import (
    EXPOSED_IN_URL,
    LAST_USED_RESOLUTION,
    TOKEN_PREFIX,
    TokenRejected,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    api_token_revoke_exposed,
)
from alm_portal.accounts.services.users import (
    user_create,
    user_disable,
    user_enable,
    user_end_sessions,
    user_get,
    user_link_entra_identity,
    user_set_display_name,
    user_set_password,
    user_set_role,
)
from alm_portal.errors import ValidationFailed as ValidationFailed  # raised by the services, named here
from alm_portal.log_redaction import TOKEN_TEXT_PATTERN as TOKEN_TEXT_PATTERN  # token text anywhere in a text

__all__ = [
    "EXPOSED_IN_URL",
    "LAST_USED_RESOLUTION",
    "SIGN_IN_LOCKED_MESSAGE",
    "TOKEN_PREFIX",
    "TOKEN_TEXT_PATTERN",
    "ScopeNotAllowed",
    "TokenRejected",
    "ValidationFailed",
    "api_token_authenticate",
    "api_token_create",
    "api_token_revoke",
    "api_token_revoke_exposed",
    "session_signed_in",
    "session_signed_out",
    "sign_in_failed",
    "sign_in_locked_message",
    "sso_sign_in_failed",
    "sso_sign_in_refused",
    "team_add_member",
    "team_create",
    "team_remove_member",
    "user_create",
    "user_disable",
    "user_enable",
    "user_end_sessions",
    "user_get",
    "user_link_entra_identity",
    "user_set_display_name",
    "user_set_password",
    "user_set_role",
    "user_sync_teams",
]
