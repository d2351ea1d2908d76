"""What deployments registers with the apps below it, once, at start-up (DeploymentsConfig.ready).

The lower apps never import deployments (import-linter holds the layers, docs/architecture.md §2); where
they need deployments to act or to answer, they offer a registration and deployments fills it here.
"""

from __future__ import annotations

from alm_portal.accounts.callbacks import on_user_disabled
from deployments import selectors
from deployments.workflow import approvals_void_for_user
from solutions.providers import DeploymentReads, deployment_reads_register


def register() -> None:
    # A disabled user's approvals no longer count (docs/states.md §2.3), in the same transaction.
    on_user_disabled(approvals_void_for_user)
    # A solution's pages show where it is deployed; a new solution joins the pipeline developing in its home.
    deployment_reads_register(
        DeploymentReads(
            deployed_prefetch=selectors.solution_deployments_prefetch,
            deployed=selectors.solution_deployed,
            pipelines_developing_in=selectors.pipelines_developing_in,
        )
    )
