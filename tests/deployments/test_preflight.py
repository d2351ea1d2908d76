"""Pre-flight on the emulator: each check produces its code, and the result reaches the workflow once."""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments.choices import ImportMode
from deployments.preflight import manifest_missing_dependencies, preflight_run
from deployments.services import stage_update
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    WORKER,
    as_user,
    checks_by_code,
    contoso_fixture,
    corpus_bytes,
    no_broker_for_inline_fixture,
    register_environment,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db

CONTOSO_SAMPLE = "Contoso_sample_1_0_0_1_managed.zip"


def preflight_of(contoso, version, stage="test"):
    promotion = contoso.preflight(contoso.request(version, stage))
    return promotion, checks_by_code(promotion.preflight_result)


def test_a_first_install_passes_with_its_facts(contoso):
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.0.0.0")))

    assert promotion.preflight_status == "passed"
    assert promotion.preflight_result["status"] == "passed"
    assert {"target_reachable", "version_new_install", "dependencies_ok", "settings_complete", "component_diff"} <= set(
        checks
    )
    assert checks["dependencies_ok"]["details"]["validated_by_stage_solution"] is True
    assert all(check["severity"] == "info" for check in checks.values())
    assert AuditEvent.objects.filter(action="promotion.preflight_finished", object_id=str(promotion.pk)).count() == 1


def test_an_upgrade_says_from_which_version_and_what_changes(contoso):
    contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.1.0.0")))

    assert promotion.preflight_status == "passed"
    assert checks["version_upgrade"]["details"] == {"installed_version": "1.0.0.0", "version": "1.1.0.0"}
    assert checks["component_diff"]["details"]["in_registry"] is True
    assert checks["component_diff"]["details"]["installed_version"] == "1.0.0.0"


def test_the_same_version_is_nothing_to_do(contoso):
    version = contoso.upload(success_package("1.0.0.0"))
    contoso.orgs["test"].install(success_package("1.0.0.0"))
    promotion, checks = preflight_of(contoso, version)

    assert promotion.preflight_status == "blocked"
    assert checks["already_installed"]["severity"] == "blocker"
    assert "stage_validation_failed" not in checks  # not uploaded again to be told the same thing


def test_a_lower_version_only_goes_through_a_rollback(contoso):
    version = contoso.upload(success_package("1.0.0.0"))
    contoso.orgs["test"].install(success_package("1.1.0.0"))
    promotion, checks = preflight_of(contoso, version)

    assert promotion.preflight_status == "blocked"
    assert checks["version_lower"]["severity"] == "blocker"
    assert "rollback" in checks["version_lower"]["message"]


def test_a_managed_package_over_an_unmanaged_install_is_a_mismatch(contoso):
    contoso.orgs["test"].install(corpus_bytes("IncidentReporting_1_0_0_2.zip"))
    version = contoso.upload(corpus_bytes("IncidentReporting_1_0_0_5_managed.zip"))
    promotion, checks = preflight_of(contoso, version)

    assert promotion.preflight_status == "blocked"
    assert checks["managed_mismatch"]["details"] == {"installed_managed": False, "package_managed": True}


def test_missing_dependencies_found_by_stage_solution_block(contoso):
    promotion, checks = preflight_of(contoso, contoso.upload(corpus_bytes("MissingDependency_1_0_0_0_managed.zip")))

    assert promotion.preflight_status == "blocked"
    missing = checks["missing_dependencies"]
    assert missing["severity"] == "blocker"
    required = {entry["required"]["schema_name"] for entry in missing["details"]["stage_solution"]}
    assert "ud_testentity4" in required


def test_what_stage_solution_refuses_on_the_target_blocks(contoso):
    from tests.emulator.packages import make_solution

    # The target has a Success from another publisher: a managed solution's publisher cannot change.
    contoso.orgs["test"].install(make_solution(SUCCESS, "0.9.0.0", publisher="otherpub", prefix="oth"))
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.0.0.0")))

    assert promotion.preflight_status == "blocked"
    assert checks["version_upgrade"]["details"]["installed_version"] == "0.9.0.0"
    refused = checks["stage_validation_failed"]
    assert refused["severity"] == "blocker" and refused["details"]["error_code"] == "0x8004801C"


def test_dependencies_on_named_solutions_are_checked_against_the_target():
    manifest = {
        "missing_dependencies": [
            {"required": {"type_name": "Entity", "schema_name": "a", "solution": "MobileOfflineMembership (1.0.0.3)"}},
            {"required": {"type_name": "Entity", "schema_name": "b", "solution": "Contoso_Core (2.0)"}},
            {"required": {"type_name": "Entity", "schema_name": "c", "solution": "Active"}},
        ]
    }
    missing, unjudged = manifest_missing_dependencies(
        manifest=manifest, solution_names={"mobileofflinemembership", "default"}
    )

    assert [entry["required"]["schema_name"] for entry in missing] == ["b"]
    assert unjudged == 1  # "Active": only StageSolution can tell


def test_settings_coverage_names_what_has_no_value(contoso):
    version = contoso.upload(corpus_bytes(CONTOSO_SAMPLE))
    promotion, checks = preflight_of(contoso, version)

    assert promotion.preflight_status == "blocked"
    incomplete = checks["settings_incomplete"]["details"]["missing"]
    assert incomplete == [
        {
            "kind": "connection_reference",
            "name": "new_D365connection",
            "connector": "/providers/Microsoft.PowerApps/apis/shared_dynamicscrmonline",
        }
    ]
    # The environment variable carries a value in the package: a warning, not a blocker.
    assert checks["settings_package_values"]["details"]["entries"][0]["name"] == "new_ContosoURL"


def test_complete_settings_pass(contoso):
    contoso.set_settings(
        "test",
        {
            "EnvironmentVariables": [
                {"SchemaName": "new_ContosoURL", "Value": "https://test.contoso.com"},
                {"SchemaName": "new_Retired", "Value": "left over"},
            ],
            "ConnectionReferences": [
                {
                    "LogicalName": "new_D365connection",
                    "ConnectionId": "0123456789abcdef0123456789abcdef",
                    "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_dynamicscrmonline",
                }
            ],
        },
    )
    _, checks = preflight_of(contoso, contoso.upload(corpus_bytes(CONTOSO_SAMPLE)))

    assert "settings_incomplete" not in checks and "settings_package_values" not in checks
    assert checks["settings_complete"]["details"]["settings_version"] == 1
    assert checks["settings_unused"]["details"]["names"] == ["new_Retired"]


def test_an_upgrade_that_drops_a_table_reports_the_rows_it_deletes(contoso):
    with_extra = ("ud_testentity1", "ud_testentity2", "ud_testentity9")
    contoso.promote(contoso.upload(success_package("1.2.0.0", with_extra)), "test")
    contoso.orgs["test"].server.admin(
        "POST", f"/orgs/{contoso.orgs['test'].name}/tables/ud_testentity9", {"rows": 1234}
    )
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.3.0.0")))

    assert promotion.preflight_status == "warnings"
    [loss] = checks["data_loss"]["details"]["data_loss"]
    assert loss["table"] == "ud_testentity9" and loss["column"] is None
    assert loss["rows"] == 1234 and loss["approximate"] is True and loss["as_of"]


def test_in_update_mode_removed_components_stay(contoso):
    with_extra = ("ud_testentity1", "ud_testentity2", "ud_testentity9")
    stage_update(stage=contoso.stages["test"], context=as_user(contoso.admin), import_mode=ImportMode.UPDATE)
    contoso.promote(contoso.upload(success_package("1.2.0.0", with_extra)), "test")
    _, checks = preflight_of(contoso, contoso.upload(success_package("1.3.0.0")))

    assert "data_loss" not in checks
    assert [c["name"].lower() for c in checks["components_kept"]["details"]["components"]] == ["testentity9"]


def test_a_version_installed_outside_the_portal_makes_the_diff_unknown(contoso):
    contoso.orgs["test"].install(success_package("1.0.0.0"))
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.1.0.0")))

    assert promotion.preflight_status == "warnings"
    assert checks["component_diff_unknown"]["details"] == {"installed_version": "1.0.0.0"}


def test_a_stuck_holding_solution_blocks_imports(contoso):
    org = contoso.orgs["test"]
    org.install(success_package("1.0.0.0"))
    org.install(success_package("1.1.0.0"), mode="holding")
    promotion, checks = preflight_of(contoso, contoso.upload(success_package("1.2.0.0")))

    assert promotion.preflight_status == "blocked"
    assert checks["holding_solution_present"]["details"] == {"holding": "Success_Upgrade", "holding_version": "1.1.0.0"}


def test_a_target_that_refuses_the_credential_is_unreachable(contoso):
    from environments.models import Credential

    promotion = contoso.request(contoso.upload(success_package("1.0.0.0")), "test")
    # The credential's application is unknown to the target's tenant (a deleted app registration).
    Credential.objects.filter(environment=contoso.environments["test"]).update(
        client_id="00000000-0000-0000-0000-00000000dead"
    )
    promotion = contoso.preflight(promotion)

    checks = checks_by_code(promotion.preflight_result)
    assert promotion.preflight_status == "blocked"
    assert checks["target_unreachable"]["severity"] == "blocker"
    assert set(checks) == {"target_unreachable"}


def test_the_job_reports_once_and_a_second_run_changes_nothing(contoso):
    promotion, _ = preflight_of(contoso, contoso.upload(success_package("1.0.0.0")))
    job = Job.objects.get(pk=promotion.preflight_job_id)
    events = AuditEvent.objects.filter(action="promotion.preflight_finished").count()

    again = preflight_run(job=job, context=WORKER)

    assert job.status == JobStatus.SUCCEEDED
    assert again == promotion.preflight_result
    assert AuditEvent.objects.filter(action="promotion.preflight_finished").count() == events
