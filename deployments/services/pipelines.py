"""Pipelines: create, change, delete. Admin-only (checked by the views that call these)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from alm_portal.accounts.models import Team
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import InvalidState, ValidationFailed
from deployments.models import Pipeline, Promotion
from deployments.services.auditing import delete_recorded, record_changes

NAME_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 2000
_UPDATABLE = frozenset({"name", "team", "development_environment", "description"})


def _facts(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "name": pipeline.name,
        "team": pipeline.team_id,
        "development_environment": pipeline.development_environment_id,
        "description": pipeline.description,
    }


def _errors(*, pipeline: Pipeline | None, name: str, team: Team, development_environment: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["This field is required."]
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = [f"At most {NAME_MAX_LENGTH} characters."]
    elif Pipeline.objects.filter(name__iexact=name).exclude(pk=pipeline.pk if pipeline else 0).exists():
        errors["name"] = [f"A pipeline named {name!r} exists."]
    if development_environment.team_id != team.pk:
        errors["development_environment"] = [f"{development_environment.name} belongs to another team."]
    elif pipeline is not None and pipeline.stages.filter(target_environment=development_environment).exists():
        errors["development_environment"] = [
            f"{development_environment.name} is the target of a stage of this pipeline; a pipeline starts "
            "where its stages do not go."
        ]
    return errors


def pipeline_create(
    *, name: str, team: Team, development_environment: Any, context: AuditContext, description: str = ""
) -> Pipeline:
    """Create a pipeline for `team` starting at its development environment. Event: pipeline.created."""
    name = (name or "").strip()
    errors = _errors(pipeline=None, name=name, team=team, development_environment=development_environment)
    if errors:
        raise ValidationFailed("The pipeline is not valid.", details=errors)
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


def pipeline_update(*, pipeline: Pipeline, context: AuditContext, **changes: Any) -> Pipeline:
    """Change a pipeline's name, description, team or development environment; only the given fields change.

    The team and the development environment stay fixed while solutions are registered on the
    pipeline: a solution is assigned to the pipeline that starts at its home environment and is owned
    by its team, so moving either would silently re-route (or orphan) those solutions.
    Event: pipeline.updated with before/after of the changed fields.
    """
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        details = {name: ["Not a pipeline field."] for name in unknown}
        raise ValidationFailed("Unknown pipeline fields.", details=details)
    try:
        with transaction.atomic():
            Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
            pipeline.refresh_from_db()
            before = _facts(pipeline)
            name = (changes.get("name", pipeline.name) or "").strip()
            team = changes.get("team", pipeline.team)
            development = changes.get("development_environment", pipeline.development_environment)
            errors = _errors(pipeline=pipeline, name=name, team=team, development_environment=development)
            if errors:
                raise ValidationFailed("The pipeline is not valid.", details=errors)
            moves = team.pk != pipeline.team_id or development.pk != pipeline.development_environment_id
            solutions = pipeline.solutions.count()
            if moves and solutions:
                raise InvalidState(
                    f"{solutions} solution(s) are registered on this pipeline; its team and development "
                    "environment cannot change under them.",
                    details={
                        "current": "has_solutions",
                        "allowed": ["no registered solutions"],
                        "solutions": solutions,
                    },
                )
            pipeline.name, pipeline.team, pipeline.development_environment = name, team, development
            if "description" in changes:
                pipeline.description = changes["description"] or ""
            pipeline.save()
            record_changes(
                context=context,
                action="pipeline.updated",
                target=pipeline,
                related=pipeline.team,
                before=before,
                after=_facts(pipeline),
            )
    except IntegrityError:
        raise ValidationFailed("A pipeline with this name exists.", details={"name": ["Already taken."]}) from None
    return pipeline


def pipeline_delete(*, pipeline: Pipeline, context: AuditContext) -> None:
    """Delete a pipeline that was never used, with its stages, windows, freezes and settings.

    Refused (409 invalid_state) once any promotion went through one of its stages, or while solutions
    are registered on it. A promotion names its stage and the approvals, audit events and rollbacks
    refer to it; deleting the pipeline would leave that history pointing nowhere, and archiving would
    keep a pipeline that looks usable. People who want it gone rename it or remove its approvers;
    one that was set up by mistake (no promotions yet) is deleted for good.
    Event: pipeline.deleted with what it was, its stages included.
    """
    with transaction.atomic():
        Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
        promotions = Promotion.objects.filter(stage__pipeline=pipeline).count()
        solutions = pipeline.solutions.count()
        if promotions or solutions:
            reasons = []
            if promotions:
                reasons.append(f"{promotions} promotion(s) went through its stages and keep referring to them")
            if solutions:
                reasons.append(f"{solutions} solution(s) are registered on it")
            raise InvalidState(
                f"The pipeline cannot be deleted: {'; '.join(reasons)}.",
                details={
                    "current": "in_use",
                    "allowed": ["no promotions and no registered solutions"],
                    "promotions": promotions,
                    "solutions": solutions,
                },
            )
        facts = {
            **_facts(pipeline),
            "stages": [
                {"name": name, "order": order, "target_environment": target}
                for name, order, target in pipeline.stages.order_by("order").values_list(
                    "name", "order", "target_environment_id"
                )
            ],
        }
        delete_recorded(context=context, action="pipeline.deleted", row=pipeline, related=pipeline.team, facts=facts)
