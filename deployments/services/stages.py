"""Stages of a pipeline: add, change (target, approvers, policy), delete, reorder.

Admin-only (checked by the views that call these); every change is audited in its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record
from alm_portal.errors import InvalidState, ValidationFailed
from deployments.choices import ImportMode, PromotionStatus
from deployments.models import Pipeline, Promotion, Stage
from deployments.services.auditing import record_changes
from deployments.workflow import promotions_retarget
from environments.choices import EnvironmentKind
from solutions.services.bindings import valid_ref

NAME_MAX_LENGTH = 50
MAX_REQUIRED_APPROVALS = 10
# Roles whose people can approve (deployments.policy.decision_refusal); naming anyone else does nothing.
APPROVING_ROLES = account_policy.DECIDING_ROLES
# Promotions that are not over: bound to their stage's target, approvals and gating.
IN_FLIGHT = (
    PromotionStatus.PENDING_APPROVAL,
    PromotionStatus.APPROVED,
    PromotionStatus.SCHEDULED,
    PromotionStatus.QUEUED,
    PromotionStatus.RUNNING,
)
POLICY_FIELDS = (
    "required_approvals",
    "production_without_approval",
    "requires_previous_stage",
    "import_mode",
    "overwrite_unmanaged_customizations",
    "activate_flows_and_plugins",
    "change_reference_required",
    "change_reference_pattern",
    "backup_reference_required",
    "require_source_branch",
)
_UPDATABLE = frozenset({"name", "target_environment", "approver_users", "approver_teams", *POLICY_FIELDS})
# Orders are moved out of the way first because the (pipeline, order) unique constraint is checked
# row by row; no pipeline has anywhere near this many stages.
_ORDER_PARKING_OFFSET = 10_000


def _facts(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "order": stage.order,
        "target_environment": stage.target_environment_id,
        **{name: getattr(stage, name) for name in POLICY_FIELDS},
        "approver_users": sorted(stage.approver_users.values_list("pk", flat=True)),
        "approver_teams": sorted(stage.approver_teams.values_list("pk", flat=True)),
    }


def eligible_approvers(*, users: Iterable[User], teams: Iterable[Team]) -> list[User]:
    """The distinct active people who could approve when these users and teams are named: approvers and
    admins, directly or as team members (the same people deployments.policy lets decide)."""
    user_ids = [user.pk for user in users]
    team_ids = [team.pk for team in teams]
    if not user_ids and not team_ids:
        return []
    return list(
        User.objects.filter(Q(pk__in=user_ids) | Q(memberships__team_id__in=team_ids))
        .filter(is_active=True, role__in=APPROVING_ROLES)
        .distinct()
        .order_by("username")
    )


def _approver_errors(*, required_approvals: int, users: Sequence[User], teams: Sequence[Team]) -> dict[str, list[str]]:
    """Named people must be able to approve, and enough of them to reach the required count: a stage
    that can never collect its approvals would hold every promotion forever."""
    errors: dict[str, list[str]] = {}
    cannot = [user.username for user in users if not account_policy.decides_promotions(user)]
    if cannot:
        errors["approver_users"] = [
            f"Only active approvers and admins can approve; {', '.join(sorted(cannot))} cannot."
        ]
        return errors
    eligible = len(eligible_approvers(users=users, teams=teams))
    if required_approvals > eligible:
        errors["required_approvals"] = [
            f"{required_approvals} approval(s) required but only {eligible} person(s) named on the stage can "
            "approve; name more approvers or require fewer approvals."
        ]
    return errors


def production_approval_errors(
    *, target_environment: Any, required_approvals: Any, production_without_approval: bool
) -> dict[str, list[str]]:
    """A production target needs at least one approval, unless an admin explicitly allowed none (the
    stage's production_without_approval, audited with its other policy): otherwise an admin's own
    request would be approved by "system" with nobody else involved."""
    if (
        getattr(target_environment, "kind", None) == EnvironmentKind.PRODUCTION
        and required_approvals == 0
        and not production_without_approval
    ):
        return {
            "required_approvals": [
                f"{target_environment.name} is a production environment: require at least one approval, or tick "
                "'Allow production without approval' to say on purpose that none is needed."
            ]
        }
    return {}


def _stage_errors(
    *,
    pipeline: Pipeline,
    name: str,
    target_environment: Any,
    required_approvals: Any,
    import_mode: str,
    change_reference_pattern: str,
    production_without_approval: bool = False,
    require_source_branch: str = "",
    exclude_pk: int | None = None,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    others = pipeline.stages.exclude(pk=exclude_pk or 0)
    if not name:
        errors["name"] = ["This field is required."]
    elif len(name) > NAME_MAX_LENGTH:
        errors["name"] = [f"At most {NAME_MAX_LENGTH} characters."]
    elif others.filter(name__iexact=name).exists():
        errors["name"] = [f"The pipeline already has a stage named {name!r}."]
    if import_mode not in ImportMode.values:
        errors["import_mode"] = [f"Must be one of {', '.join(ImportMode.values)}."]
    if (
        isinstance(required_approvals, bool)
        or not isinstance(required_approvals, int)
        or not 0 <= required_approvals <= MAX_REQUIRED_APPROVALS
    ):
        errors["required_approvals"] = [f"Must be between 0 and {MAX_REQUIRED_APPROVALS}."]
    else:
        errors |= production_approval_errors(
            target_environment=target_environment,
            required_approvals=required_approvals,
            production_without_approval=production_without_approval,
        )
    if target_environment.pk == pipeline.development_environment_id:
        errors["target_environment"] = ["A stage cannot target the pipeline's development environment."]
    else:
        # One stage per environment: two stages importing into one environment would make gating and
        # "what is installed where" ambiguous.
        taken = others.filter(target_environment=target_environment).first()
        if taken is not None:
            errors["target_environment"] = [f"{target_environment.name} is already the target of stage {taken.name!r}."]
    if len(change_reference_pattern) > 200:
        errors["change_reference_pattern"] = ["At most 200 characters."]
    else:
        try:
            re.compile(change_reference_pattern)
        except re.error as exc:
            errors["change_reference_pattern"] = [f"Not a regular expression: {exc}."]
    if require_source_branch and (len(require_source_branch) > 200 or not valid_ref(require_source_branch)):
        errors["require_source_branch"] = [f"{require_source_branch!r} is not a valid branch name."]
    return errors


def stage_add(
    *,
    pipeline: Pipeline,
    name: str,
    target_environment: Any,
    context: AuditContext,
    required_approvals: int = 1,
    production_without_approval: bool = False,
    approver_users: Iterable[User] = (),
    approver_teams: Iterable[Team] = (),
    import_mode: str = ImportMode.UPGRADE,
    requires_previous_stage: bool = True,
    overwrite_unmanaged_customizations: bool = False,
    activate_flows_and_plugins: bool = True,
    change_reference_required: bool = False,
    change_reference_pattern: str = "",
    backup_reference_required: bool = False,
    require_source_branch: str = "",
) -> Stage:
    """Append a stage to `pipeline`; its order is after the last one. Event: stage.created.

    A stage may be added before anyone is named to approve it (the pages then say so); once approvers
    are named, there must be enough of them for the required count.
    """
    name = (name or "").strip()
    change_reference_pattern = (change_reference_pattern or "").strip()
    require_source_branch = (require_source_branch or "").strip()
    users, teams = list(approver_users), list(approver_teams)
    errors = _stage_errors(
        pipeline=pipeline,
        name=name,
        target_environment=target_environment,
        required_approvals=required_approvals,
        import_mode=import_mode,
        change_reference_pattern=change_reference_pattern,
        production_without_approval=production_without_approval,
        require_source_branch=require_source_branch,
    )
    if not errors and (users or teams):
        errors = _approver_errors(required_approvals=required_approvals, users=users, teams=teams)
    if errors:
        raise ValidationFailed("The stage is not valid.", details=errors)
    try:
        with transaction.atomic():
            Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
            last = pipeline.stages.order_by("-order").values_list("order", flat=True).first()
            stage = Stage.objects.create(
                pipeline=pipeline,
                name=name,
                order=(last or 0) + 1,
                target_environment=target_environment,
                required_approvals=required_approvals,
                production_without_approval=production_without_approval,
                import_mode=import_mode,
                requires_previous_stage=requires_previous_stage,
                overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
                activate_flows_and_plugins=activate_flows_and_plugins,
                change_reference_required=change_reference_required,
                change_reference_pattern=change_reference_pattern,
                backup_reference_required=backup_reference_required,
                require_source_branch=require_source_branch,
            )
            stage.approver_users.set(users)
            stage.approver_teams.set(teams)
            record(context=context, action="stage.created", target=stage, related=pipeline, after=_facts(stage))
    except IntegrityError:
        raise _taken_meanwhile() from None
    return stage


def _taken_meanwhile() -> ValidationFailed:
    """Two admins saved at once and the unique constraints caught what the checks above could not."""
    return ValidationFailed(
        "Another stage of the pipeline took this name or target environment meanwhile; reload and try again.",
        details={"name": ["Maybe taken."], "target_environment": ["Maybe taken."]},
    )


def stage_update(*, stage: Stage, context: AuditContext, **changes: Any) -> Stage:
    """Change a stage's name, target, approvers or policy; only the given fields change.

    Naming approvers or changing the required count is checked against each other (enough eligible
    people). A new target environment re-binds every promotion of the stage that has not started:
    their approvals (bound to the old target) are voided, pre-flight runs again and approved ones go
    back to waiting for approval (deployments.workflow.promotions_retarget). Refused while an import
    into the stage is running. Event: stage.updated with before/after of the changed fields.
    """
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise ValidationFailed("Unknown stage fields.", details={name: ["Not a stage field."] for name in unknown})
    try:
        return _stage_update(stage=stage, context=context, changes=changes)
    except IntegrityError:
        raise _taken_meanwhile() from None


def _stage_update(*, stage: Stage, context: AuditContext, changes: dict[str, Any]) -> Stage:
    with transaction.atomic():
        # Lock, then re-read into the caller's instance, so they see what was saved.
        Stage.objects.select_for_update().filter(pk=stage.pk).first()
        stage.refresh_from_db()
        before = _facts(stage)
        name = (changes.get("name", stage.name) or "").strip()
        target = changes.get("target_environment", stage.target_environment)
        pattern = (changes.get("change_reference_pattern", stage.change_reference_pattern) or "").strip()
        required = changes.get("required_approvals", stage.required_approvals)
        branch = (changes.get("require_source_branch", stage.require_source_branch) or "").strip()
        errors = _stage_errors(
            pipeline=stage.pipeline,
            name=name,
            target_environment=target,
            required_approvals=required,
            import_mode=changes.get("import_mode", stage.import_mode),
            change_reference_pattern=pattern,
            production_without_approval=changes.get("production_without_approval", stage.production_without_approval),
            require_source_branch=branch,
            exclude_pk=stage.pk,
        )
        if not errors and {"approver_users", "approver_teams", "required_approvals"} & set(changes):
            errors = _approver_errors(
                required_approvals=required,
                users=list(changes.get("approver_users", stage.approver_users.all())),
                teams=list(changes.get("approver_teams", stage.approver_teams.all())),
            )
        if errors:
            raise ValidationFailed("The stage is not valid.", details=errors)
        retarget = target.pk != stage.target_environment_id
        if retarget and stage.promotions.filter(status=PromotionStatus.RUNNING).exists():
            raise InvalidState(
                "An import into the stage's target is running; change the target once it has finished.",
                details={"current": PromotionStatus.RUNNING, "allowed": ["no running promotion"]},
            )
        stage.name, stage.target_environment, stage.change_reference_pattern = name, target, pattern
        stage.require_source_branch = branch
        for field in POLICY_FIELDS:
            if field in changes and field not in ("change_reference_pattern", "require_source_branch"):
                setattr(stage, field, changes[field])
        stage.save()
        if "approver_users" in changes:
            stage.approver_users.set(list(changes["approver_users"]))
        if "approver_teams" in changes:
            stage.approver_teams.set(list(changes["approver_teams"]))
        if retarget:
            promotions_retarget(stage=stage, context=context)
        record_changes(
            context=context,
            action="stage.updated",
            target=stage,
            related=stage.pipeline,
            before=before,
            after=_facts(stage),
        )
    return stage


def stage_delete(*, stage: Stage, context: AuditContext) -> None:
    """Delete a stage nobody ever promoted into; the stages after it move up one place.

    Refused (409 invalid_state) while promotions into it are in flight, and also once it has any
    history: a promotion, its approvals and its audit events name the stage, and a rollback needs it.
    Deactivating instead would leave a stage that still counts for gating and for the release matrix
    without taking promotions, which is more surprising than a refusal; to stop using such a stage,
    move it last and turn off gating on the stage after it, or retire the whole pipeline's use.
    Event: stage.deleted with what it was (its order included).
    """
    with transaction.atomic():
        Pipeline.objects.select_for_update().filter(pk=stage.pipeline_id).first()
        in_flight = stage.promotions.filter(status__in=IN_FLIGHT).count()
        if in_flight:
            raise InvalidState(
                f"{in_flight} promotion(s) into this stage are in flight; cancel them or let them finish first.",
                details={"current": "promotions_in_flight", "allowed": ["no promotions in flight"]},
            )
        history = stage.promotions.count()
        if history:
            raise InvalidState(
                f"{history} promotion(s) went into this stage; it stays so their history keeps its meaning.",
                details={"current": "has_history", "allowed": ["a stage without promotions"], "promotions": history},
            )
        pipeline, order = stage.pipeline, stage.order
        facts, reference = _facts(stage), ObjectRef.of(stage)
        stage.delete()
        # Orders stay contiguous (1..n): the stages after the gap move up, in two steps (see the offset).
        later = Stage.objects.filter(pipeline=pipeline, order__gt=order)
        later.update(order=F("order") + _ORDER_PARKING_OFFSET)
        Stage.objects.filter(pipeline=pipeline, order__gt=_ORDER_PARKING_OFFSET).update(
            order=F("order") - _ORDER_PARKING_OFFSET - 1
        )
        # Last, after the writes: the audit chain's lock is then held only until commit.
        record(context=context, action="stage.deleted", target=reference, related=pipeline, before=facts)


def stage_reorder(*, pipeline: Pipeline, stage_ids: Sequence[int], context: AuditContext) -> list[Stage]:
    """Put the pipeline's stages in the given order (every stage id exactly once); orders become 1..n.

    Gating (`requires_previous_stage`) always refers to the stage just before, so a new order changes
    what each stage waits for; the first stage never waits (it has no previous stage). Promotions in
    flight were gated and approved under the current order, so reordering waits until none is in
    flight (409 invalid_state). Event: pipeline.stages_reordered with the old and new order (names).
    """
    ids = [int(pk) for pk in stage_ids]
    with transaction.atomic():
        Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
        stages = {stage.pk: stage for stage in pipeline.stages.order_by("order")}
        if len(ids) != len(set(ids)) or set(ids) != set(stages):
            raise ValidationFailed(
                "Give every stage of the pipeline exactly once.",
                details={"stages": [f"Expected each of {sorted(stages)} once, got {ids}."]},
            )
        before = [stage.name for stage in stages.values()]
        after = [stages[pk].name for pk in ids]
        if before == after:
            return list(pipeline.stages.order_by("order"))
        in_flight = Promotion.objects.filter(stage__pipeline=pipeline, status__in=IN_FLIGHT).count()
        if in_flight:
            raise InvalidState(
                f"{in_flight} promotion(s) of this pipeline are in flight and were gated under the current "
                "order; reorder once they have finished or been cancelled.",
                details={"current": "promotions_in_flight", "allowed": ["no promotions in flight"]},
            )
        Stage.objects.filter(pipeline=pipeline).update(order=F("order") + _ORDER_PARKING_OFFSET)
        for position, pk in enumerate(ids, start=1):
            Stage.objects.filter(pk=pk).update(order=position)
        gated = [stages[pk].name for pk in ids[1:] if stages[pk].requires_previous_stage]
        record(
            context=context,
            action="pipeline.stages_reordered",
            target=pipeline,
            related=pipeline.team,
            before={"stages": before},
            after={"stages": after, "gated_on_previous": gated},
        )
    return list(pipeline.stages.order_by("order"))


def stage_move(*, stage: Stage, offset: int, context: AuditContext) -> list[Stage]:
    """Move a stage `offset` places (-1 up, +1 down) within its pipeline; a move past either end is
    refused. The same rules and event as stage_reorder."""
    ids = list(Stage.objects.filter(pipeline_id=stage.pipeline_id).order_by("order").values_list("pk", flat=True))
    position = ids.index(stage.pk)
    target = position + offset
    if not 0 <= target < len(ids):
        raise ValidationFailed(
            f"Stage {stage.name!r} is already {'first' if offset < 0 else 'last'}.",
            details={"stages": ["Nothing to move past."]},
        )
    ids.insert(target, ids.pop(position))
    return stage_reorder(pipeline=stage.pipeline, stage_ids=ids, context=context)
