"""What each app tells the job engine at start-up: its job kinds and the function that carries out each.

The engine knows no kind of its own. An app registers its kinds in its tasks module, which its
AppConfig.ready imports (docs/architecture.md, "Adding a job kind"):

    register_job_kind(EnvironmentJobKind.HEALTH_CHECK, routine=True)

    @register_job_handler(EnvironmentJobKind.HEALTH_CHECK)
    def health_check_handler(job: Job, context: AuditContext) -> dict[str, Any]: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alm_portal.audit.context import AuditContext
    from alm_portal.jobs.models import Job

JobHandler = Callable[["Job", "AuditContext"], dict[str, Any]]


@dataclass(frozen=True)
class JobKindSpec:
    """A registered job kind. `uses_solution_slot`: the job holds its environment's single slot for
    solution operations while active. `routine`: scheduled every few minutes for every environment, so only
    its failures (and the jobs a person asked for) get an audit row; the job row is the record of the rest."""

    value: str
    label: str
    uses_solution_slot: bool = False
    routine: bool = False


_KINDS: dict[str, JobKindSpec] = {}
_HANDLERS: dict[str, JobHandler] = {}


def register_job_kind(kind: str, *, label: str = "", uses_solution_slot: bool = False, routine: bool = False) -> None:
    """Make `kind` known to the engine. `kind` is usually a member of the app's TextChoices, whose label is
    used unless `label` is given. Registering the same kind again with the same options does nothing."""
    value = str(kind)
    spec = JobKindSpec(
        value=value,
        label=label or str(getattr(kind, "label", value)),
        uses_solution_slot=uses_solution_slot,
        routine=routine,
    )
    if _KINDS.setdefault(value, spec) != spec:
        raise ValueError(f"job kind {value!r} is already registered with other options")


def register_job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register the function that carries out jobs of `kind` (registered first with register_job_kind)."""

    def decorator(handler: JobHandler) -> JobHandler:
        if str(kind) not in _KINDS:
            raise ValueError(f"register job kind {kind!r} before its handler")
        _HANDLERS[str(kind)] = handler
        return handler

    return decorator


def job_kind_spec(kind: str) -> JobKindSpec | None:
    return _KINDS.get(kind)


def job_kind_label(kind: str) -> str:
    spec = _KINDS.get(kind)
    return spec.label if spec is not None else kind


def registered_job_kinds() -> list[str]:
    """Every registered kind, in registration order."""
    return list(_KINDS)


def job_kind_choices() -> list[tuple[str, str]]:
    """(value, label) of every registered kind, for filters and forms."""
    return [(spec.value, spec.label) for spec in _KINDS.values()]


def job_handler_for(kind: str) -> JobHandler | None:
    return _HANDLERS.get(kind)
