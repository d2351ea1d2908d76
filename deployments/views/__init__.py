"""The deployments pages, one module per area: promotions, approvals, pipelines, a stage's settings,
pre-flight preview, delivery metrics and the dashboard's live parts."""

from deployments.views.approvals import approvals_waiting_for
from deployments.views.dashboard import running_job_ids

__all__ = ["approvals_waiting_for", "running_job_ids"]
