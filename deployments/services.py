"""Use cases for pipelines and stages. The only code that writes them; every change is audited."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import ValidationFailed
from deployments.choices import ImportMode
from deployments.models import Pipeline, Stage


def _stage_facts(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "order": stage.order,
        "target_environment": stage.target_environment_id,
        "required_approvals": stage.required_approvals,
        "import_mode": stage.import_mode,
        "requires_previous_stage": stage.requires_previous_stage,
        "approver_users": sorted(stage.approver_users.values_list("pk", flat=True)),
        "approver_teams": sorted(stage.approver_teams.values_list("pk", flat=True)),
    }


def pipeline_create(
    *, name: str, team: Team, development_environment: Any, context: AuditContext, description: str = ""
) -> Pipeline:
    """Create a pipeline for `team` starting at its development environment."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("A pipeline needs a name.", details={"name": ["This field is required."]})
    if development_environment.team_id != team.pk:
        raise ValidationFailed(
            "The development environment must belong to the pipeline's team.",
            details={"development_environment": [f"{development_environment.name} belongs to another team."]},
        )
    try:
        with transaction.atomic():
            pipeline = Pipeline.objects.create(
                name=name, team=team, development_environment=development_environment, description=description
            )
            record(
                context=context,
                action="pipeline.created",
                target=pipeline,
                related=team,
                after={"name": name, "development_environment": development_environment.pk},
            )
    except IntegrityError:
        raise ValidationFailed("A pipeline with this name exists.", details={"name": ["Already taken."]}) from None
    return pipeline


def stage_add(
    *,
    pipeline: Pipeline,
    name: str,
    target_environment: Any,
    context: AuditContext,
    required_approvals: int = 1,
    approver_users: Iterable[User] = (),
    approver_teams: Iterable[Team] = (),
    import_mode: str = ImportMode.UPGRADE,
    requires_previous_stage: bool = True,
) -> Stage:
    """Append a stage to `pipeline`; its order is after the last one."""
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["This field is required."]
    if import_mode not in ImportMode.values:
        errors["import_mode"] = [f"Must be one of {', '.join(ImportMode.values)}."]
    if not 0 <= required_approvals <= 10:
        errors["required_approvals"] = ["Must be between 0 and 10."]
    if target_environment.pk == pipeline.development_environment_id:
        errors["target_environment"] = ["A stage cannot target the pipeline's development environment."]
    if pipeline.stages.filter(name=name).exists():
        errors["name"] = [f"The pipeline already has a stage named {name!r}."]
    if errors:
        raise ValidationFailed("The stage is not valid.", details=errors)
    with transaction.atomic():
        last = pipeline.stages.order_by("-order").values_list("order", flat=True).first()
        stage = Stage.objects.create(
            pipeline=pipeline,
            name=name,
            order=(last or 0) + 1,
            target_environment=target_environment,
            required_approvals=required_approvals,
            import_mode=import_mode,
            requires_previous_stage=requires_previous_stage,
        )
        stage.approver_users.set(list(approver_users))
        stage.approver_teams.set(list(approver_teams))
        record(context=context, action="stage.created", target=stage, related=pipeline, after=_stage_facts(stage))
    return stage
