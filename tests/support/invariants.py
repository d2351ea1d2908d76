"""What must hold after any fault (issue 8): checked after every fault case and the soak.

- No job lost: every job is terminal; one whose outcome is unknown is `needs_attention` and its promotion shows
  `attention_required` (visible, never silently failed).
- One import per job: the emulator counted at most one import per import job, and exactly one for each job
  that succeeded (per target org, solution and version).
- The audit chain verifies (audit_verify over the whole chain and its checkpoints).
- No promotion running without a live lease: a `running` promotion's run job holds an unexpired lease or is
  waiting for its next step (not_before), or it is `needs_attention` with the promotion flagged. No job that
  has ended still holds a lease.

Helpers for driving a fault case to its end without waiting for wall-clock timeouts:
`expire_dead_leases()` does what time does to a killed worker's claim (its lease runs out), only for leases
whose owner process no longer exists; `dispatch()` is beat's dispatcher with a shortened idle threshold.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone

TERMINAL = ("succeeded", "failed", "cancelled", "needs_attention")


def org_of(environment: Any, orgs_by_url: dict[str, str] | None = None) -> str:
    """The emulator org behind an environment: by its URL in ``orgs_by_url`` (the admin API's org list; an org
    at its own origin has no name in its URL), else the first path segment (``https://127.0.0.1:PORT/<org>``)."""
    url = str(environment.url).rstrip("/")
    if orgs_by_url is not None and url in orgs_by_url:
        return orgs_by_url[url]
    return urlsplit(url).path.strip("/").split("/")[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expire_dead_leases() -> int:
    """Let the leases of dead worker processes run out now (the owner is host:pid:nonce, on this host)."""
    from alm_portal.jobs.models import Job

    past = timezone.now() - timedelta(minutes=5)
    expired = 0
    for job_id, owner in Job.objects.exclude(lease_owner="").values_list("pk", "lease_owner"):
        parts = owner.split(":")
        if len(parts) >= 2 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            expired += Job.objects.filter(pk=job_id, lease_owner=owner).update(
                lease_expires_at=past, updated_at=past, not_before=None
            )
    return expired


def dispatch(idle_seconds: float = 2.0) -> int:
    """Beat's dispatcher, re-sending rows idle for `idle_seconds` instead of 30 s (duplicates are harmless)."""
    from alm_portal.jobs.services import dispatch as job_dispatch

    original = job_dispatch.DISPATCH_AFTER
    job_dispatch.DISPATCH_AFTER = timedelta(seconds=idle_seconds)
    try:
        return job_dispatch.jobs_dispatch()
    finally:
        job_dispatch.DISPATCH_AFTER = original


def settle(
    job_ids: Iterable[int] | None = None,
    *,
    timeout: float = 120.0,
    tick: Callable[[], None] | None = None,
    alive: Callable[[], str | None] | None = None,
) -> None:
    """Run the dispatcher (and `tick`) until the jobs (all jobs by default) are terminal; the timeout is a
    guard against hangs. `alive` returns a reason to stop early (e.g. every worker died)."""
    from alm_portal.jobs.models import Job

    ids = list(job_ids) if job_ids is not None else None
    deadline = time.monotonic() + timeout
    while True:
        rows = Job.objects.all() if ids is None else Job.objects.filter(pk__in=ids)
        open_rows = list(rows.exclude(status__in=TERMINAL).values_list("pk", "status", "step", "not_before"))
        if not open_rows:
            return
        problem = alive() if alive else None
        if problem or time.monotonic() > deadline:
            raise AssertionError(f"jobs not settled ({problem or 'timeout'}): {open_rows[:20]}")
        expire_dead_leases()
        dispatch()
        if tick:
            tick()
        time.sleep(0.5)


def all_alive(*workers: Any) -> Callable[[], str | None]:
    """For settle(): stop waiting when a worker process that should do the work has exited."""

    def problem() -> str | None:
        dead = [worker.log_path.name for worker in workers if worker.process.poll() is not None]
        return f"worker exited: {dead}" if dead else None

    return problem


def check_leases(environments: Iterable[Any] | None = None) -> int:
    """The invariant that can be checked at any moment, not only at the end: no running promotion's job has
    ended, and no job is worked on under an expired lease (a live owner past its lease could race the next
    claimant). Returns the number of running promotions looked at."""
    from alm_portal.jobs.models import Job
    from deployments.models import Promotion

    now = timezone.now()
    running = Promotion.objects.filter(status="running")
    held = Job.objects.exclude(lease_owner="").filter(lease_expires_at__lt=now)
    if environments is not None:
        scope = [environment.pk for environment in environments]
        running = running.filter(target_environment_id__in=scope)
        held = held.filter(environment_id__in=scope)
    ended = running.filter(run_job__status__in=("succeeded", "failed", "cancelled"))
    assert not ended.exists(), f"promotions running behind ended jobs: {list(ended.values_list('pk', flat=True))}"
    for job_id, owner in held.values_list("pk", "lease_owner"):
        parts = owner.split(":")
        alive = len(parts) >= 2 and parts[1].isdigit() and _pid_alive(int(parts[1]))
        assert not alive, f"job {job_id} is held by a live worker ({owner}) past its lease"
    return running.count()


@dataclass
class InvariantReport:
    jobs: int = 0
    import_jobs: int = 0
    imports_seen: int = 0
    needs_attention: int = 0
    audit_checked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def check_invariants(
    emulator: Any, *, environments: Iterable[Any] | None = None, verify_audit: bool = True
) -> InvariantReport:
    """Assert the invariants over every job and promotion in the database (or those of `environments`);
    returns what it counted."""
    from alm_portal.audit.services import audit_verify
    from alm_portal.jobs.models import Job
    from deployments.models import Promotion

    report = InvariantReport()
    job_rows = Job.objects.select_related("environment")
    promotion_rows = Promotion.objects.all()
    if environments is not None:
        scope = [environment.pk for environment in environments]
        job_rows = job_rows.filter(environment_id__in=scope)
        promotion_rows = promotion_rows.filter(target_environment_id__in=scope)
    jobs = list(job_rows)
    report.jobs = len(jobs)
    report.by_status = dict(Counter(job.status for job in jobs))

    # No job lost.
    unfinished = [(job.pk, job.kind, job.status, job.step) for job in jobs if job.status not in TERMINAL]
    assert not unfinished, f"jobs left unfinished: {unfinished}"
    holding = [(job.pk, job.status, job.lease_owner) for job in jobs if job.lease_owner]
    assert not holding, f"ended jobs still hold a lease: {holding}"

    # Unknown outcomes are visible.
    for job in jobs:
        if job.status != "needs_attention":
            continue
        report.needs_attention += 1
        promotion_id = (job.params or {}).get("promotion_id")
        if promotion_id is not None:
            promotion = Promotion.objects.get(pk=promotion_id)
            assert promotion.attention_required, f"job {job.pk} needs attention but promotion {promotion_id} hides it"

    # No promotion running without a live lease (or a visible needs_attention).
    now = timezone.now()
    for promotion in promotion_rows.filter(status="running").select_related("run_job"):
        job = promotion.run_job
        assert job is not None, f"promotion {promotion.pk} runs without a job"
        live = bool(job.lease_owner) and job.lease_expires_at is not None and job.lease_expires_at > now
        waiting = job.status not in TERMINAL and not job.lease_owner
        flagged = job.status == "needs_attention" and promotion.attention_required
        assert live or waiting or flagged, f"promotion {promotion.pk} running without a live lease: job {job.pk}"
    check_leases(environments)

    # One import per job, per (org, solution, version).
    imports = [job for job in jobs if job.kind == "import"]
    report.import_jobs = len(imports)
    expected: dict[tuple[str, str, str], dict[str, int]] = {}
    orgs_by_url = {str(org["url"]).rstrip("/"): str(org["name"]) for org in emulator.admin("GET", "/orgs")}
    for job in imports:
        promotion = Promotion.objects.select_related("solution", "version").filter(run_job=job).first()
        if promotion is None or promotion.kind != "promotion" or job.environment is None:
            continue
        key = (org_of(job.environment, orgs_by_url), promotion.solution.unique_name, promotion.version.version)
        bucket = expected.setdefault(key, {"jobs": 0, "succeeded": 0})
        bucket["jobs"] += 1
        bucket["succeeded"] += job.status == "succeeded"
    counters_by_org: dict[str, dict[tuple[str, str], int]] = {}
    for org in {key[0] for key in expected}:
        counts: dict[tuple[str, str], int] = {}
        for entry in emulator.counters(org)["imports"]:
            counts[(entry["solution"], entry["version"])] = counts.get((entry["solution"], entry["version"]), 0) + int(
                entry["count"]
            )
        counters_by_org[org] = counts
    for (org, solution, version), bucket in expected.items():
        seen = counters_by_org[org].get((solution, version), 0)
        report.imports_seen += seen
        assert bucket["succeeded"] <= seen <= bucket["jobs"], (
            f"{org} {solution} {version}: emulator saw {seen} imports for {bucket['jobs']} jobs "
            f"({bucket['succeeded']} succeeded)"
        )

    if verify_audit:
        result = audit_verify()
        assert result.first_broken_seq is None, f"audit chain broken at {result.first_broken_seq}: {result.reason}"
        report.audit_checked = result.checked
    return report


__all__ = [
    "InvariantReport",
    "all_alive",
    "check_invariants",
    "check_leases",
    "dispatch",
    "expire_dead_leases",
    "org_of",
    "settle",
]
