"""What apps above accounts ask to run when something happens to a user, registered at start-up.

accounts sits below the apps that keep state per user (deployments keeps approvals), so it cannot call
them by name. Each such app registers a callback from its AppConfig.ready(); accounts' service runs them
in its own transaction, in registration order, so a callback that raises rolls the whole change back.
Explicit calls rather than Django signals: what runs is listed here and cannot be missed by a reader.
"""

from __future__ import annotations

from typing import Protocol

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext


class UserDisabledCallback(Protocol):
    """Runs inside user_disable's transaction, after the user is marked inactive; writes its own audit events."""

    def __call__(self, *, user: User, context: AuditContext) -> object: ...


_user_disabled: list[UserDisabledCallback] = []


def on_user_disabled(callback: UserDisabledCallback) -> None:
    """Run `callback` whenever a user is disabled (registering the same callback twice runs it once)."""
    if callback not in _user_disabled:
        _user_disabled.append(callback)


def user_disabled_run(*, user: User, context: AuditContext) -> None:
    """Run every "a user was disabled" callback, in registration order (called by services.user_disable)."""
    for callback in tuple(_user_disabled):
        callback(user=user, context=context)
