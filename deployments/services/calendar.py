"""When imports into a stage may start: weekly windows and freezes.

Windows and freezes are the same kind of configuration row (add, change some fields, remove; audited
with the fields that changed, or with what a removed row was), so one set of private steps does the
writing and the public functions only validate their own fields. A stage without windows is always
open; a freeze closes it unless an admin overrides for one promotion (deployments.policy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import ValidationFailed
from deployments.models import Stage, StageFreeze, StageWindow
from deployments.services.auditing import delete_recorded, record_changes

FREEZE_REASON_MAX_LENGTH = 300


@dataclass(frozen=True)
class _CalendarRows:
    """What differs between windows and freezes when they are written."""

    model: type[Model]
    action: str  # audit action prefix, e.g. "stage_window"
    validate: Callable[..., dict[str, Any]]
    facts: Callable[[Any], dict[str, Any]]
    values_of: Callable[[Any], dict[str, Any]]  # a row's fields, as `validate` takes and returns them


def _create(rows: _CalendarRows, *, stage: Stage, values: Mapping[str, Any], context: AuditContext) -> Any:
    with transaction.atomic():
        row = rows.model._default_manager.create(stage=stage, **values)
        record(context=context, action=f"{rows.action}.created", target=row, related=stage, after=rows.facts(row))
    return row


def _update(rows: _CalendarRows, *, row: Any, changes: Mapping[str, Any], context: AuditContext) -> Any:
    merged = {**rows.values_of(row), **{name: value for name, value in changes.items() if value is not None}}
    values = rows.validate(**merged)
    with transaction.atomic():
        before = rows.facts(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.save()
        record_changes(
            context=context,
            action=f"{rows.action}.updated",
            target=row,
            related=row.stage,
            before=before,
            after=rows.facts(row),
        )
    return row


def _delete(rows: _CalendarRows, *, row: Any, context: AuditContext) -> None:
    with transaction.atomic():
        delete_recorded(
            context=context, action=f"{rows.action}.deleted", row=row, related=row.stage, facts=rows.facts(row)
        )


# --- windows -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    """The IANA zone names of the installed tz database (read from disk once per process)."""
    return frozenset(available_timezones())


def time_zone_refusal(name: Any) -> str:
    """Why `name` is not an IANA time zone ("" when it is). ZoneInfo alone would also accept file
    paths of the tz database that are not zone names (e.g. "posixrules"), so the name must be listed."""
    if not isinstance(name, str) or not name:
        return "Give an IANA time zone, e.g. Europe/Berlin."
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin)."
    if name != "UTC" and name not in known_time_zones():
        return f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin)."
    return ""


def _window_values(*, weekdays: Any, start_time: Any, end_time: Any, time_zone: Any) -> dict[str, Any]:
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
            errors[field] = ["Must be a time of day (HH:MM)."]
    zone_refusal = time_zone_refusal(time_zone)
    if zone_refusal:
        errors["time_zone"] = [zone_refusal]
    if errors:
        raise ValidationFailed("The window is not valid.", details=errors)
    # Minutes are the window's resolution ("HH:MM"); seconds would only make two equal windows differ.
    return {
        "weekdays": days,
        "start_time": start_time.replace(second=0, microsecond=0),
        "end_time": end_time.replace(second=0, microsecond=0),
        "time_zone": time_zone,
    }


def _window_facts(window: StageWindow) -> dict[str, Any]:
    return {
        "weekdays": window.weekdays,
        "start_time": window.start_time.strftime("%H:%M"),
        "end_time": window.end_time.strftime("%H:%M"),
        "time_zone": window.time_zone,
    }


def _window_fields(window: StageWindow) -> dict[str, Any]:
    return {
        "weekdays": window.weekdays,
        "start_time": window.start_time,
        "end_time": window.end_time,
        "time_zone": window.time_zone,
    }


_WINDOWS = _CalendarRows(
    model=StageWindow,
    action="stage_window",
    validate=_window_values,
    facts=_window_facts,
    values_of=_window_fields,
)


def stage_window_add(
    *, stage: Stage, weekdays: list[int], start_time: time, end_time: time, time_zone: str, context: AuditContext
) -> StageWindow:
    """Add a weekly window in which imports into the stage may start (read on `time_zone`'s wall
    clock; an end not after the start crosses midnight, an end equal to the start means 24 hours).
    Event: stage_window.created."""
    values = _window_values(weekdays=weekdays, start_time=start_time, end_time=end_time, time_zone=time_zone)
    window: StageWindow = _create(_WINDOWS, stage=stage, values=values, context=context)
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
    """Change a window; only the given fields change. Event: stage_window.updated (when something changed)."""
    changes = {"weekdays": weekdays, "start_time": start_time, "end_time": end_time, "time_zone": time_zone}
    updated: StageWindow = _update(_WINDOWS, row=window, changes=changes, context=context)
    return updated


def stage_window_remove(*, window: StageWindow, context: AuditContext) -> None:
    """Delete a window (configuration; the event keeps what it was). Event: stage_window.deleted."""
    _delete(_WINDOWS, row=window, context=context)


# --- freezes -----------------------------------------------------------------------------------------


def _freeze_values(*, starts_at: Any, ends_at: Any, reason: Any) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for field, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(value, datetime) or timezone.is_naive(value):
            errors[field] = ["Must be a date and time with a UTC offset."]
    if not errors and ends_at <= starts_at:
        errors["ends_at"] = ["Must be after the start."]
    reason = (reason or "").strip() if isinstance(reason, str | type(None)) else ""
    if not reason:
        errors["reason"] = ["Say why the stage is frozen."]
    elif len(reason) > FREEZE_REASON_MAX_LENGTH:
        errors["reason"] = [f"At most {FREEZE_REASON_MAX_LENGTH} characters."]
    if errors:
        raise ValidationFailed("The freeze is not valid.", details=errors)
    return {"starts_at": starts_at, "ends_at": ends_at, "reason": reason}


def _freeze_facts(freeze: StageFreeze) -> dict[str, Any]:
    return {"starts_at": freeze.starts_at, "ends_at": freeze.ends_at, "reason": freeze.reason}


_FREEZES = _CalendarRows(
    model=StageFreeze,
    action="stage_freeze",
    validate=_freeze_values,
    facts=_freeze_facts,
    values_of=_freeze_facts,  # a freeze's facts are its fields
)


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
    values = {**_freeze_values(starts_at=starts_at, ends_at=ends_at, reason=reason), "created_by": created_by}
    freeze: StageFreeze = _create(_FREEZES, stage=stage, values=values, context=context)
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
    changes = {"starts_at": starts_at, "ends_at": ends_at, "reason": reason}
    updated: StageFreeze = _update(_FREEZES, row=freeze, changes=changes, context=context)
    return updated


def stage_freeze_remove(*, freeze: StageFreeze, context: AuditContext) -> None:
    """Delete a freeze. Event: stage_freeze.deleted (with what it was)."""
    _delete(_FREEZES, row=freeze, context=context)


# --- the whole calendar of a stage at once (nested writes of the API) --------------------------------


def stage_calendar_replace(
    *,
    stage: Stage,
    context: AuditContext,
    windows: Iterable[Mapping[str, Any]] | None = None,
    freezes: Iterable[Mapping[str, Any]] | None = None,
    created_by: User | None = None,
) -> None:
    """Make the stage's windows (and/or freezes) exactly the given ones: rows equal to a given entry
    stay as they are, the others are removed, the missing ones added; each change is its own event
    (stage_window.* / stage_freeze.*). `None` leaves that list alone. All or nothing.

    Entries use the service's field names: windows {weekdays, start_time, end_time, time_zone},
    freezes {starts_at, ends_at, reason}.
    """
    with transaction.atomic():
        if windows is not None:
            wanted = [_window_values(**dict(entry)) for entry in windows]
            _replace(_WINDOWS, stage=stage, wanted=wanted, context=context, extra={})
        if freezes is not None:
            wanted = [_freeze_values(**dict(entry)) for entry in freezes]
            _replace(_FREEZES, stage=stage, wanted=wanted, context=context, extra={"created_by": created_by})


def _replace(
    rows: _CalendarRows,
    *,
    stage: Stage,
    wanted: list[dict[str, Any]],
    context: AuditContext,
    extra: dict[str, Any],
) -> None:
    remaining = list(wanted)
    for row in rows.model._default_manager.filter(stage=stage).order_by("pk"):
        current = rows.values_of(row)
        if current in remaining:
            remaining.remove(current)
        else:
            _delete(rows, row=row, context=context)
    for values in remaining:
        _create(rows, stage=stage, values={**values, **extra}, context=context)
