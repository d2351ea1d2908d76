"""The demo's environments and pipelines (DESIGN section 8), registered through the services against
a running emulator. Idempotent: what exists is left as it is."""

from __future__ import annotations

from typing import Any

from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from deployments.models import Pipeline
from deployments.services import pipeline_create, stage_add
from environments.models import Environment
from environments.services.registry import environment_create

_KIND_BY_SUFFIX = {"-dev": "development", "-test": "test", "-prod": "production"}


def _kind(org: str) -> str:
    return next((kind for suffix, kind in _KIND_BY_SUFFIX.items() if org.endswith(suffix)), "other")


def seed_demo_environments(emulator: dict[str, Any]) -> list[Environment]:
    """Register every emulator org as an environment of the team its name starts with."""
    context = AuditContext.system()
    registered = []
    for org, details in sorted(emulator["orgs"].items()):
        environment = Environment.objects.filter(name=org).first()
        if environment is None:
            team = Team.objects.get(slug=org.split("-")[0])
            environment = environment_create(
                name=org,
                url=details["url"],
                kind=_kind(org),
                tenant_id=emulator["tenant_id"],
                authority=emulator["authority"],
                team=team,
                client_id=details["client_id"],
                credential_type="secret",
                client_secret=details["client_secret"],
                description=f"Emulated Dataverse organisation {org}.",
                context=context,
            )
        registered.append(environment)
    return registered


def seed_demo_pipelines() -> list[Pipeline]:
    """Contoso: contoso-dev → test (1 approval) → prod (2 approvals); Fabrikam: its dev environment."""
    context = AuditContext.system()
    approvers = list(User.objects.filter(username__in=["approver", "approver2"]))
    pipelines = []
    contoso = Pipeline.objects.filter(name="Contoso").first()
    if contoso is None:
        contoso = pipeline_create(
            name="Contoso",
            team=Team.objects.get(slug="contoso"),
            development_environment=Environment.objects.get(name="contoso-dev"),
            context=context,
        )
        for stage_name, org, approvals in (("test", "contoso-test", 1), ("prod", "contoso-prod", 2)):
            stage_add(
                pipeline=contoso,
                name=stage_name,
                target_environment=Environment.objects.get(name=org),
                required_approvals=approvals,
                approver_users=approvers,
                context=context,
            )
    pipelines.append(contoso)
    fabrikam = Pipeline.objects.filter(name="Fabrikam").first()
    if fabrikam is None:
        fabrikam = pipeline_create(
            name="Fabrikam",
            team=Team.objects.get(slug="fabrikam"),
            development_environment=Environment.objects.get(name="fabrikam-dev"),
            context=context,
        )
    pipelines.append(fabrikam)
    return pipelines
