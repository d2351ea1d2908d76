"""Inventory sync: installed solutions as change intervals, solution history, and drift findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.crypto import SecretUnreadable
from alm_portal.dataverse.client import Solution, SolutionHistoryEntry, throttle_not_before
from alm_portal.dataverse.errors import DataverseError, Throttled
from environments import selectors
from environments.choices import NotificationKind
from environments.clients import SYNC_RETRY, SYNC_TIMEOUTS, SecretMaterial, client_for
from environments.drift import Finding, Installed, compute_drift
from environments.models import DriftFinding, Environment, EnvironmentNotification, InventoryInterval
from environments.models import SolutionHistoryEntry as HistoryRow
from environments.services.errors import InventorySyncFailed, dataverse_error_code, dataverse_error_text
from environments.services.notifications import notify

# History rows still "Started" are fetched again until they complete; without any, the next sync
# starts a little before the newest row it stored.
HISTORY_OVERLAP = timedelta(hours=1)
# At most this many names per list in an `inventory.changed` event (counts are always complete).
AUDIT_LIST_LIMIT = 100


@dataclass
class InventorySyncReport:
    """What one inventory sync changed (also the inventory_sync job's result)."""

    solutions: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    history_added: int = 0
    history_updated: int = 0
    drift_detected: list[str] = field(default_factory=list)
    drift_resolved: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, Any]:
        return asdict(self)


# --- validation -------------------------------------------------------------------------------------------


def _history_since(environment: Environment) -> datetime | None:
    """Where the next history read starts: the oldest row still `Started`, else a little before the
    newest row stored, else the beginning."""
    oldest_started = HistoryRow.objects.filter(environment=environment, status=0).aggregate(oldest=Min("start_time"))[
        "oldest"
    ]
    watermark = environment.history_synced_until
    candidates = [moment for moment in (oldest_started, watermark - HISTORY_OVERLAP if watermark else None) if moment]
    return min(candidates) if candidates else None


@sensitive_variables()
def environment_sync_inventory(
    *,
    environment: Environment,
    context: AuditContext,
    on_progress: Callable[[int, str], None] | None = None,
) -> InventorySyncReport:
    """Read the installed solutions and the solution history and store them as change intervals,
    then compare with what the portal deployed (drift).

    SQL statements per sync are bounded and independent of the number of solutions (bulk writes:
    about 15 on PostgreSQL; SQLite splits a bulk statement every 999 parameters, i.e. every ~70-99
    rows). Audit: one `inventory.changed` event when something changed, one `drift.detected` per
    new finding and one `drift.resolved` per finding that went away (the only per-item statements).
    Raises InventorySyncFailed.
    """
    progress = on_progress or (lambda percent, message: None)
    credential = selectors.active_credential(environment=environment)
    if credential is None:
        raise InventorySyncFailed("no_credential", "The environment has no active credential.")
    since = _history_since(environment)
    material = SecretMaterial(values=())
    try:
        client, material = client_for(environment, credential, retry_policy=SYNC_RETRY, timeouts=SYNC_TIMEOUTS)
        with client:
            solutions = client.list_solutions(visible_only=True)
            progress(40, f"{len(solutions)} solutions read")
            history = client.list_solution_history(since=since)
            progress(70, f"{len(history)} history rows read")
    except Throttled as exc:
        until = throttle_not_before(environment.url)
        if until is not None:
            Environment.objects.filter(pk=environment.pk).update(throttled_until=until)
        raise InventorySyncFailed(
            dataverse_error_code(exc), material.redact(dataverse_error_text(exc)), retry_after=exc.retry_after
        ) from None
    except DataverseError as exc:
        raise InventorySyncFailed(dataverse_error_code(exc), material.redact(dataverse_error_text(exc))) from None
    except outbound.OutboundRefused as refusal:
        raise InventorySyncFailed("outbound_refused", refusal.message) from None
    except (SecretUnreadable, ValueError) as exc:
        raise InventorySyncFailed("invalid_credential", material.redact(str(exc))[:500]) from None
    report = _store_inventory(environment=environment, solutions=solutions, history=history, context=context)
    progress(100, "inventory stored")
    return report


def _interval_start(installed_on: datetime | None, previous_from: datetime | None, now: datetime) -> datetime:
    """Dataverse's installedon when it is plausible (after the previous interval began, not in the
    future), else the time we saw the change."""
    if installed_on is not None and installed_on <= now and (previous_from is None or installed_on > previous_from):
        return installed_on
    return now


def _store_inventory(
    *,
    environment: Environment,
    solutions: Iterable[Solution],
    history: Iterable[SolutionHistoryEntry],
    context: AuditContext,
) -> InventorySyncReport:
    now = timezone.now()
    report = InventorySyncReport()
    seen: dict[str, Solution] = {}
    for solution in solutions:
        seen.setdefault(solution.unique_name.lower(), solution)
    report.solutions = len(seen)
    notes: list[EnvironmentNotification] = []
    with transaction.atomic():
        # no_key: the sync changes no key, so rows that merely reference this environment (jobs,
        # promotions, audit checks) are not blocked behind it.
        current_env = Environment.objects.select_for_update(no_key=True).get(pk=environment.pk)
        current = {
            row.unique_name.lower(): row
            for row in InventoryInterval.objects.filter(environment=current_env, valid_to__isnull=True)
        }
        to_close: list[InventoryInterval] = []
        to_open: list[InventoryInterval] = []
        for key, solution in sorted(seen.items()):
            row = current.get(key)
            if row is not None and row.version == solution.version and row.is_managed == solution.is_managed:
                continue
            start = _interval_start(solution.installed_on, row.valid_from if row else None, now)
            if row is None:
                report.added.append(f"{solution.unique_name} {solution.version}")
            else:
                row.valid_to = start
                to_close.append(row)
                report.changed.append(f"{solution.unique_name} {row.version} -> {solution.version}")
            to_open.append(
                InventoryInterval(
                    environment=current_env,
                    unique_name=solution.unique_name,
                    friendly_name=solution.friendly_name[:256],
                    version=solution.version,
                    is_managed=solution.is_managed,
                    publisher=(solution.publisher.unique_name if solution.publisher else "")[:256],
                    solution_id=str(solution.solution_id),
                    installed_on=solution.installed_on,
                    valid_from=start,
                )
            )
        for key, row in sorted(current.items()):
            if key not in seen:
                row.valid_to = now
                to_close.append(row)
                report.removed.append(f"{row.unique_name} {row.version}")
        # Close before opening: one interval per solution may be current (a partial unique index).
        if to_close:
            InventoryInterval.objects.bulk_update(to_close, ["valid_to"])
        if to_open:
            InventoryInterval.objects.bulk_create(to_open)
        newest = _store_history(environment=current_env, history=history, report=report)
        watermark = max((moment for moment in (newest, current_env.history_synced_until) if moment), default=None)
        Environment.objects.filter(pk=current_env.pk).update(
            inventory_synced_at=now, history_synced_until=watermark, throttled_until=None
        )
        environment.inventory_synced_at, environment.history_synced_until = now, watermark
        installed = {
            solution.unique_name: Installed(
                unique_name=solution.unique_name,
                version=solution.version,
                is_managed=solution.is_managed,
                publisher=solution.publisher.unique_name if solution.publisher else "",
                installed_on=solution.installed_on,
            )
            for solution in seen.values()
        }
        findings = compute_drift(
            installed=installed,
            expected=selectors.expected_installations(environment=current_env),
            registered=selectors.registered_solution_names(names=set(installed)),
            environment_kind=current_env.kind,
            now=now,
            holding_grace=timedelta(minutes=settings.ALM_HOLDING_GRACE_MINUTES),
        )
        detected, resolved = _reconcile_drift(environment=current_env, findings=findings, now=now, notes=notes)
        EnvironmentNotification.objects.bulk_create(notes)
        if report.added or report.changed or report.removed:
            record(
                context=context,
                action="inventory.changed",
                target=current_env,
                after={
                    "added": report.added[:AUDIT_LIST_LIMIT],
                    "changed": report.changed[:AUDIT_LIST_LIMIT],
                    "removed": report.removed[:AUDIT_LIST_LIMIT],
                    "counts": {
                        "added": len(report.added),
                        "changed": len(report.changed),
                        "removed": len(report.removed),
                    },
                },
            )
        for finding in detected:
            record(
                context=context,
                action="drift.detected",
                target=finding,
                related=current_env,
                after={"kind": finding.kind, "unique_name": finding.unique_name, "details": finding.details},
            )
            report.drift_detected.append(f"{finding.kind}:{finding.unique_name}")
        for finding in resolved:
            record(
                context=context,
                action="drift.resolved",
                target=finding,
                related=current_env,
                before={"resolved_at": None},
                after={"resolved_at": now},
            )
            report.drift_resolved.append(f"{finding.kind}:{finding.unique_name}")
    return report


def _store_history(
    *, environment: Environment, history: Iterable[SolutionHistoryEntry], report: InventorySyncReport
) -> datetime | None:
    """Insert new history rows and refresh the ones that changed (e.g. Started → Completed), in at
    most three statements; returns the newest start time seen."""
    incoming: dict[str, SolutionHistoryEntry] = {}
    for entry in history:
        if entry.history_id is not None:
            incoming.setdefault(str(entry.history_id), entry)
    if not incoming:
        return None
    existing = {
        row.history_id: row for row in HistoryRow.objects.filter(environment=environment, history_id__in=list(incoming))
    }
    to_create: list[HistoryRow] = []
    to_update: list[HistoryRow] = []
    mutable = ("status", "result", "end_time", "error_code", "exception_message", "suboperation")
    for history_id, entry in incoming.items():
        values = {
            "solution_name": entry.solution_name[:256],
            "solution_version": entry.solution_version[:64],
            "operation": entry.operation,
            "suboperation": entry.suboperation,
            "status": entry.status,
            "result": entry.result,
            "start_time": entry.start_time,
            "end_time": entry.end_time,
            "is_managed": entry.is_managed,
            "error_code": entry.error_code[:64],
            "exception_message": entry.exception_message[:4000],
            "publisher_name": entry.publisher_name[:256],
        }
        row = existing.get(history_id)
        if row is None:
            to_create.append(HistoryRow(environment=environment, history_id=history_id, **values))
        elif any(getattr(row, name) != values[name] for name in mutable):
            for name in mutable:
                setattr(row, name, values[name])
            to_update.append(row)
    if to_create:
        HistoryRow.objects.bulk_create(to_create)
    if to_update:
        HistoryRow.objects.bulk_update(to_update, list(mutable))
    report.history_added, report.history_updated = len(to_create), len(to_update)
    return max((entry.start_time for entry in incoming.values() if entry.start_time), default=None)


def _reconcile_drift(
    *, environment: Environment, findings: list[Finding], now: datetime, notes: list[EnvironmentNotification]
) -> tuple[list[DriftFinding], list[DriftFinding]]:
    """Store new findings, touch the ones still there, resolve the ones gone: at most four statements."""
    found = {finding.key: finding for finding in findings}
    open_rows = {
        (row.kind, row.unique_name): row
        for row in DriftFinding.objects.filter(environment=environment, resolved_at__isnull=True)
    }
    new = [
        DriftFinding(
            environment=environment,
            kind=finding.kind,
            unique_name=finding.unique_name,
            details=finding.details,
            first_seen_at=now,
            last_seen_at=now,
        )
        for key, finding in sorted(found.items())
        if key not in open_rows
    ]
    still = [row.pk for key, row in open_rows.items() if key in found]
    gone = [row for key, row in sorted(open_rows.items()) if key not in found]
    if new:
        DriftFinding.objects.bulk_create(new)
    if still:
        DriftFinding.objects.filter(pk__in=still).update(last_seen_at=now)
    if gone:
        DriftFinding.objects.filter(pk__in=[row.pk for row in gone]).update(resolved_at=now)
        for row in gone:
            row.resolved_at = now
    for row in new:
        notify(
            notes,
            environment,
            NotificationKind.DRIFT_DETECTED,
            f"Drift in {environment.name}: {row.get_kind_display()} ({row.unique_name}).",
            {"kind": row.kind, "unique_name": row.unique_name, **row.details},
        )
    for row in gone:
        notify(
            notes,
            environment,
            NotificationKind.DRIFT_RESOLVED,
            f"Drift resolved in {environment.name}: {row.get_kind_display()} ({row.unique_name}).",
            {"kind": row.kind, "unique_name": row.unique_name},
        )
    return new, gone
