"""The pre-flight report: checks with a stable code, a severity and the facts behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from deployments.choices import PreflightStatus

INFO, WARNING, BLOCKER = "info", "warning", "blocker"


@dataclass(frozen=True)
class PreflightCheck:
    """One finding: a stable code, its severity, a sentence for people and the facts behind it."""

    code: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, "details": self.details}


@dataclass
class PreflightReport:
    """The checks of one pre-flight run; `status` is blocked / warnings / passed by the worst severity."""

    checks: list[PreflightCheck] = field(default_factory=list)
    checked_at: str = field(default_factory=lambda: timezone.now().isoformat())

    def add(self, code: str, severity: str, message: str, /, **details: Any) -> None:
        self.checks.append(PreflightCheck(code, severity, message, details))

    @property
    def status(self) -> str:
        severities = {check.severity for check in self.checks}
        if BLOCKER in severities:
            return PreflightStatus.BLOCKED
        if WARNING in severities:
            return PreflightStatus.WARNINGS
        return PreflightStatus.PASSED

    @property
    def blockers(self) -> list[PreflightCheck]:
        return [check for check in self.checks if check.severity == BLOCKER]

    def codes(self) -> list[str]:
        return [check.code for check in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checked_at": self.checked_at, "checks": [c.to_dict() for c in self.checks]}
