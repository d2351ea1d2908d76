"""Every job kind of the portal gathered in one enum, for code that reads across all apps (the metrics, checks
of the documentation). Each kind belongs to the app that registers it with the job engine; this adds none."""

from django.db import models

from alm_portal.audit_verification.choices import AuditJobKind
from alm_portal.jobs.choices import JOB_TRANSITIONS, JobStatus
from deployments.choices import DeploymentJobKind
from environments.choices import EnvironmentJobKind
from solutions.choices import SolutionJobKind

__all__ = ["JOB_TRANSITIONS", "JobKind", "JobStatus"]


class JobKind(models.TextChoices):
    EXPORT = SolutionJobKind.EXPORT.value, SolutionJobKind.EXPORT.label
    SOURCE_COMMIT = SolutionJobKind.SOURCE_COMMIT.value, SolutionJobKind.SOURCE_COMMIT.label
    SOURCE_BUILD = SolutionJobKind.SOURCE_BUILD.value, SolutionJobKind.SOURCE_BUILD.label
    PREFLIGHT = DeploymentJobKind.PREFLIGHT.value, DeploymentJobKind.PREFLIGHT.label
    IMPORT = DeploymentJobKind.IMPORT.value, DeploymentJobKind.IMPORT.label
    UNINSTALL = DeploymentJobKind.UNINSTALL.value, DeploymentJobKind.UNINSTALL.label
    INVENTORY_SYNC = EnvironmentJobKind.INVENTORY_SYNC.value, EnvironmentJobKind.INVENTORY_SYNC.label
    HEALTH_CHECK = EnvironmentJobKind.HEALTH_CHECK.value, EnvironmentJobKind.HEALTH_CHECK.label
    HOLDING_CLEANUP = DeploymentJobKind.HOLDING_CLEANUP.value, DeploymentJobKind.HOLDING_CLEANUP.label
    AUDIT_VERIFY = AuditJobKind.AUDIT_VERIFY.value, AuditJobKind.AUDIT_VERIFY.label
