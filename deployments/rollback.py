"""Rollback planning and rollback artifacts (issue 5; docs/states.md §5, docs/dataverse.md §11.4).

Dataverse cannot simply go back: a managed solution is only replaced by a strictly higher version, an
uninstall deletes the solution's tables with their data, and a failed upgrade may leave a
``<name>_Upgrade`` holding solution behind. So a rollback is a plan of strategies, each with what it
costs:

- ``reversion_upgrade``: the old managed content re-versioned above every version seen anywhere
  (registered with source kind ``reversioned``), imported as an upgrade: what was added since goes, with
  the data in those tables and columns;
- ``reversion_update``: the same package imported as an update: added components stay (no data loss),
  changed ones get their old definitions back;
- ``uninstall_reinstall``: uninstall the current version, install the old one: every custom table of the
  solution is deleted and comes back empty. Destructive; admins only; confirmed by typing the unique name;
- ``holding_apply`` / ``holding_remove``: finish (DeleteAndPromote) or remove (uninstall) a stuck
  holding solution;
- when the promotion recorded a pre-deployment backup: "restore backup <time>", a manual step outside
  the portal that loses everything written since.

The plan reads the registry and, best effort with short timeouts, the live target (what is installed,
any holding solution, approximate row counts). The runner carries out the chosen strategy
(deployments/runner.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient, RetryPolicy, Timeouts
from alm_portal.errors import InvalidState, ValidationFailed
from alm_portal.jobs.errors import JobFailed
from deployments.choices import ImportMode, PromotionStatus, RollbackStrategy
from deployments.models import Promotion
from deployments.policy import ADMIN_ROLLBACK_STRATEGIES
from deployments.preflight import (
    HOLDING_SUFFIX,
    count_rows,
    data_loss_entries,
    deployment_client_for,
    fill_row_counts,
    holding_data_loss,
)
from solutions import selectors as solution_selectors
from solutions.choices import Flavour, SourceKind
from solutions.errors import ArtifactMissing
from solutions.models import SolutionVersion
from solutions.services import solution_version_reversion, version_diff

if TYPE_CHECKING:
    from environments.models import Environment

logger = logging.getLogger(__name__)

ClientFactory = Callable[["Environment"], DataverseClient]

# The plan is read while someone waits for a page: one attempt, short timeouts, no sleeping.
PLAN_RETRY = RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)
PLAN_TIMEOUTS = Timeouts(connect=5.0, read=20.0, transfer_read=20.0)

RESTORE_BACKUP = "restore_backup"
LABELS: dict[str, str] = {
    RollbackStrategy.REVERSION_UPGRADE: "Re-versioned old content, imported as upgrade",
    RollbackStrategy.REVERSION_UPDATE: "Re-versioned old content, imported as update",
    RollbackStrategy.UNINSTALL_REINSTALL: "Uninstall, then reinstall the old version",
    RollbackStrategy.HOLDING_APPLY: "Apply the holding solution (DeleteAndPromote)",
    RollbackStrategy.HOLDING_REMOVE: "Remove the holding solution",
}
IMPORT_MODES: dict[str, str] = {
    RollbackStrategy.REVERSION_UPGRADE: ImportMode.UPGRADE,
    RollbackStrategy.REVERSION_UPDATE: ImportMode.UPDATE,
    RollbackStrategy.UNINSTALL_REINSTALL: ImportMode.UPDATE,
}


# --- what the target has ------------------------------------------------------------------------------------


class _Target:
    """What the plan knows about the target: live when it answers, the inventory otherwise."""

    def __init__(self, *, installed: str | None, holding: str | None, live: bool, note: str = "") -> None:
        self.installed = installed
        self.holding = holding
        self.live = live
        self.note = note


def _read_target(promotion: Promotion, client: DataverseClient | None) -> _Target:
    name = promotion.solution.unique_name
    if client is not None:
        try:
            installed = client.get_solution(name)
            holding = client.get_solution(name + HOLDING_SUFFIX)
        except dv.DataverseError as exc:
            logger.info("rollback plan: %s unreadable (%s); using the inventory", promotion.target_environment, exc)
        else:
            return _Target(
                installed=installed.version if installed else None,
                holding=holding.version if holding else None,
                live=True,
            )
    environment_id = promotion.target_environment_id
    installed_row = solution_selectors.installed_solution(environment_id=environment_id, unique_name=name)
    holding_row = solution_selectors.installed_solution(
        environment_id=environment_id, unique_name=name + HOLDING_SUFFIX
    )
    return _Target(
        installed=installed_row.version if installed_row else None,
        holding=holding_row.version if holding_row else None,
        live=False,
        note="The target did not answer; what it has comes from its last inventory sync, and row counts are unknown.",
    )


def _plan_client(promotion: Promotion, client_factory: ClientFactory | None) -> DataverseClient | None:
    try:
        if client_factory is not None:
            return client_factory(promotion.target_environment)
        return deployment_client_for(promotion.target_environment, retry_policy=PLAN_RETRY, timeouts=PLAN_TIMEOUTS)
    except (JobFailed, dv.DataverseError, ValueError) as exc:
        logger.info("rollback plan without a live target: %s", exc)
        return None


# --- eligibility ----------------------------------------------------------------------------------------------


def _not_latest_reason(promotion: Promotion) -> str | None:
    """Why `promotion` cannot be rolled back (None when it can): only the latest succeeded deployment of its
    solution on its target, and only one rollback at a time."""
    if promotion.status != PromotionStatus.SUCCEEDED:
        return f"Only a succeeded deployment can be rolled back; this one is {promotion.status}."
    later = Promotion.objects.filter(
        solution_id=promotion.solution_id,
        target_environment_id=promotion.target_environment_id,
        status__in=(PromotionStatus.SUCCEEDED, PromotionStatus.ROLLED_BACK),
    ).exclude(pk=promotion.pk)
    if promotion.finished_at is not None:
        later = later.filter(finished_at__gt=promotion.finished_at)
    else:
        later = later.filter(pk__gt=promotion.pk)
    if later.exists():
        return "A later deployment of this solution succeeded on this target; only the latest can be rolled back."
    in_flight = Promotion.objects.filter(rollback_of=promotion).exclude(
        status__in=(
            PromotionStatus.SUCCEEDED,
            PromotionStatus.FAILED,
            PromotionStatus.REJECTED,
            PromotionStatus.CANCELLED,
            PromotionStatus.ROLLED_BACK,
        )
    )
    if in_flight.exists():
        return "A rollback of this deployment is already under way."
    return None


def _old_version(promotion: Promotion) -> tuple[SolutionVersion | None, str | None]:
    """The version the promotion replaced, with a managed artifact, or the reason there is none."""
    if not promotion.previous_version:
        return None, "It was a first install: there is no earlier version to go back to."
    old = solution_selectors.version_find(solution=promotion.solution, version=promotion.previous_version)
    if old is None:
        return None, (
            f"{promotion.previous_version}, the version it replaced, is not in the registry (installed outside the "
            "portal): upload its managed package first."
        )
    if not old.slot(Flavour.MANAGED).stored:
        return None, f"{old.version_key} has no managed artifact in the registry: upload it first."
    return old, None


# --- the plan -------------------------------------------------------------------------------------------------


def _entry(
    strategy: str,
    *,
    available: bool,
    reason: str,
    resulting_version: str | None,
    data_loss: list[dict[str, Any]] | None,
    requires_confirmation: bool,
    confirmation: str | None = None,
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "label": LABELS.get(strategy, strategy),
        "available": available,
        "reason": reason,
        "resulting_version": resulting_version,
        "data_loss": data_loss if data_loss is not None else [],
        "data_loss_known": data_loss is not None,
        # The same rule rollback_request enforces (deployments.policy), so the planner never offers what
        # the request would refuse.
        "requires_admin": strategy in ADMIN_ROLLBACK_STRATEGIES,
        "requires_confirmation": requires_confirmation,
        "confirmation": confirmation if requires_confirmation else None,
        "import_mode": IMPORT_MODES.get(strategy),
        "manual": False,
    }


def _diff_loss(old: SolutionVersion, new: SolutionVersion) -> list[dict[str, Any]] | None:
    try:
        diff = version_diff(old=old, new=new)
    except Exception as exc:  # a missing or unreadable artifact: the loss is unknown, the plan still shows
        logger.warning("rollback plan: diff %s → %s failed: %s", old, new, exc)
        return None
    return data_loss_entries(diff.get("data_loss") or [])


def _custom_tables(version: SolutionVersion) -> list[dict[str, Any]]:
    tables = (version.managed_manifest or {}).get("tables") or []
    return [
        {"table": t.get("logical_name"), "column": None, "rows": None, "as_of": None, "approximate": True}
        for t in tables
        if "_" in str(t.get("logical_name") or "").strip("_")
    ]


def rollback_plan(*, promotion: Promotion, client_factory: ClientFactory | None = None) -> list[dict[str, Any]]:
    """Every rollback strategy for `promotion` with available, reason, resulting_version, data_loss
    [{table, column, rows, as_of, approximate}], requires_admin and requires_confirmation; plus the manual
    "restore backup <time>" option when the promotion recorded a backup reference.

    Reads the live target best effort (short timeouts, no retries); when it does not answer, the installed
    and holding versions come from the inventory and row counts stay unknown (rows None).
    """
    promotion = Promotion.objects.select_related("solution", "version", "stage", "target_environment").get(
        pk=promotion.pk
    )
    name = promotion.solution.unique_name
    current = SolutionVersion.objects.get(pk=promotion.version_id)
    client = _plan_client(promotion, client_factory)
    try:
        target = _read_target(promotion, client)
        blocked = _not_latest_reason(promotion)
        old, old_missing = _old_version(promotion)
        if target.installed and target.installed != promotion.version.version_key and blocked is None:
            installed = solution_selectors.parse_version(target.installed)
            if installed is None or installed != solution_selectors.parse_version(current.version_key):
                blocked = (
                    f"{promotion.target_environment} has {target.installed}, not {current.version_key}: it changed "
                    "outside this deployment; reconcile (inventory, drift) before rolling back."
                )
        unavailable = blocked or old_missing
        next_version = solution_selectors.solution_next_allowed(solution=promotion.solution)
        plan = [
            _entry(
                RollbackStrategy.REVERSION_UPGRADE,
                available=unavailable is None,
                reason=unavailable
                or f"Imports {promotion.previous_version}'s content as {next_version} (upgrade): components added "
                "since are removed, with the data in those tables and columns.",
                resulting_version=next_version if old else None,
                data_loss=_diff_loss(current, old) if old else [],
                requires_confirmation=False,
            ),
            _entry(
                RollbackStrategy.REVERSION_UPDATE,
                available=unavailable is None,
                reason=unavailable
                or f"Imports {promotion.previous_version}'s content as {next_version} (update): components added "
                "since stay, so no data is lost; changed components get their old definitions back.",
                resulting_version=next_version if old else None,
                data_loss=[],
                requires_confirmation=False,
            ),
            _entry(
                RollbackStrategy.UNINSTALL_REINSTALL,
                available=unavailable is None,
                reason=unavailable
                or f"Uninstalls {current.version_key} (deleting every custom table of {name} with all rows), then "
                f"installs {promotion.previous_version}. Destructive; admins only; type {name} to confirm.",
                resulting_version=promotion.previous_version if old else None,
                data_loss=_custom_tables(current),
                requires_confirmation=True,
                confirmation=name,
            ),
            *_holding_entries(promotion, target),
        ]
        _add_row_counts(plan, client if target.live else None)
    finally:
        if client is not None:
            client.close()
    if target.note:
        for entry in plan:
            entry["note"] = target.note
    backup = _backup_entry(promotion)
    if backup is not None:
        plan.append(backup)
    return plan


def _holding_entries(promotion: Promotion, target: _Target) -> list[dict[str, Any]]:
    name = promotion.solution.unique_name
    entries = []
    for strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        if target.holding is None:
            entries.append(
                _entry(
                    strategy,
                    available=False,
                    reason=f"{promotion.target_environment} has no holding solution {name}{HOLDING_SUFFIX}.",
                    resulting_version=None,
                    data_loss=[],
                    requires_confirmation=False,
                )
            )
            continue
        loss = holding_data_loss(
            promotion=promotion,
            installed_version=target.installed,
            holding_version=target.holding,
            strategy=strategy,
        )
        applying = strategy == RollbackStrategy.HOLDING_APPLY
        entries.append(
            _entry(
                strategy,
                available=True,
                reason=(
                    f"DeleteAndPromote: {name} {target.installed} and its patches go, {name}{HOLDING_SUFFIX} "
                    f"{target.holding} takes its place (components it lacks are deleted)."
                    if applying
                    else f"Uninstalls {name}{HOLDING_SUFFIX} {target.holding}; {name} {target.installed} stays."
                ),
                resulting_version=target.holding if applying else target.installed,
                data_loss=loss,
                requires_confirmation=bool(loss),
                confirmation=name,
            )
        )
    return entries


def _add_row_counts(plan: list[dict[str, Any]], client: DataverseClient | None) -> None:
    entries = [entry for item in plan for entry in item["data_loss"]]
    if not entries or client is None:
        return
    try:
        counts, as_of = count_rows(client=client, tables=[str(entry["table"]) for entry in entries])
    except dv.DataverseError as exc:
        logger.info("rollback plan: row counts unavailable (%s)", exc)
        return
    fill_row_counts(entries, counts, as_of)


def _backup_entry(promotion: Promotion) -> dict[str, Any] | None:
    if not promotion.backup_reference:
        return None
    taken_before = promotion.started_at or promotion.requested_at
    when = taken_before.isoformat() if taken_before else "?"
    return {
        "strategy": RESTORE_BACKUP,
        "label": f"restore backup {when}",
        "available": True,
        "reason": (
            f"Restore the environment backup {promotion.backup_reference!r} taken before this deployment, outside the "
            "portal (Power Platform admin center). It loses all data written since."
        ),
        "warning": f"Every change to the environment's data since {when} is lost, not only this solution's.",
        "backup_reference": promotion.backup_reference,
        "resulting_version": promotion.previous_version or None,
        "data_loss": [],
        "data_loss_known": False,
        "requires_admin": True,
        "requires_confirmation": True,
        "confirmation": None,
        "import_mode": None,
        "manual": True,
    }


# --- artifacts --------------------------------------------------------------------------------------------------


def _reusable_reversion(old: SolutionVersion) -> SolutionVersion | None:
    """A re-versioned copy of `old` that is still the highest version seen anywhere (asking twice must not
    burn a new version number each time)."""
    copy = (
        SolutionVersion.objects.filter(
            solution_id=old.solution_id, restores_version=old, source_kind=SourceKind.REVERSIONED
        )
        .exclude(managed_sha256="")
        .order_by("-major", "-minor", "-build", "-revision")
        .first()
    )
    if copy is None:
        return None
    highest = solution_selectors.solution_highest_version_seen(solution=old.solution)
    mine = solution_selectors.parse_version(copy.version_key)
    return copy if highest is not None and mine is not None and mine == highest else None


def rollback_artifact_for(*, promotion: Promotion, strategy: str, context: AuditContext) -> SolutionVersion:
    """The version a rollback of `promotion` with `strategy` deploys.

    reversion_*: the old managed content re-versioned above the highest version seen anywhere, registered
    with source kind `reversioned` (a copy that is still the highest is reused); uninstall_reinstall: the
    old version itself; holding_*: the current version (nothing is imported; the promotion needs one).
    Raises ArtifactMissing (409) when the old version has no managed artifact, ValidationFailed for an
    unknown strategy.
    """
    if strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        return SolutionVersion.objects.get(pk=promotion.version_id)
    if strategy not in (
        RollbackStrategy.REVERSION_UPGRADE,
        RollbackStrategy.REVERSION_UPDATE,
        RollbackStrategy.UNINSTALL_REINSTALL,
    ):
        raise ValidationFailed(
            f"Unknown rollback strategy {strategy!r}.",
            details={"strategy": [f"Must be one of {', '.join(RollbackStrategy.values)}."]},
        )
    old, missing = _old_version(promotion)
    if old is None:
        if not promotion.previous_version:
            raise InvalidState(missing or "Nothing to go back to.", details={"previous_version": None})
        raise ArtifactMissing(missing or "The old version has no managed artifact.", details={"flavour": "managed"})
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        return old
    reusable = _reusable_reversion(old)
    if reusable is not None:
        return reusable
    user = User.objects.filter(pk=context.actor_id).first() if context.actor_id else None
    return solution_version_reversion(version=old, context=context, user=user).version
