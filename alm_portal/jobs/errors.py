"""What a job handler raises to tell the engine how its step ended, other than by returning a result."""

from __future__ import annotations

from typing import Any

from alm_portal.jobs.choices import JobStatus


class JobFailed(Exception):
    """Raised by a handler: the job failed for a reason people can act on."""

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class JobDeferred(Exception):
    """Raised by a handler: come back after `seconds`, in `status`, at `step` (e.g. polling an import)."""

    def __init__(self, seconds: float, *, status: str = JobStatus.POLLING, step: str = "", message: str = "") -> None:
        super().__init__(message or f"deferred for {seconds:.0f}s")
        self.seconds = max(0.0, seconds)
        self.status = status
        self.step = step
        self.message = message


class JobNeedsAttention(Exception):
    """Raised by a handler: the outcome is unknown and only an admin can settle it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
