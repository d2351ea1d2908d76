"""What deployments registers with the apps below it, once, at start-up (DeploymentsConfig.ready).

The lower apps never import deployments (import-linter holds the layers, docs/architecture.md §2); where
they need deployments to act or to answer, they offer a registration and deployments fills it here.
"""

from __future__ import annotations

from alm_portal.accounts.callbacks import on_user_disabled
from deployments.workflow import approvals_void_for_user


def register() -> None:
    # A disabled user's approvals no longer count (docs/states.md §2.3), in the same transaction.
    on_user_disabled(approvals_void_for_user)
