"""Rollback on the emulator: the plan with its costs, the artifacts, and every strategy carried out, with
the version and the tables the target has afterwards (docs/dataverse.md §11.4)."""

from __future__ import annotations

import pytest

from alm_portal.errors import DomainError
from alm_portal.jobs.choices import JobStatus
from deployments.rollback import rollback_artifact_for, rollback_plan
from solutions.models import SolutionVersion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    BASE_TABLES,
    SUCCESS,
    as_user,
    checks_by_code,
    contoso_fixture,
    job_of,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db

WITH_EXTRA = (*BASE_TABLES, "ud_testentity9")


@pytest.fixture(name="deployed")
def deployed_fixture(contoso):
    """Test has 1.1.0.0, then 1.2.0.0 (which adds ud_testentity9, holding 777 rows) replaced it."""
    old = contoso.promote(contoso.upload(success_package("1.1.0.0")), "test")
    new = contoso.promote(contoso.upload(success_package("1.2.0.0", WITH_EXTRA)), "test")
    assert (old.status, new.status, new.previous_version) == ("succeeded", "succeeded", "1.1.0.0")
    org = contoso.orgs["test"]
    org.server.admin("POST", f"/orgs/{org.name}/tables/ud_testentity9", {"rows": 777})
    return new


def by_strategy(plan):
    return {entry["strategy"]: entry for entry in plan}


# --- the plan ------------------------------------------------------------------------------------------


def test_the_plan_lists_every_strategy_with_what_it_costs(contoso, deployed):
    plan = by_strategy(rollback_plan(promotion=deployed))

    upgrade = plan["reversion_upgrade"]
    assert upgrade["available"] is True and upgrade["resulting_version"] == "1.2.0.1"
    [loss] = upgrade["data_loss"]
    assert (loss["table"], loss["column"], loss["rows"], loss["approximate"]) == ("ud_testentity9", None, 777, True)
    assert loss["as_of"]
    assert (upgrade["requires_admin"], upgrade["requires_confirmation"]) == (False, False)

    update = plan["reversion_update"]
    assert (update["available"], update["resulting_version"], update["data_loss"]) == (True, "1.2.0.1", [])

    uninstall = plan["uninstall_reinstall"]
    assert uninstall["resulting_version"] == "1.1.0.0"
    assert (uninstall["requires_admin"], uninstall["requires_confirmation"], uninstall["confirmation"]) == (
        True,
        True,
        SUCCESS,
    )
    assert {entry["table"] for entry in uninstall["data_loss"]} == set(WITH_EXTRA)
    assert all(entry["rows"] is not None for entry in uninstall["data_loss"])

    for holding in ("holding_apply", "holding_remove"):
        assert plan[holding]["available"] is False and "no holding solution" in plan[holding]["reason"]
    assert "restore_backup" not in plan


def test_a_recorded_backup_adds_the_manual_restore_option(contoso, deployed):
    deployed.backup_reference = "backup-2026-03-04T09:55Z"
    deployed.save(update_fields=["backup_reference"])

    restore = by_strategy(rollback_plan(promotion=deployed))["restore_backup"]

    assert restore["manual"] is True and restore["label"].startswith("restore backup ")
    assert "loses all data written since" in restore["reason"]
    assert restore["backup_reference"] == "backup-2026-03-04T09:55Z"


def test_only_the_latest_deployment_can_be_rolled_back(contoso, deployed):
    first = contoso.stages["test"].promotions.order_by("pk").first()

    plan = by_strategy(rollback_plan(promotion=first))

    assert all(not plan[s]["available"] for s in ("reversion_upgrade", "reversion_update", "uninstall_reinstall"))
    assert "later deployment" in plan["reversion_upgrade"]["reason"]


def test_a_first_install_has_nothing_to_go_back_to(contoso):
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    plan = by_strategy(rollback_plan(promotion=promotion))

    assert plan["reversion_upgrade"]["available"] is False
    assert "first install" in plan["reversion_upgrade"]["reason"]


def test_an_unreachable_target_still_gives_a_plan_from_the_inventory(contoso, deployed):
    def unreachable(environment):
        raise ValueError("no route to host")

    plan = by_strategy(rollback_plan(promotion=deployed, client_factory=unreachable))

    assert plan["reversion_upgrade"]["available"] is True
    assert plan["reversion_upgrade"]["data_loss"][0]["rows"] is None
    assert "inventory" in plan["reversion_upgrade"]["note"]


# --- artifacts --------------------------------------------------------------------------------------------


def test_a_reversioned_artifact_goes_above_everything_and_is_reused(contoso, deployed):
    context = as_user(contoso.maker)

    copy = rollback_artifact_for(promotion=deployed, strategy="reversion_upgrade", context=context)
    again = rollback_artifact_for(promotion=deployed, strategy="reversion_update", context=context)

    old = SolutionVersion.objects.get(solution=deployed.solution, version_key="1.1.0.0")
    assert (copy.version_key, copy.source_kind, copy.restores_version_id) == ("1.2.0.1", "reversioned", old.pk)
    assert copy.managed_manifest["version"] != old.managed_manifest["version"]
    assert again.pk == copy.pk
    same = rollback_artifact_for(promotion=deployed, strategy="uninstall_reinstall", context=context)
    current = rollback_artifact_for(promotion=deployed, strategy="holding_apply", context=context)
    assert (same.pk, current.pk) == (old.pk, deployed.version_id)


def test_no_artifact_without_an_earlier_version(contoso):
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    with pytest.raises(DomainError) as refusal:
        rollback_artifact_for(promotion=promotion, strategy="reversion_upgrade", context=as_user(contoso.maker))
    assert refusal.value.code == "invalid_state"


# --- each strategy, carried out -----------------------------------------------------------------------------


def test_reversion_upgrade_removes_what_was_added_with_its_data(contoso, deployed):
    rollback = contoso.rollback(deployed, "reversion_upgrade")

    assert rollback.status == "succeeded", (rollback.error_code, rollback.error_message)
    assert contoso.installed("test")["version"] == "1.2.0.1"
    tables = contoso.tables("test")
    assert "ud_testentity9" not in tables and set(BASE_TABLES) <= set(tables)
    deployed.refresh_from_db()
    assert (deployed.status, deployed.rolled_back_by_id) == ("rolled_back", rollback.pk)
    assert rollback.previous_version == "1.2.0.0"
    checks = checks_by_code(rollback.preflight_result)
    assert checks["data_loss"]["details"]["data_loss"][0]["table"] == "ud_testentity9"


def test_reversion_update_keeps_what_was_added(contoso, deployed):
    rollback = contoso.rollback(deployed, "reversion_update")

    assert rollback.status == "succeeded", (rollback.error_code, rollback.error_message)
    assert contoso.installed("test")["version"] == "1.2.0.1"
    assert contoso.tables("test")["ud_testentity9"]["rows"] == 777
    assert "data_loss" not in checks_by_code(rollback.preflight_result)


def test_uninstall_reinstall_goes_back_to_the_old_version_itself(contoso, deployed):
    rollback = contoso.rollback(deployed, "uninstall_reinstall", by=contoso.admin, confirm=SUCCESS)

    assert rollback.status == "succeeded", (rollback.error_code, rollback.error_message)
    assert contoso.installed("test")["version"] == "1.1.0.0"
    tables = contoso.tables("test")
    assert "ud_testentity9" not in tables and set(BASE_TABLES) <= set(tables)
    kinds = [operation["kind"] for operation in rollback.result["operations"]]
    assert kinds == ["uninstall", "import"]
    checks = checks_by_code(rollback.preflight_result)
    assert checks["version_rollback"]["details"] == {"installed_version": "1.2.0.0", "version": "1.1.0.0"}
    assert {entry["table"] for entry in checks["data_loss"]["details"]["data_loss"]} == set(WITH_EXTRA)
    assert job_of(rollback).status == JobStatus.SUCCEEDED
    assert contoso.orgs["test"].import_count(SUCCESS, "1.1.0.0") == 2  # first deployment, then the reinstall


def test_holding_apply_finishes_a_stuck_upgrade(contoso, deployed):
    contoso.orgs["test"].install(success_package("1.3.0.0", BASE_TABLES), mode="holding")
    contoso.upload(success_package("1.3.0.0", BASE_TABLES))
    plan = by_strategy(rollback_plan(promotion=deployed))
    assert plan["holding_apply"]["available"] is True and plan["holding_apply"]["resulting_version"] == "1.3.0.0"
    assert [entry["table"] for entry in plan["holding_apply"]["data_loss"]] == ["ud_testentity9"]

    rollback = contoso.rollback(deployed, "holding_apply", by=contoso.admin)

    assert rollback.status == "succeeded", (rollback.error_code, rollback.error_message)
    assert contoso.installed("test")["version"] == "1.3.0.0"
    assert contoso.installed("test", "Success_Upgrade") is None
    assert "ud_testentity9" not in contoso.tables("test")
    assert rollback.result["operations"][0]["kind"] == "delete_and_promote"
    found = checks_by_code(rollback.preflight_result)["holding_solution_found"]
    assert found["details"]["holding_version"] == "1.3.0.0"


def test_holding_remove_drops_a_stuck_upgrade(contoso, deployed):
    contoso.orgs["test"].install(success_package("1.3.0.0", BASE_TABLES), mode="holding")

    rollback = contoso.rollback(deployed, "holding_remove", by=contoso.admin)

    assert rollback.status == "succeeded", (rollback.error_code, rollback.error_message)
    assert contoso.installed("test")["version"] == "1.2.0.0"
    assert contoso.installed("test", "Success_Upgrade") is None
    assert contoso.tables("test")["ud_testentity9"]["rows"] == 777
    assert rollback.result["operations"][0] == {
        **rollback.result["operations"][0],
        "kind": "uninstall",
        "solution": "Success_Upgrade",
    }


def test_a_holding_strategy_without_a_holding_solution_is_blocked_at_preflight(contoso, deployed):
    from deployments import workflow

    rollback = workflow.rollback_request(
        promotion=deployed, strategy="holding_remove", requested_by=contoso.admin, context=as_user(contoso.admin)
    )
    rollback = contoso.preflight(rollback)

    assert rollback.preflight_status == "blocked"
    assert "holding_solution_missing" in checks_by_code(rollback.preflight_result)
