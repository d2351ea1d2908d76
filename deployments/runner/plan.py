"""The Dataverse operations a promotion runs on its target, in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PlannedOperation:
    """One Dataverse operation of a run: its kind, the solution it acts on and, for an import, the mode.

    Kept in the run's state as ``{"kind", "solution"}``, plus ``"mode"`` for an import.
    """

    kind: str
    solution: str
    mode: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlannedOperation:
        mode = data.get("mode")
        return cls(kind=str(data["kind"]), solution=str(data["solution"]), mode=str(mode) if mode else None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "solution": self.solution}
        if self.kind == IMPORT:
            data["mode"] = self.mode
        return data

    @property
    def is_import(self) -> bool:
        return self.kind == IMPORT

    @property
    def is_upgrade(self) -> bool:
        return self.mode == ImportMode.UPGRADE

    @property
    def async_operation_types(self) -> tuple[int, ...]:
        """The system job types Dataverse creates for this operation (where adoption looks)."""
        if self.kind == IMPORT:
            if self.is_upgrade:
                return (AsyncOperationType.STAGE_AND_UPGRADE,)
            return (AsyncOperationType.IMPORT_SOLUTION,)
        if self.kind == UNINSTALL:
            return (AsyncOperationType.UNINSTALL_SOLUTION,)
        return (AsyncOperationType.DELETE_AND_PROMOTE,)

    @property
    def label(self) -> str:
        """The operation as people read it in messages: the Dataverse action and the solution."""
        if self.kind == IMPORT:
            action = "StageAndUpgradeAsync" if self.is_upgrade else "ImportSolutionAsync"
            return f"{action} of {self.solution}"
        if self.kind == UNINSTALL:
            return f"UninstallSolutionAsync of {self.solution}"
        return f"DeleteAndPromoteAsync of {self.solution}"


def planned_operations(*, promotion: Promotion) -> list[PlannedOperation]:
    """The Dataverse operations a promotion runs on its target, in order."""
    name = promotion.solution.unique_name
    strategy = promotion_strategy(promotion=promotion)
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        return [
            PlannedOperation(kind=UNINSTALL, solution=name),
            PlannedOperation(kind=IMPORT, solution=name, mode=ImportMode.UPDATE),
        ]
    if strategy == RollbackStrategy.HOLDING_APPLY:
        return [PlannedOperation(kind=DELETE_AND_PROMOTE, solution=name)]
    if strategy == RollbackStrategy.HOLDING_REMOVE:
        return [PlannedOperation(kind=UNINSTALL, solution=name + HOLDING_SUFFIX)]
    return [PlannedOperation(kind=IMPORT, solution=name, mode=promotion_import_mode(promotion=promotion))]
