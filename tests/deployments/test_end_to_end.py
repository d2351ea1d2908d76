"""End to end on the emulator with a real Celery worker over Redis and PostgreSQL: the workflow functions
drive, the worker runs every pre-flight and import job (issue 5, "Must show")."""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    BASE_TABLES,
    SUCCESS,
    as_user,
    checks_by_code,
    contoso_fixture,
    corpus_bytes,
    job_of,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(name="worker")
def worker_fixture(celery_worker_factory, emulator):
    return celery_worker_factory(env={"ALM_DATAVERSE_CA_BUNDLE": str(emulator.ca_file)})


def status_of(promotion):
    return Promotion.objects.filter(pk=promotion.pk).values_list("status", "preflight_status").get()


def request_and_check(contoso, worker, version, stage):
    promotion = contoso.request(version, stage)
    worker.wait_for(lambda: status_of(promotion)[1] != "pending", timeout=60)
    promotion.refresh_from_db()
    return promotion


def approve(promotion, person):
    return workflow.promotion_approve(promotion=promotion, user=person, context=as_user(person))


def finished(worker, promotion):
    """Wait until the promotion and its run job have both ended: the promotion's outcome is committed
    first, the job's own finish a moment later in its own transaction."""
    worker.wait_for(lambda: status_of(promotion)[0] in ("succeeded", "failed"), timeout=90)
    promotion.refresh_from_db()
    worker.wait_for(lambda: job_of(promotion).status in ("succeeded", "failed", "needs_attention"), timeout=90)
    return promotion


def actions(promotion):
    return list(
        AuditEvent.objects.filter(object_type="deployments.promotion", object_id=str(promotion.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )


def test_dev_to_test_with_one_approval_then_prod_with_two(contoso, worker):
    approver, second = contoso.approvers
    version = contoso.upload(success_package("1.0.0.0"))

    to_test = request_and_check(contoso, worker, version, "test")
    assert to_test.preflight_status == "passed"
    approve(to_test, approver)
    to_test = finished(worker, to_test)
    assert to_test.status == "succeeded", to_test.error_message

    to_prod = request_and_check(contoso, worker, version, "prod")
    approve(to_prod, approver)
    assert status_of(to_prod)[0] == "pending_approval"  # prod needs two people
    approve(to_prod, second)
    to_prod = finished(worker, to_prod)
    assert to_prod.status == "succeeded", to_prod.error_message

    for stage in ("test", "prod"):
        assert contoso.installed(stage)["version"] == "1.0.0.0"
        assert contoso.orgs[stage].import_count(SUCCESS) == 1
    assert actions(to_prod) == [
        "promotion.requested",
        "promotion.preflight_finished",
        "promotion.approval_recorded",
        "promotion.approved",
        "promotion.started",
        "promotion.succeeded",
    ]
    assert to_prod.result["installed_version"] == "1.0.0.0" and to_prod.result["components"]


def test_a_failing_import_is_recorded_with_its_code_and_log(contoso, worker):
    org = contoso.orgs["test"]
    # Present at pre-flight and approval, uninstalled by someone before the run.
    org.install(success_package("1.0.0.0", ("ud_testentity4",), unique_name="DependencyProvider"))
    promotion = request_and_check(
        contoso, worker, contoso.upload(corpus_bytes("MissingDependency_1_0_0_0_managed.zip")), "test"
    )
    assert promotion.preflight_status == "passed", promotion.preflight_result
    operation = org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "DependencyProvider"}).json()
    org.wait_for_operation(operation["AsyncOperationId"])

    approve(promotion, contoso.approvers[0])
    promotion = finished(worker, promotion)

    assert (promotion.status, promotion.error_code) == ("failed", "0x8004801D")
    log = promotion.result["import_log"]
    assert log["result"] == "failure" and log["xml"]
    assert any(entry["required_name"] == "ud_testentity4" for entry in log["missing_dependencies"])
    assert job_of(promotion).error_code == "0x8004801D"
    assert actions(promotion)[-2:] == ["promotion.started", "promotion.failed"]


def test_a_rollback_runs_on_the_worker_and_marks_what_it_rolled_back(contoso, worker):
    approver, _ = contoso.approvers
    for version_text, tables in (("1.1.0.0", BASE_TABLES), ("1.2.0.0", (*BASE_TABLES, "ud_testentity9"))):
        promotion = request_and_check(contoso, worker, contoso.upload(success_package(version_text, tables)), "test")
        approve(promotion, approver)
        promotion = finished(worker, promotion)
        assert promotion.status == "succeeded", promotion.error_message

    rollback = workflow.rollback_request(
        promotion=promotion, strategy="reversion_upgrade", requested_by=contoso.maker, context=as_user(contoso.maker)
    )
    worker.wait_for(lambda: status_of(rollback)[1] != "pending", timeout=60)
    rollback.refresh_from_db()
    assert (
        checks_by_code(rollback.preflight_result)["data_loss"]["details"]["data_loss"][0]["table"] == "ud_testentity9"
    )
    approve(rollback, approver)
    rollback = finished(worker, rollback)

    promotion.refresh_from_db()
    assert rollback.status == "succeeded", rollback.error_message
    assert (promotion.status, promotion.rolled_back_by_id) == ("rolled_back", rollback.pk)
    assert contoso.installed("test")["version"] == "1.2.0.1"
    assert "ud_testentity9" not in contoso.tables("test")


def test_two_promotions_to_one_environment_run_one_after_the_other_and_to_two_at_once(contoso, worker):
    from alm_portal.jobs.models import Job

    for org in contoso.orgs.values():
        org.settings(operation_duration=2)
    approver, second = contoso.approvers
    first, other = (contoso.upload(success_package("1.0.0.0", unique_name=name)) for name in ("First", "Other"))
    same = [request_and_check(contoso, worker, version, "test") for version in (first, other)]
    for promotion in same:
        approve(promotion, approver)
    same = [finished(worker, promotion) for promotion in same]
    jobs = sorted((Job.objects.get(pk=p.run_job_id) for p in same), key=lambda job: job.submitted_at)
    assert all(p.status == "succeeded" for p in same)
    assert jobs[1].submitted_at >= jobs[0].finished_at  # the environment's one slot

    from deployments.services import stage_update

    stage_update(stage=contoso.stages["prod"], context=as_user(contoso.admin), requires_previous_stage=False)
    to_test = request_and_check(contoso, worker, contoso.upload(success_package("1.0.0.0", unique_name="Both")), "test")
    to_prod = request_and_check(contoso, worker, contoso.upload(success_package("1.0.0.1", unique_name="Prod")), "prod")
    approve(to_test, approver)
    approve(to_prod, approver)
    approve(to_prod, second)
    a, b = (Job.objects.get(pk=finished(worker, p).run_job_id) for p in (to_test, to_prod))
    assert a.submitted_at < b.finished_at and b.submitted_at < a.finished_at  # both at once
