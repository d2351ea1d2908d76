"""What a run keeps between passes: its step (the job row's `step`) and its state (the job row's `result`).

Both are stored in the shape the runner has always written, so a job row left by an earlier version of
the portal is continued, not misread: the step as text (``prepare``, ``checked``, ``submit:<n>``,
``wait:<n>``, ``poll:<n>``, ``done:<n>``, ``finish``), the state as a JSON object with the keys ``ops``,
``op``, ``done``, ``promotion_id``, ``previous_version``, ``checked``, ``preflight``,
``first_submitted_at``, ``uncertain``, ``adopted`` and ``transient_attempts``, each written only once it
has a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from deployments.runner.plan import PlannedOperation


class Phase(StrEnum):
    PREPARE = "prepare"
    CHECKED = "checked"
    SUBMIT = "submit"  # committed just before the call to Dataverse: the operation may have been sent
    WAIT = "wait"  # refused before anything started (busy, throttled): submit again directly
    POLL = "poll"
    DONE = "done"
    FINISH = "finish"


@dataclass(frozen=True)
class RunStep:
    """A step of the run: a phase, and for the per-operation phases the operation's index."""

    phase: str
    index: int | None = None

    @classmethod
    def parse(cls, text: str) -> RunStep:
        phase, colon, index = text.partition(":")
        if colon and index.isdigit():
            return cls(phase, int(index))
        return cls(text)

    def is_(self, phase: Phase, index: int) -> bool:
        return self.phase == phase and self.index == index

    def __str__(self) -> str:
        return self.phase if self.index is None else f"{self.phase}:{self.index}"


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class Outcome:
    """How a Dataverse operation ended, as the poll that saw its end read it."""

    succeeded: bool
    status_code: int | None
    error_code: str | None
    error_message: str
    completed_on: datetime | None


@dataclass
class CompletedOperation:
    """The record of one operation that ended: its handles, times and result (shown with the promotion).

    `import_log` and `components` belong to an import only; a failed operation's record has no `adopted`.
    """

    operation: PlannedOperation
    async_operation_id: str | None
    import_job_id: str | None
    submitted_at: str | None
    completed_on: str | None
    seen_at: str | None
    succeeded: bool
    log_warning: str | None = None
    import_log: dict[str, Any] | None = None
    components: list[Any] | None = None
    adopted: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompletedOperation:
        return cls(
            operation=PlannedOperation.from_json(data),
            async_operation_id=data.get("async_operation_id"),
            import_job_id=data.get("import_job_id"),
            submitted_at=data.get("submitted_at"),
            completed_on=data.get("completed_on"),
            seen_at=data.get("seen_at"),
            succeeded=bool(data.get("succeeded")),
            log_warning=data.get("log_warning"),
            import_log=data.get("import_log"),
            components=data.get("components"),
            adopted=data.get("adopted"),
        )

    def to_json(self, *, with_log: bool = True) -> dict[str, Any]:
        """The stored record; without the import log and components when `with_log` is false."""
        data: dict[str, Any] = {
            **self.operation.to_json(),
            "async_operation_id": self.async_operation_id,
            "import_job_id": self.import_job_id,
            "submitted_at": self.submitted_at,
            "completed_on": self.completed_on,
            "seen_at": self.seen_at,
            "succeeded": self.succeeded,
        }
        if self.log_warning is not None:
            data["log_warning"] = self.log_warning
        if with_log and self.import_log is not None:
            data["import_log"] = self.import_log
        if with_log and self.components is not None:
            data["components"] = self.components
        if self.succeeded:
            data["adopted"] = self.adopted
        return data


@dataclass
class RunState:
    """The run's memory between passes, on the job row. `operations` is None until the run is planned."""

    operations: list[PlannedOperation] | None = None
    next_index: int = 0
    done: list[CompletedOperation] = field(default_factory=list)
    promotion_id: int | None = None
    previous_version: str = ""
    checked: bool = False
    preflight: dict[str, Any] | None = None
    # When the current operation was first submitted (a retry of an uncertain submit keeps it).
    first_submitted_at: datetime | None = None
    # The index of an operation whose submit may have reached Dataverse without us keeping its handle.
    uncertain: int | None = None
    adopted: dict[str, Any] | None = None
    transient_attempts: int = 0

    @property
    def planned(self) -> list[PlannedOperation]:
        return list(self.operations or [])

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RunState:
        data = data or {}
        ops = data.get("ops")
        uncertain = data.get("uncertain")
        promotion_id = data.get("promotion_id")
        return cls(
            operations=[PlannedOperation.from_json(op) for op in ops] if ops is not None else None,
            next_index=int(data.get("op") or 0),
            done=[CompletedOperation.from_json(record) for record in data.get("done") or []],
            promotion_id=int(promotion_id) if promotion_id is not None else None,
            previous_version=str(data.get("previous_version") or ""),
            checked=bool(data.get("checked")),
            preflight=data.get("preflight"),
            first_submitted_at=_parse_time(data.get("first_submitted_at")),
            uncertain=int(uncertain) if uncertain is not None else None,
            adopted=data.get("adopted"),
            transient_attempts=int(data.get("transient_attempts") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.operations is not None:
            data.update(
                {
                    "promotion_id": self.promotion_id,
                    "ops": [operation.to_json() for operation in self.operations],
                    "op": self.next_index,
                    "done": self.done_json(),
                    "previous_version": self.previous_version,
                }
            )
        if self.checked:
            data["checked"] = True
        if self.preflight is not None:
            data["preflight"] = self.preflight
        if self.first_submitted_at is not None:
            data["first_submitted_at"] = self.first_submitted_at.isoformat()
        if self.uncertain is not None:
            data["uncertain"] = self.uncertain
        if self.adopted is not None:
            data["adopted"] = self.adopted
        if self.transient_attempts:
            data["transient_attempts"] = self.transient_attempts
        return data

    def done_json(self, *, with_log: bool = True) -> list[dict[str, Any]]:
        return [record.to_json(with_log=with_log) for record in self.done]
