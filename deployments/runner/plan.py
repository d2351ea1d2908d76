"""The Dataverse operations a promotion runs on its target, in order."""

from __future__ import annotations

from typing import Any

from alm_portal.dataverse.client import (
    AsyncOperationType,
)
from deployments.choices import ImportMode, RollbackStrategy
from deployments.models import Promotion
from deployments.preflight import (
    HOLDING_SUFFIX,
    promotion_import_mode,
    promotion_strategy,
)

IMPORT, UNINSTALL, DELETE_AND_PROMOTE = "import", "uninstall", "delete_and_promote"


def planned_operations(*, promotion: Promotion) -> list[dict[str, Any]]:
    """The Dataverse operations a promotion runs on its target, in order."""
    name = promotion.solution.unique_name
    strategy = promotion_strategy(promotion=promotion)
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        return [
            {"kind": UNINSTALL, "solution": name},
            {"kind": IMPORT, "solution": name, "mode": ImportMode.UPDATE},
        ]
    if strategy == RollbackStrategy.HOLDING_APPLY:
        return [{"kind": DELETE_AND_PROMOTE, "solution": name}]
    if strategy == RollbackStrategy.HOLDING_REMOVE:
        return [{"kind": UNINSTALL, "solution": name + HOLDING_SUFFIX}]
    return [{"kind": IMPORT, "solution": name, "mode": promotion_import_mode(promotion=promotion)}]


def operation_types(operation: dict[str, Any]) -> tuple[int, ...]:
    if operation["kind"] == IMPORT:
        if operation.get("mode") == ImportMode.UPGRADE:
            return (AsyncOperationType.STAGE_AND_UPGRADE,)
        return (AsyncOperationType.IMPORT_SOLUTION,)
    if operation["kind"] == UNINSTALL:
        return (AsyncOperationType.UNINSTALL_SOLUTION,)
    return (AsyncOperationType.DELETE_AND_PROMOTE,)


def operation_label(operation: dict[str, Any]) -> str:
    if operation["kind"] == IMPORT:
        action = "StageAndUpgradeAsync" if operation.get("mode") == ImportMode.UPGRADE else "ImportSolutionAsync"
        return f"{action} of {operation['solution']}"
    if operation["kind"] == UNINSTALL:
        return f"UninstallSolutionAsync of {operation['solution']}"
    return f"DeleteAndPromoteAsync of {operation['solution']}"
