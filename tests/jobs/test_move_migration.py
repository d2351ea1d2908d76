"""The Job model moved from the deployments app to alm_portal.jobs with migrations that change only the state
(jobs 0001, solutions 0005, deployments 0009): a populated database migrated from the state before the move
keeps its jobs, the links from promotions and solution versions to them, and their audit history."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_cancel
from deployments import selectors
from deployments.models import Promotion
from solutions.models import SolutionVersion

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Before the move: no jobs app, the model in deployments (the last migrations written before it).
BEFORE_THE_MOVE = [("jobs", None), ("deployments", "0008_one_open_promotion_per_version_and_stage")]
LAST_BEFORE_THE_MOVE = [
    ("deployments", "0008_one_open_promotion_per_version_and_stage"),
    ("solutions", "0004_fill_solution_identity"),
]


def _old_job(apps: Any, *, kind: str, status: str, environment_id: int | None, **fields: Any) -> Any:
    now = timezone.now()
    return apps.get_model("deployments", "Job").objects.create(
        kind=kind,
        status=status,
        environment_id=environment_id,
        uses_solution_slot=kind in ("export", "import"),
        created_at=now,
        updated_at=now,
        **fields,
    )


def test_jobs_their_links_and_their_audit_history_survive_the_move(api_world: Any) -> None:
    promotion = Promotion.objects.get(pk=api_world.ids["promotion"])
    version = SolutionVersion.objects.get(pk=api_world.ids["version"])
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_THE_MOVE)
    try:
        applied = MigrationRecorder(connection).applied_migrations()
        assert ("jobs", "0001_initial") not in applied
        assert ("deployments", "0009_job_moves_to_jobs_app") not in applied
        old_apps = MigrationExecutor(connection).loader.project_state(LAST_BEFORE_THE_MOVE).apps
        with transaction.atomic():
            export = _old_job(
                old_apps,
                kind="export",
                status="succeeded",
                environment_id=version.source_environment_id,
                params={"solution_id": version.solution_id},
                result={"version": version.version},
            )
            preflight = _old_job(
                old_apps, kind="preflight", status="succeeded", environment_id=promotion.target_environment_id
            )
            run = _old_job(
                old_apps,
                kind="import",
                status="pending",
                environment_id=promotion.target_environment_id,
                params={"promotion_id": promotion.pk},
                request_id="before-the-move",
            )
            old_apps.get_model("solutions", "SolutionVersion").objects.filter(pk=version.pk).update(
                source_job_id=export.pk
            )
            old_apps.get_model("deployments", "Promotion").objects.filter(pk=promotion.pk).update(
                preflight_job_id=preflight.pk, run_job_id=run.pk
            )
            for job in (export, preflight, run):
                record(context=AuditContext.system(), action="job.enqueued", target=job, after={"kind": job.kind})
        written_before = AuditEvent.objects.filter(object_type="deployments.job").count()
        MigrationExecutor(connection).migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)

    moved = {job.pk: job for job in Job.objects.filter(pk__in=[export.pk, preflight.pk, run.pk])}
    assert {pk: (job.kind, job.status) for pk, job in moved.items()} == {
        export.pk: ("export", "succeeded"),
        preflight.pk: ("preflight", "succeeded"),
        run.pk: ("import", "pending"),
    }
    assert moved[run.pk].request_id == "before-the-move" and moved[run.pk].params == {"promotion_id": promotion.pk}
    assert moved[export.pk].uses_solution_slot and not moved[preflight.pk].uses_solution_slot
    promotion.refresh_from_db()
    assert (promotion.preflight_job, promotion.run_job) == (moved[preflight.pk], moved[run.pk])
    assert SolutionVersion.objects.get(pk=version.pk).source_job == moved[export.pk]
    assert selectors.promotion_for_run_job(job=moved[run.pk]) == promotion

    # The history written before the move is the job's history after it, and new events join it.
    assert [event.action for event in selectors.job_log(job=moved[run.pk])] == ["job.enqueued"]
    assert job_cancel(job=moved[run.pk], context=AuditContext.system(), reason="after the move")
    assert [event.action for event in selectors.job_log(job=moved[run.pk])] == ["job.enqueued", "job.cancelled"]
    assert AuditEvent.objects.filter(object_type="deployments.job").count() == written_before + 1
    assert not AuditEvent.objects.filter(object_type="jobs.job").exists()
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert out.getvalue().startswith("checked=")
