"""One pass over a promotion's run job (see deployments/runner/__init__.py for the steps)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import (
    DataverseClient,
    RetryPolicy,
    Timeouts,
    throttle_not_before,
)
from alm_portal.dataverse.settings_document import DeploymentSettings as SettingsDocument
from alm_portal.errors import DomainError
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.errors import JobDeferred, JobFailed, JobNeedsAttention
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import crash_point, job_mark_step, job_progress
from deployments import policy, workflow
from deployments.choices import PromotionKind, PromotionStatus
from deployments.models import DeploymentSettings, Promotion
from deployments.preflight import (
    current_settings_of,
    deployment_client_for,
    promotion_for_job,
    promotion_preflight,
    read_target,
    settings_document_of,
)
from deployments.runner.adoption import find_started_operation, target_unchanged
from deployments.runner.plan import PlannedOperation, planned_operations
from deployments.runner.polling import OperationGone, look_at_operation
from deployments.runner.results import completed_record, run_result
from deployments.runner.state import Outcome, Phase, RunState, RunStep
from deployments.runner.submission import ArtifactChanged, is_duplicate_import_job_id, send_operation
from deployments.runner.timing import (
    ADOPT_AFTER_SECONDS,
    MAX_TRANSIENT_ATTEMPTS,
    busy_retry_seconds,
    import_job_id_on_async,
    import_max_wait,
    poll_interval,
    poll_seconds,
)
from deployments.source import source_policy_refusal
from environments.throttling import environment_share_throttle

if TYPE_CHECKING:
    from environments.models import Environment


logger = logging.getLogger(__name__)

ClientFactory = Callable[["Environment"], DataverseClient]

# Reads may sleep through a short Retry-After; a longer one defers the job (and is shared through the
# environment row with every other worker).
IMPORT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0, max_retry_after=5.0)
# The upload can be large; its read timeout stays well below the task time limit.
IMPORT_TIMEOUTS = Timeouts(connect=10.0, read=60.0, transfer_read=600.0)


class ImportRun:
    """One pass over a promotion's run job. Every decision reads the job row; every step writes it."""

    def __init__(self, *, job: Job, promotion: Promotion, client: DataverseClient, context: AuditContext) -> None:
        self.job = job
        self.promotion = promotion
        self.client = client
        self.context = context
        self.state = RunState.from_json(job.result if isinstance(job.result, dict) else None)
        self.client.import_job_id_mode = import_job_id_on_async()

    # -- bookkeeping --

    @property
    def operations(self) -> list[PlannedOperation]:
        return self.state.planned

    @property
    def step(self) -> RunStep:
        return RunStep.parse(self.job.step)

    def _save(self, *, status: str, step: RunStep | str, **fields: Any) -> None:
        """Commit the step (and the run's state) on the job row now: the next worker starts from here."""
        job_mark_step(self.job, status=status, step=str(step), result=self.state.to_json(), **fields)

    def _status(self, index: int, phase: Phase) -> str:
        # The last operation (the import, when there is one) goes through submitting → polling as docs/states.md §3.6
        # says; an uninstall before it keeps the job claimed, because a job may not return from polling to submitting.
        if index != len(self.operations) - 1:
            return self.job.status
        if phase == Phase.SUBMIT and self.job.status != JobStatus.POLLING:
            return JobStatus.SUBMITTING
        return JobStatus.POLLING

    def _defer(self, seconds: float, *, step: RunStep | None = None, message: str = "") -> NoReturn:
        raise JobDeferred(seconds, status=self.job.status, step=str(step or self.job.step), message=message)

    def _settings_row(self) -> DeploymentSettings | None:
        if self.promotion.settings_version_id:
            return DeploymentSettings.objects.get(pk=self.promotion.settings_version_id)
        return current_settings_of(promotion=self.promotion)

    def _refresh_promotion(self) -> None:
        self.promotion.refresh_from_db()

    # -- outcomes through the workflow --

    def _ensure_running(self) -> None:
        if self.promotion.status == PromotionStatus.QUEUED:
            workflow.promotion_mark_running(
                promotion_id=self.promotion.pk,
                job_id=self.job.pk,
                previous_version=self.state.previous_version,
                context=self.context,
            )
            self._refresh_promotion()

    def fail(self, code: str, message: str, *, result: dict[str, Any] | None = None) -> NoReturn:
        """Record the failure on the promotion (once) and end the job as failed with the same code. A
        promotion still queued fails from there: nothing ran on the target."""
        self._refresh_promotion()
        if self.promotion.status in (PromotionStatus.QUEUED, PromotionStatus.RUNNING):
            workflow.promotion_mark_failed(
                promotion_id=self.promotion.pk,
                error_code=code,
                error_message=message,
                result={**(result or {}), "operations": self.state.done_json()},
                context=self.context,
            )
        raise JobFailed(code, message)

    def attention(self, message: str) -> NoReturn:
        """The outcome is unknown: flag the promotion and leave the job for an admin to resolve."""
        self._refresh_promotion()
        if not self.promotion.attention_required:
            workflow.promotion_set_attention(
                promotion_id=self.promotion.pk, required=True, message=message, context=self.context
            )
        raise JobNeedsAttention(message)

    # -- the steps --

    def run(self) -> dict[str, Any]:
        if self.promotion.status == PromotionStatus.QUEUED:
            # Nothing was submitted yet: a promotion overtaken while it waited is cancelled, never run.
            superseded = self._supersede_if_overtaken()
            if superseded is not None:
                return superseded
        if self.state.operations is None:
            self._prepare()
        if self.promotion.status == PromotionStatus.QUEUED:
            refusal = self._start_refusal()
            if refusal is not None:
                return self._give_back(refusal.code, refusal.message)
            self._check_source_policy()
        if not self.state.checked:
            self._recheck()
        self._ensure_running()
        while self.state.next_index < len(self.operations):
            self._operation(self.state.next_index)
        return self._finish()

    def _supersede_if_overtaken(self) -> dict[str, Any] | None:
        overtaken_by = workflow.promotion_cancel_if_overtaken(
            promotion=self.promotion, context=self.context, own_job_id=self.job.pk
        )
        if overtaken_by is None:
            return None
        self._refresh_promotion()
        return {"ran": False, "superseded_by": overtaken_by.pk, "message": self.promotion.error_message}

    def _prepare(self) -> None:
        facts = read_target(client=self.client, unique_name=self.promotion.solution.unique_name)
        self.state.promotion_id = self.promotion.pk
        self.state.operations = planned_operations(promotion=self.promotion)
        self.state.next_index = 0
        self.state.done = []
        self.state.previous_version = facts.installed.version if facts.installed else ""
        self._save(status=self.job.status, step=RunStep(Phase.PREPARE))

    def _start_refusal(self) -> Any:
        """Why the promotion may not start now (window closed, stage frozen), or None: a run job may have
        waited a long time for the environment's slot."""
        now = timezone.now()
        stage = self.promotion.stage
        count = policy.approvals_count(promotion=self.promotion, approvals=self.promotion.approvals.all(), at=now)
        return policy.start_refusal(
            windows=list(stage.windows.all()),
            freezes=list(stage.freezes.filter(ends_at__gt=now)),
            scheduled_for=self.promotion.scheduled_for,
            freeze_overridden=count.freeze_overridden,
            at=now,
        )

    def _check_source_policy(self) -> None:
        """The stage's branch rule again, as when the promotion was requested: the rule may have been turned on or
        the branch rewritten since. Rollbacks restore what the target had and are never held to it."""
        if self.promotion.kind != PromotionKind.PROMOTION:
            return
        refusal = source_policy_refusal(stage=self.promotion.stage, version=self.promotion.version)
        if refusal is not None:
            self.fail(refusal.code, refusal.message)

    def _give_back(self, code: str, message: str) -> dict[str, Any]:
        """queued → scheduled through the workflow; beat queues it again (with a new job) when it may start."""
        workflow.promotion_requeue(promotion_id=self.promotion.pk, reason=f"{code}: {message}", context=self.context)
        return {"requeued": True, "reason": code, "message": message}

    def _recheck(self) -> None:
        """Pre-flight again just before submitting, without the package upload and the row counts (the
        pre-flight job did those): blockers appear between approval and run (someone imported meanwhile)."""
        report = promotion_preflight(
            promotion=self.promotion,
            client=self.client,
            stage_package=False,
            count_rows=False,
            settings_row=self._settings_row(),
        )
        if report.blockers:
            codes = ", ".join(check.code for check in report.blockers)
            reasons = " ".join(check.message for check in report.blockers)
            self.fail(
                "preflight_blocked",
                f"Pre-flight found blockers just before submitting: {codes}. {reasons}"[:4000],
                result={"preflight": report.to_dict()},
            )
        self.state.checked = True
        self.state.preflight = {"status": report.status, "codes": report.codes()}
        self._save(status=self.job.status, step=RunStep(Phase.CHECKED))

    def _operation(self, index: int) -> None:
        operation = self.operations[index]
        if not self.job.async_operation_id and not self.job.import_job_id:
            if self._maybe_sent(index):
                if not self._adopt(index):
                    # After an uninstall the solution is absent; before the first operation it had previous_version.
                    expected = self.state.previous_version if index == 0 else ""
                    if not target_unchanged(client=self.client, operation=operation, expected_version=expected):
                        self.attention(
                            f"{operation.label} may have been submitted, no operation of it was found, "
                            "and the target no longer has what it had before: the outcome is unknown."
                        )
                    self._submit(index, after_uncertainty=True)
            else:
                self._submit(index, after_uncertainty=False)
        outcome = self._poll(index)
        self._complete(index, outcome)

    def _maybe_sent(self, index: int) -> bool:
        """True when a submit of this operation may have reached Dataverse without us keeping its handle."""
        step = self.step
        if step.is_(Phase.SUBMIT, index) or self.state.uncertain == index:
            return True
        # Submitting (or polling) without a handle: a crash, or someone reset the row. Be careful.
        return self.job.status in (JobStatus.SUBMITTING, JobStatus.POLLING) and not step.is_(Phase.WAIT, index)

    def _attempt_started(self) -> datetime:
        started = self.state.first_submitted_at
        return started or self.job.submitted_at or self.job.claimed_at or timezone.now()

    # -- submit --

    def _submit(self, index: int, *, after_uncertainty: bool) -> NoReturn:
        operation = self.operations[index]
        status = self._status(index, Phase.SUBMIT)
        now = timezone.now()
        if not after_uncertainty or self.state.first_submitted_at is None:
            self.state.first_submitted_at = now
        submit_step, poll_step = RunStep(Phase.SUBMIT, index), RunStep(Phase.POLL, index)
        job_progress(self.job, 10 + 60 * index // max(1, len(self.operations)), f"Submitting {operation.label}")

        def before_send(package_sha256: str | None, import_job_id: str | None) -> None:
            # Committed before the call: a crash from here on leaves a row that says "maybe submitted".
            uploads = (
                {} if package_sha256 is None else {"package_sha256": package_sha256, "import_job_id": import_job_id}
            )
            self._save(status=status, step=submit_step, submitted_at=now, async_operation_id="", **uploads)

        try:
            async_id, import_job_id = send_operation(
                client=self.client,
                job_id=self.job.pk,
                promotion=self.promotion,
                operation=operation,
                settings_document=self._settings_document,
                before_send=before_send,
            )
        except ArtifactChanged as changed:
            self.fail("checksum_mismatch", str(changed))
        except (dv.EnvironmentBusy, dv.Throttled, dv.ConnectionFailed) as refused:
            # Refused before anything started (the lock, a 429, no connection): nothing of ours runs
            # because of this request. Unless an earlier submit may still be in flight, the next try
            # submits directly instead of looking for an operation.
            wait = refused.retry_after or busy_retry_seconds()
            if isinstance(refused, dv.Throttled):
                self._persist_throttle()
            if after_uncertainty:
                self.state.uncertain = index
                self._save(status=status, step=submit_step)
                self._defer(
                    wait,
                    message=f"{self.promotion.target_environment} is busy; our submit may still be "
                    f"in flight ({refused.message}); looking again later",
                )
            self._save(status=status, step=RunStep(Phase.WAIT, index))
            self._defer(wait, message=f"{self.promotion.target_environment} is busy ({refused.message}); retrying")
        except dv.TransientError as unknown:
            # The request may have been accepted (lost answer, timeout, gateway error): never resubmit
            # blindly; the next pass looks for the operation first.
            self.state.uncertain = index
            self._save(status=status, step=submit_step)
            self._defer(ADOPT_AFTER_SECONDS, message=f"Submit outcome unknown ({unknown}); looking for the operation")
        except dv.DataverseError as refusal:
            if is_duplicate_import_job_id(refusal):
                # Our own ImportJobId exists already: the earlier submit arrived.
                self.state.uncertain = index
                self._save(status=status, step=submit_step)
                self._defer(ADOPT_AFTER_SECONDS, message="The import was submitted before; adopting it")
            self.fail(refusal.code or "dataverse_error", f"{operation.label} was refused: {refusal.message}")
        self.state.uncertain = None
        self._save(
            status=self._status(index, Phase.POLL),
            step=poll_step,
            async_operation_id=async_id,
            import_job_id=import_job_id,
        )
        crash_point("after_submit")
        self._defer(poll_seconds(), step=poll_step, message=f"Submitted {operation.label}")

    def _settings_document(self) -> SettingsDocument | None:
        document = settings_document_of(self._settings_row())
        return document or None

    # -- adoption --

    def _adopt(self, index: int) -> bool:
        """Find the operation a submit that may have been sent started, and continue with it."""
        found = find_started_operation(
            client=self.client,
            job=self.job,
            operation=self.operations[index],
            started=self._attempt_started(),
            done=self.state.done,
        )
        if found is None:
            return False
        self.state.adopted = found.facts
        self.state.uncertain = None
        self._save(
            status=self._status(index, Phase.POLL),
            step=RunStep(Phase.POLL, index),
            async_operation_id=found.async_operation_id,
            import_job_id=found.import_job_id,
        )
        logger.info("job %s adopted %s", self.job.pk, found.facts)
        return True

    # -- polling --

    def _poll(self, index: int) -> Outcome:
        """One look at the operation: its outcome when it has ended, else a deferral to the next look."""
        operation = self.operations[index]
        try:
            seen = look_at_operation(client=self.client, job=self.job, operation=operation)
        except OperationGone as gone:
            self.attention(str(gone))
        if isinstance(seen, Outcome):
            return seen
        waited = timezone.now() - self._attempt_started()
        if waited > import_max_wait():
            self.attention(
                f"{operation.label} is still running after {waited.total_seconds() / 3600:.1f} h "
                f"(ALM_IMPORT_MAX_WAIT): the outcome is unknown."
            )
        message = f"{operation.label}: {seen.what}"
        job_progress(self.job, 20 + 60 * index // max(1, len(self.operations)), message)
        self._defer(poll_interval(waited=waited), step=RunStep(Phase.POLL, index), message=message)

    # -- completion --

    def _complete(self, index: int, outcome: Outcome) -> None:
        operation = self.operations[index]
        record = completed_record(client=self.client, job=self.job, operation=operation, outcome=outcome)
        if not outcome.succeeded:
            self.state.done.append(record)
            code = outcome.error_code or (record.import_log or {}).get("error_code") or "operation_failed"
            self.fail(
                code,
                outcome.error_message or f"{operation.label} failed.",
                result={
                    "failed_operation": operation.label,
                    "import_log": record.import_log,
                    "components": record.components or [],
                    "async_operation_id": record.async_operation_id,
                    "import_job_id": record.import_job_id,
                    "previous_version": self.state.previous_version,
                },
            )
        record.adopted, self.state.adopted = self.state.adopted, None
        self.state.done.append(record)
        self.state.next_index = index + 1
        self.state.first_submitted_at = None
        if index + 1 < len(self.operations):
            # The next operation gets its own handles; this one's stay in the run's record.
            self._save(status=self.job.status, step=RunStep(Phase.DONE, index), async_operation_id="", import_job_id="")
        else:
            self._save(status=JobStatus.FINISHING, step=RunStep(Phase.FINISH))

    def _finish(self) -> dict[str, Any]:
        if self.job.status != JobStatus.FINISHING:
            self._save(status=JobStatus.FINISHING, step=RunStep(Phase.FINISH))
        job_progress(self.job, 90, "Refreshing the target's inventory")
        result = run_result(
            state=self.state, job=self.job, promotion=self.promotion, client=self.client, context=self.context
        )
        self._refresh_promotion()
        if self.promotion.status == PromotionStatus.RUNNING:
            workflow.promotion_mark_succeeded(promotion_id=self.promotion.pk, result=result, context=self.context)
        return result

    # -- transient trouble --

    def _persist_throttle(self) -> None:
        """Share a Retry-After with every worker through the environment row (only ever moved later)."""
        until = throttle_not_before(self.client.environment_url)
        if until is not None:
            environment_share_throttle(environment_id=self.promotion.target_environment_id, until=until)

    def transient(self, exc: dv.TransientError | OperationalError) -> NoReturn:
        """A read failed for now (throttled, 5xx, timeout; or our database: a deadlock victim, a lost
        connection): come back later, within bounds. Every step is safe to repeat."""
        if isinstance(exc, dv.Throttled):
            self._persist_throttle()
        in_flight = bool(self.job.async_operation_id or self.job.import_job_id) or self._maybe_sent_any()
        attempts = self.state.transient_attempts + 1
        self.state.transient_attempts = attempts
        if not in_flight and attempts > MAX_TRANSIENT_ATTEMPTS:
            self.fail("target_unreachable", f"Gave up after {attempts - 1} attempts: {exc}")
        if in_flight and timezone.now() - self._attempt_started() > import_max_wait():
            self.attention(f"The target did not answer for longer than ALM_IMPORT_MAX_WAIT: {exc}")
        self._save(status=self.job.status, step=self.job.step)
        retry_after = exc.retry_after if isinstance(exc, dv.TransientError) else None
        wait = retry_after or min(60.0, 2.0 * 2 ** min(attempts, 5))
        self._defer(wait, message=f"Temporary trouble ({type(exc).__name__}: {exc}); retrying")

    def _maybe_sent_any(self) -> bool:
        step = self.step
        return (step.phase == Phase.SUBMIT and step.index is not None) or self.job.status == JobStatus.SUBMITTING


def _settled(job: Job, promotion: Promotion) -> dict[str, Any] | None:
    """A run that already reported its outcome (the worker died before the job's own finish)."""
    if promotion.run_job_id != job.pk:
        return None
    if promotion.status in (PromotionStatus.SUCCEEDED, PromotionStatus.ROLLED_BACK):
        return dict(promotion.result or {})
    if promotion.status == PromotionStatus.FAILED:
        raise JobFailed(promotion.error_code or "import_failed", promotion.error_message or "The import failed.")
    return None


def import_client_for(environment: Environment) -> DataverseClient:
    """A client for the target, with the runner's retry policy and timeouts."""
    timeouts = replace(IMPORT_TIMEOUTS, read=float(settings.ALM_IMPORT_READ_TIMEOUT))
    return deployment_client_for(environment, retry_policy=IMPORT_RETRY, timeouts=timeouts)


def promotion_run(*, job: Job, context: AuditContext, client_factory: ClientFactory | None = None) -> dict[str, Any]:
    """Carry out an IMPORT (or HOLDING_CLEANUP) job: the promotion's Dataverse operations, crash-safe.

    Safe to run any number of times: each pass continues from the step the job row records, and a pass
    over a promotion whose outcome is already reported returns (or fails with) that outcome.
    """
    promotion = promotion_for_job(job=job)
    if promotion is None:
        raise JobFailed("promotion_not_found", "The promotion of this job does not exist.")
    settled = _settled(job, promotion)
    if settled is not None:
        return settled
    if promotion.status not in (PromotionStatus.QUEUED, PromotionStatus.RUNNING):
        raise JobFailed("promotion_not_runnable", f"The promotion is {promotion.status}; nothing to run.")
    if promotion.status == PromotionStatus.RUNNING and promotion.run_job_id not in (None, job.pk):
        raise JobFailed("promotion_taken", f"Job {promotion.run_job_id} runs this promotion.")
    client = (client_factory or import_client_for)(promotion.target_environment)
    run = ImportRun(job=job, promotion=promotion, client=client, context=context)
    with client:
        try:
            return run.run()
        except (dv.TransientError, OperationalError) as exc:
            run.transient(exc)
        except DomainError as refusal:
            # The workflow refused a transition (e.g. the promotion is no longer this job's): end the job
            # with the refusal's code instead of an internal error.
            raise JobFailed(refusal.code, refusal.message) from refusal
        except dv.DataverseError as exc:
            run.fail(exc.code or "dataverse_error", f"Dataverse refused a request: {exc.message}")
