"""Use cases for pipelines, stages, their windows and freezes, and deployment settings.

The only code that writes them; every change is audited in the same transaction. Permission (admin
scope for pipelines, stages and settings) is checked by the views that call these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import IntegrityError, transaction
from django.utils import timezone

from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record
from alm_portal.errors import DomainError, InvalidState, ValidationFailed
from deployments.choices import ImportMode, PromotionStatus
from deployments.models import DeploymentSettings, Pipeline, Stage, StageFreeze, StageWindow
from deployments.settings_documents import (
    empty_document,
    etag_matches,
    settings_document_changes,
    settings_document_etag,
    settings_document_names,
    settings_document_parse,
    settings_document_render,
    settings_document_validate,
)


class PreconditionFailed(DomainError):
    """The If-Match ETag is not the current one: somebody else changed it first (HTTP 412)."""

    status = 412
    code = "precondition_failed"


_STAGE_POLICY_FIELDS = (
    "required_approvals",
    "requires_previous_stage",
    "import_mode",
    "overwrite_unmanaged_customizations",
    "activate_flows_and_plugins",
    "change_reference_required",
    "change_reference_pattern",
    "backup_reference_required",
)
# A promotion in one of these is bound to the stage's target; the target cannot move under it.
_STARTED = (PromotionStatus.RUNNING,)


def _stage_facts(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "order": stage.order,
        "target_environment": stage.target_environment_id,
        **{name: getattr(stage, name) for name in _STAGE_POLICY_FIELDS},
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


def _stage_errors(
    *,
    pipeline: Pipeline,
    name: str,
    target_environment: Any,
    required_approvals: int,
    import_mode: str,
    change_reference_pattern: str,
    exclude_pk: int | None = None,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["This field is required."]
    elif len(name) > 50:
        errors["name"] = ["At most 50 characters."]
    elif pipeline.stages.filter(name=name).exclude(pk=exclude_pk or 0).exists():
        errors["name"] = [f"The pipeline already has a stage named {name!r}."]
    if import_mode not in ImportMode.values:
        errors["import_mode"] = [f"Must be one of {', '.join(ImportMode.values)}."]
    if not isinstance(required_approvals, int) or not 0 <= required_approvals <= 10:
        errors["required_approvals"] = ["Must be between 0 and 10."]
    if target_environment.pk == pipeline.development_environment_id:
        errors["target_environment"] = ["A stage cannot target the pipeline's development environment."]
    if len(change_reference_pattern) > 200:
        errors["change_reference_pattern"] = ["At most 200 characters."]
    else:
        try:
            re.compile(change_reference_pattern)
        except re.error as exc:
            errors["change_reference_pattern"] = [f"Not a regular expression: {exc}."]
    return errors


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
    overwrite_unmanaged_customizations: bool = False,
    activate_flows_and_plugins: bool = True,
    change_reference_required: bool = False,
    change_reference_pattern: str = "",
    backup_reference_required: bool = False,
) -> Stage:
    """Append a stage to `pipeline`; its order is after the last one. Event: stage.created."""
    name = (name or "").strip()
    change_reference_pattern = (change_reference_pattern or "").strip()
    errors = _stage_errors(
        pipeline=pipeline,
        name=name,
        target_environment=target_environment,
        required_approvals=required_approvals,
        import_mode=import_mode,
        change_reference_pattern=change_reference_pattern,
    )
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
            overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
            activate_flows_and_plugins=activate_flows_and_plugins,
            change_reference_required=change_reference_required,
            change_reference_pattern=change_reference_pattern,
            backup_reference_required=backup_reference_required,
        )
        stage.approver_users.set(list(approver_users))
        stage.approver_teams.set(list(approver_teams))
        record(context=context, action="stage.created", target=stage, related=pipeline, after=_stage_facts(stage))
    return stage


_STAGE_UPDATABLE = frozenset({"name", "target_environment", "approver_users", "approver_teams", *_STAGE_POLICY_FIELDS})


def stage_update(*, stage: Stage, context: AuditContext, **changes: Any) -> Stage:
    """Change a stage's name, target, approvers or policy; only the given fields change.

    A new target environment re-binds every promotion of the stage that has not started: their
    approvals (bound to the old target) are voided, pre-flight runs again and approved ones go back
    to waiting for approval (deployments.workflow.promotions_retarget). Refused while an import
    into the stage is running. Event: stage.updated with before/after of the changed fields.
    """
    from deployments.workflow import promotions_retarget

    unknown = sorted(set(changes) - _STAGE_UPDATABLE)
    if unknown:
        raise ValidationFailed("Unknown stage fields.", details={name: ["Not a stage field."] for name in unknown})
    with transaction.atomic():
        # Lock, then re-read into the caller's instance, so they see what was saved.
        Stage.objects.select_for_update().filter(pk=stage.pk).first()
        stage.refresh_from_db()
        before = _stage_facts(stage)
        name = (changes.get("name", stage.name) or "").strip()
        target = changes.get("target_environment", stage.target_environment)
        pattern = (changes.get("change_reference_pattern", stage.change_reference_pattern) or "").strip()
        errors = _stage_errors(
            pipeline=stage.pipeline,
            name=name,
            target_environment=target,
            required_approvals=changes.get("required_approvals", stage.required_approvals),
            import_mode=changes.get("import_mode", stage.import_mode),
            change_reference_pattern=pattern,
            exclude_pk=stage.pk,
        )
        if errors:
            raise ValidationFailed("The stage is not valid.", details=errors)
        retarget = target.pk != stage.target_environment_id
        if retarget and stage.promotions.filter(status__in=_STARTED).exists():
            raise InvalidState(
                "An import into the stage's target is running; change the target once it has finished.",
                details={"current": PromotionStatus.RUNNING, "allowed": ["no running promotion"]},
            )
        stage.name, stage.target_environment, stage.change_reference_pattern = name, target, pattern
        for field in _STAGE_POLICY_FIELDS:
            if field in changes and field != "change_reference_pattern":
                setattr(stage, field, changes[field])
        stage.save()
        if "approver_users" in changes:
            stage.approver_users.set(list(changes["approver_users"]))
        if "approver_teams" in changes:
            stage.approver_teams.set(list(changes["approver_teams"]))
        if retarget:
            promotions_retarget(stage=stage, context=context)
        after = _stage_facts(stage)
        changed = [key for key in after if after[key] != before[key]]
        if changed:
            record(
                context=context,
                action="stage.updated",
                target=stage,
                related=stage.pipeline,
                before={key: before[key] for key in changed},
                after={key: after[key] for key in changed},
            )
    return stage


# --- windows and freezes -----------------------------------------------------------------------------


def _window_values(*, weekdays: Any, start_time: Any, end_time: Any, time_zone: str) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    days: list[int] = []
    if not isinstance(weekdays, list | tuple) or not weekdays:
        errors["weekdays"] = ["Give at least one ISO weekday (1 = Monday … 7 = Sunday)."]
    elif any(isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 7 for day in weekdays):
        errors["weekdays"] = ["Weekdays are numbers from 1 (Monday) to 7 (Sunday)."]
    else:
        days = sorted(set(weekdays))
    for field, value in (("start_time", start_time), ("end_time", end_time)):
        if not isinstance(value, time):
            errors[field] = ["Must be a time of day."]
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        errors["time_zone"] = [f"{time_zone!r} is not a known IANA time zone (e.g. Europe/Berlin)."]
    if errors:
        raise ValidationFailed("The window is not valid.", details=errors)
    return {"weekdays": days, "start_time": start_time, "end_time": end_time, "time_zone": time_zone}


def _window_facts(window: StageWindow) -> dict[str, Any]:
    return {
        "weekdays": window.weekdays,
        "start_time": window.start_time.strftime("%H:%M"),
        "end_time": window.end_time.strftime("%H:%M"),
        "time_zone": window.time_zone,
    }


def stage_window_add(
    *, stage: Stage, weekdays: list[int], start_time: time, end_time: time, time_zone: str, context: AuditContext
) -> StageWindow:
    """Add a weekly window in which imports into the stage may start (read on `time_zone`'s wall
    clock; an end not after the start crosses midnight). A stage without windows is always open.
    Event: stage_window.created."""
    values = _window_values(weekdays=weekdays, start_time=start_time, end_time=end_time, time_zone=time_zone)
    with transaction.atomic():
        window = StageWindow.objects.create(stage=stage, **values)
        record(
            context=context, action="stage_window.created", target=window, related=stage, after=_window_facts(window)
        )
    return window


def stage_window_update(
    *,
    window: StageWindow,
    context: AuditContext,
    weekdays: list[int] | None = None,
    start_time: time | None = None,
    end_time: time | None = None,
    time_zone: str | None = None,
) -> StageWindow:
    """Change a window; only the given fields change. Event: stage_window.updated."""
    values = _window_values(
        weekdays=window.weekdays if weekdays is None else weekdays,
        start_time=window.start_time if start_time is None else start_time,
        end_time=window.end_time if end_time is None else end_time,
        time_zone=window.time_zone if time_zone is None else time_zone,
    )
    with transaction.atomic():
        before = _window_facts(window)
        for name, value in values.items():
            setattr(window, name, value)
        window.save()
        after = _window_facts(window)
        changed = [key for key in after if after[key] != before[key]]
        record(
            context=context,
            action="stage_window.updated",
            target=window,
            related=window.stage,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        )
    return window


def stage_window_remove(*, window: StageWindow, context: AuditContext) -> None:
    """Delete a window (windows are configuration; the event keeps what it was). Event: stage_window.deleted."""
    with transaction.atomic():
        stage = window.stage
        facts = _window_facts(window)
        reference = ObjectRef.of(window)  # taken before delete() clears the primary key
        window.delete()
        record(context=context, action="stage_window.deleted", target=reference, related=stage, before=facts)


def _freeze_values(*, starts_at: Any, ends_at: Any, reason: str) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for field, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(value, datetime) or timezone.is_naive(value):
            errors[field] = ["Must be a date and time with a UTC offset."]
    if not errors and ends_at <= starts_at:
        errors["ends_at"] = ["Must be after the start."]
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = ["Say why the stage is frozen."]
    elif len(reason) > 300:
        errors["reason"] = ["At most 300 characters."]
    if errors:
        raise ValidationFailed("The freeze is not valid.", details=errors)
    return {"starts_at": starts_at, "ends_at": ends_at, "reason": reason}


def _freeze_facts(freeze: StageFreeze) -> dict[str, Any]:
    return {"starts_at": freeze.starts_at, "ends_at": freeze.ends_at, "reason": freeze.reason}


def stage_freeze_add(
    *,
    stage: Stage,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    context: AuditContext,
    created_by: User | None = None,
) -> StageFreeze:
    """Freeze the stage from `starts_at` to `ends_at`: nothing starts importing into its environment
    unless an admin overrides for a promotion. Event: stage_freeze.created."""
    values = _freeze_values(starts_at=starts_at, ends_at=ends_at, reason=reason)
    with transaction.atomic():
        freeze = StageFreeze.objects.create(stage=stage, created_by=created_by, **values)
        record(
            context=context, action="stage_freeze.created", target=freeze, related=stage, after=_freeze_facts(freeze)
        )
    return freeze


def stage_freeze_update(
    *,
    freeze: StageFreeze,
    context: AuditContext,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    reason: str | None = None,
) -> StageFreeze:
    """Change a freeze (e.g. end it early); only the given fields change. Event: stage_freeze.updated."""
    values = _freeze_values(
        starts_at=freeze.starts_at if starts_at is None else starts_at,
        ends_at=freeze.ends_at if ends_at is None else ends_at,
        reason=freeze.reason if reason is None else reason,
    )
    with transaction.atomic():
        before = _freeze_facts(freeze)
        for name, value in values.items():
            setattr(freeze, name, value)
        freeze.save()
        after = _freeze_facts(freeze)
        changed = [key for key in after if after[key] != before[key]]
        record(
            context=context,
            action="stage_freeze.updated",
            target=freeze,
            related=freeze.stage,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        )
    return freeze


def stage_freeze_remove(*, freeze: StageFreeze, context: AuditContext) -> None:
    """Delete a freeze. Event: stage_freeze.deleted (with what it was)."""
    with transaction.atomic():
        stage = freeze.stage
        facts = _freeze_facts(freeze)
        reference = ObjectRef.of(freeze)
        freeze.delete()
        record(context=context, action="stage_freeze.deleted", target=reference, related=stage, before=facts)


# --- deployment settings ---------------------------------------------------------------------------


def settings_current(*, stage: Stage) -> DeploymentSettings | None:
    """The newest settings version of the stage, or None when none was saved yet."""
    return DeploymentSettings.objects.filter(stage=stage).order_by("-version").first()


def settings_current_etag(*, stage: Stage) -> str:
    """The ETag a client must send to change the stage's settings ("" while there are none)."""
    current = settings_current(stage=stage)
    return current.etag if current is not None else ""


def settings_update(
    *, stage: Stage, document: Any, if_match: str | None, context: AuditContext, user: User | None = None
) -> DeploymentSettings:
    """Save the next version of the stage's deployment settings, if `if_match` is the current ETag.

    The document must have the `pac solution create-settings` shape (deployments/settings_documents.py,
    400 validation_error otherwise). A stale or missing ETag is refused with 412
    precondition_failed (details: current_etag), so two people never overwrite each other; for the
    first version the ETag is "". Versions are never changed; the event names what was added,
    removed or changed, never the values. Event: deployment_settings.updated.
    """
    normalised = settings_document_validate(document)
    try:
        with transaction.atomic():
            # Lock the stage so two savers queue; the unique (stage, version) index backs this up.
            Stage.objects.select_for_update().filter(pk=stage.pk).first()
            current = settings_current(stage=stage)
            current_etag = current.etag if current is not None else ""
            if not etag_matches(if_match=if_match, current=current_etag):
                raise PreconditionFailed(
                    "The settings were changed by somebody else; reload them and apply your change again.",
                    details={"current_etag": current_etag},
                )
            version = (current.version if current is not None else 0) + 1
            saved = DeploymentSettings.objects.create(
                stage=stage,
                version=version,
                document=normalised,
                etag=settings_document_etag(stage_id=stage.pk, version=version, document=normalised),
                created_by=user,
            )
            old_document = current.document if current is not None else empty_document()
            record(
                context=context,
                action="deployment_settings.updated",
                target=saved,
                related=stage,
                before={"version": current.version if current is not None else 0, "etag": current_etag},
                after={
                    "version": version,
                    "etag": saved.etag,
                    "names": settings_document_names(normalised),
                    **settings_document_changes(old_document, normalised),
                },
            )
    except IntegrityError:
        raise PreconditionFailed(
            "The settings were changed by somebody else; reload them and apply your change again.",
            details={"current_etag": settings_current_etag(stage=stage)},
        ) from None
    return saved


def settings_import(
    *, stage: Stage, content: bytes | str, if_match: str | None, context: AuditContext, user: User | None = None
) -> DeploymentSettings:
    """Save a settings file made by `pac solution create-settings` (or exported from here) as the next
    version; the same rules as settings_update."""
    return settings_update(
        stage=stage, document=settings_document_parse(content), if_match=if_match, context=context, user=user
    )


def settings_export(*, stage: Stage, version: int | None = None) -> tuple[bytes, str]:
    """The stage's settings (newest, or `version`) as the pac JSON file, and its ETag ("" and an
    empty document while there are none)."""
    rows = DeploymentSettings.objects.filter(stage=stage)
    row = rows.filter(version=version).first() if version is not None else rows.order_by("-version").first()
    if row is None:
        if version is not None:
            raise ValidationFailed(
                "No such settings version.", details={"version": [f"Stage has no version {version}."]}
            )
        return settings_document_render(empty_document()), ""
    return settings_document_render(row.document), row.etag
