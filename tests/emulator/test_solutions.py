"""Solution operations with Dataverse's rules (docs/dataverse.md §4-§11): every error code, upgrade vs update,
holding solutions, uninstall, export, staging, history and the import counters."""

from __future__ import annotations

import base64
import io
import uuid
import zipfile

import pytest

from tests.emulator.packages import b64, corpus, make_solution, manifest_of
from tests.support.emulator import EmulatorOrg

V1 = make_solution(
    "Widget",
    "1.0.0.0",
    tables=("emt_gadget", "emt_gizmo"),
    workflows=(("1f0c3a52-8a4e-4c3b-9d62-0e5b7a1c2d30", "Notify"),),
)
V2 = make_solution("Widget", "2.0.0.0", tables=("emt_gadget",))  # drops a table and the flow


def solution(org: EmulatorOrg, name: str) -> dict | None:
    rows = org.get(f"solutions?$select=solutionid,uniquename,version,ismanaged&$filter=uniquename eq '{name}'").json()[
        "value"
    ]
    return rows[0] if rows else None


def components(org: EmulatorOrg, name: str) -> set[tuple[int, str]]:
    row = solution(org, name)
    assert row is not None
    result = org.get(
        f"solutioncomponents?$select=componenttype,objectid&$filter=_solutionid_value eq {row['solutionid']}"
    )
    return {(r["componenttype"], r["objectid"]) for r in result.json()["value"]}


def table_rows(org: EmulatorOrg, table: str) -> int | None:
    response = org.get(f'RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["{table}"]')
    if response.status_code == 404:
        return None
    return response.json()["EntityRecordCountCollection"]["Values"][0]


def import_sync(org: EmulatorOrg, package: bytes, **extra: object):  # type: ignore[no-untyped-def]
    return org.post(
        "ImportSolution",
        json={
            "CustomizationFile": b64(package),
            "OverwriteUnmanagedCustomizations": False,
            "PublishWorkflows": True,
            **extra,
        },
    )


def import_async(org: EmulatorOrg, package: bytes, action: str = "ImportSolutionAsync", **extra: object) -> dict:
    response = org.post(action, json={"CustomizationFile": b64(package), **extra})
    assert response.status_code == 200, response.text
    handles = response.json()
    handles["operation"] = org.wait_for_operation(handles["AsyncOperationId"])
    return handles


# --- import rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["solution.xml", "customizations.xml", "[Content_Types].xml"])
def test_each_root_file_is_required(emulator_org: EmulatorOrg, missing: str) -> None:
    response = import_sync(emulator_org, make_solution("Broken", "1.0.0.0", omit=missing))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80048060"


def test_invalid_xml_and_invalid_version(emulator_org: EmulatorOrg) -> None:
    broken_xml = make_solution("Broken", "1.0.0.0", solution_xml="<ImportExportXml><SolutionManifest>")
    assert import_sync(emulator_org, broken_xml).json()["error"]["code"] == "0x8004802C"
    bad_version = make_solution("Broken", "one.two")
    assert import_sync(emulator_org, bad_version).json()["error"]["code"] == "0x8004801A"


def test_first_import_installs_and_writes_history(emulator_org: EmulatorOrg) -> None:
    assert import_sync(emulator_org, V1).status_code == 204
    row = solution(emulator_org, "Widget")
    assert row is not None and row["version"] == "1.0.0.0" and row["ismanaged"] is True
    history = emulator_org.get(
        "msdyn_solutionhistories?$select=msdyn_name,msdyn_operation,msdyn_suboperation,msdyn_status,msdyn_result,"
        "msdyn_solutionversion,msdyn_ismanaged,msdyn_publishername,msdyn_starttime,msdyn_endtime"
    ).json()["value"]
    assert len(history) == 1
    entry = history[0]
    assert (entry["msdyn_operation"], entry["msdyn_suboperation"], entry["msdyn_status"], entry["msdyn_result"]) == (
        0,
        1,
        1,
        True,
    )
    assert entry["msdyn_solutionversion"] == "1.0.0.0"
    assert entry["msdyn_publishername"] == "emutestpub"
    assert entry["msdyn_starttime"] and entry["msdyn_endtime"]


def test_managed_and_unmanaged_do_not_mix(emulator_org: EmulatorOrg) -> None:
    assert import_sync(emulator_org, make_solution("Mixed", "1.0.0.0", managed=False)).status_code == 204
    managed_over = import_sync(emulator_org, make_solution("Mixed", "2.0.0.0", managed=True))
    assert managed_over.json()["error"]["code"] == "0x80048040"
    assert import_sync(emulator_org, make_solution("Other", "1.0.0.0", managed=True)).status_code == 204
    unmanaged_over = import_sync(emulator_org, make_solution("Other", "2.0.0.0", managed=False))
    assert unmanaged_over.json()["error"]["code"] == "0x80048041"


@pytest.mark.parametrize("version", ["1.0.0.0", "0.9.0.0", "1.0"])
def test_managed_update_needs_a_strictly_higher_version(emulator_org: EmulatorOrg, version: str) -> None:
    emulator_org.install(V1)
    response = import_sync(emulator_org, make_solution("Widget", version))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80048541",
        "message": "The import solution must have a higher version than the existing solution it is upgrading",
    }


def test_publisher_of_a_managed_solution_cannot_change(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(V1)
    response = import_sync(emulator_org, make_solution("Widget", "3.0.0.0", publisher="someoneelse"))
    assert response.json()["error"]["code"] == "0x8004801C"
    assert "cannot be changed from emutestpub to someoneelse" in response.json()["error"]["message"]


def test_system_solutions_cannot_be_imported(emulator_org: EmulatorOrg) -> None:
    response = import_sync(emulator_org, make_solution("Default", "9.0.0.0", managed=False))
    assert response.json()["error"]["code"] == "0x80048046"


def test_corpus_missing_dependency_fails_as_it_would_for_real(emulator_org: EmulatorOrg) -> None:
    handles = import_async(emulator_org, corpus("MissingDependency_1_0_0_0_managed.zip"))
    operation = handles["operation"]
    assert (operation["statecode"], operation["statuscode"]) == (3, 31)
    assert operation["errorcode"] == -2147188707  # 0x8004801D
    assert operation["message"].startswith("The following solution cannot be imported: MissingDependency.")
    assert 'schemaName="ud_testentity4"' in operation["message"]
    job = emulator_org.get(f"importjobs({handles['ImportJobKey']})?$select=data,progress,completedon").json()
    assert '<result result="failure"' in job["data"]
    assert "<MissingDependencies" in job["data"]
    assert job["completedon"]
    assert solution(emulator_org, "MissingDependency") is None
    history = emulator_org.get("msdyn_solutionhistories?$select=msdyn_result,msdyn_errorcode").json()["value"]
    assert history == [
        {
            "@odata.etag": history[0]["@odata.etag"],
            "msdyn_result": False,
            "msdyn_errorcode": "0x8004801D",
            "msdyn_solutionhistoryid": history[0]["msdyn_solutionhistoryid"],
        }
    ]


def test_dependencies_are_satisfied_by_installed_components(emulator_org: EmulatorOrg) -> None:
    needs = make_solution(
        "Needs",
        "1.0.0.0",
        tables=("emt_needy",),
        missing=({"type": "1", "schemaName": "emt_provided", "solution": "Active"},),
    )
    assert import_sync(emulator_org, needs).json()["error"]["code"] == "0x8004801D"
    emulator_org.install(make_solution("Provider", "1.0.0.0", tables=("emt_provided",)))
    assert import_sync(emulator_org, needs).status_code == 204
    assert emulator_org.get("RetrieveMissingDependencies(SolutionUniqueName=@p)?@p='Needs'").json()["value"] == []
    blockers = emulator_org.get("RetrieveDependenciesForUninstall(SolutionUniqueName=@p)?@p='Provider'").json()["value"]
    assert len(blockers) == 1
    assert blockers[0]["requiredcomponenttype"] == 1


def test_platform_components_resolve_through_installed_platform_solutions(emulator_org: EmulatorOrg) -> None:
    package = make_solution(
        "UsesPlatform",
        "1.0.0.0",
        missing=(
            {
                "type": "61",
                "schemaName": "msdyn_/Images/AppModule_Default_Icon.png",
                "solution": "AppModuleWebResources (2.5)",
            },
        ),
    )
    assert import_sync(emulator_org, package).status_code == 204
    d365 = make_solution(
        "NeedsD365",
        "1.0.0.0",
        missing=({"type": "1", "schemaName": "msdyn_workorder", "solution": "msdynce_Service (9.0.5.56)"},),
    )
    assert import_sync(emulator_org, d365).json()["error"]["code"] == "0x8004801D"


# --- update, upgrade, holding --------------------------------------------------------------------------------
def test_update_keeps_components_the_new_version_lacks(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(V1)
    before = components(emulator_org, "Widget")
    handles = import_async(emulator_org, V2)
    assert handles["operation"]["statuscode"] == 30
    assert components(emulator_org, "Widget") == before
    assert table_rows(emulator_org, "emt_gizmo") is not None
    assert solution(emulator_org, "Widget")["version"] == "2.0.0.0"  # type: ignore[index]
    history = emulator_org.get("msdyn_solutionhistories?$select=msdyn_suboperation,msdyn_solutionversion").json()
    assert {(h["msdyn_suboperation"], h["msdyn_solutionversion"]) for h in history["value"]} == {
        (1, "1.0.0.0"),  # New
        (3, "2.0.0.0"),  # Update
    }


def test_stage_and_upgrade_removes_components_and_their_data(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(V1)
    before = components(emulator_org, "Widget")
    assert table_rows(emulator_org, "emt_gizmo")
    handles = import_async(emulator_org, V2, action="StageAndUpgradeAsync")
    assert handles["operation"]["statuscode"] == 30, handles["operation"]
    after = components(emulator_org, "Widget")
    assert after < before
    assert (29, "1f0c3a52-8a4e-4c3b-9d62-0e5b7a1c2d30") in before - after
    assert table_rows(emulator_org, "emt_gizmo") is None  # the table went, and its rows with it
    assert table_rows(emulator_org, "emt_gadget")
    assert solution(emulator_org, "Widget_Upgrade") is None


def test_corpus_upgrade_drops_what_the_new_version_lacks(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(corpus("IncidentReporting_1_0_0_1_managed.zip"))  # 1.0.0.2, three tables
    before = components(emulator_org, "IncidentReporting")
    import_async(emulator_org, corpus("IncidentReporting_1_0_0_5_managed.zip"), action="StageAndUpgradeAsync")
    assert solution(emulator_org, "IncidentReporting")["version"] == "1.0.0.5"  # type: ignore[index]
    assert len(components(emulator_org, "IncidentReporting")) < len(before)
    assert table_rows(emulator_org, "csa_csincident")  # kept: the new version still has it


def test_holding_solution_then_delete_and_promote(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(V1)
    base_id = solution(emulator_org, "Widget")["solutionid"]  # type: ignore[index]
    assert import_sync(emulator_org, V2, HoldingSolution=True).status_code == 204
    holding = solution(emulator_org, "Widget_Upgrade")
    assert holding is not None and holding["version"] == "2.0.0.0"
    assert solution(emulator_org, "Widget")["version"] == "1.0.0.0"  # type: ignore[index]
    assert table_rows(emulator_org, "emt_gizmo")  # nothing deleted yet

    second = import_sync(emulator_org, make_solution("Widget", "3.0.0.0"), HoldingSolution=True)
    assert second.status_code == 400  # one pending upgrade at a time

    promoted = emulator_org.post("DeleteAndPromote", json={"UniqueName": "Widget"})
    assert promoted.status_code == 200
    assert promoted.json()["SolutionId"] == holding["solutionid"]
    assert solution(emulator_org, "Widget_Upgrade") is None
    current = solution(emulator_org, "Widget")
    assert current["version"] == "2.0.0.0" and current["solutionid"] != base_id  # type: ignore[index]
    assert table_rows(emulator_org, "emt_gizmo") is None
    again = emulator_org.post("DeleteAndPromote", json={"UniqueName": "Widget"})
    assert again.status_code == 400


def test_holding_needs_an_installed_managed_base(emulator_org: EmulatorOrg) -> None:
    assert import_sync(emulator_org, V2, HoldingSolution=True).status_code == 400


def test_stage_and_upgrade_installs_a_new_solution(emulator_org: EmulatorOrg) -> None:
    handles = import_async(emulator_org, V1, action="StageAndUpgradeAsync")
    assert handles["operation"]["statuscode"] == 30
    assert solution(emulator_org, "Widget")["version"] == "1.0.0.0"  # type: ignore[index]


def test_uninstall_removes_a_managed_solution_and_its_table_data(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(V1)
    assert table_rows(emulator_org, "emt_gadget")
    response = emulator_org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "Widget"})
    operation = emulator_org.wait_for_operation(response.json()["AsyncOperationId"])
    assert (operation["statecode"], operation["statuscode"], operation["operationtype"]) == (3, 30, 208)
    assert solution(emulator_org, "Widget") is None
    assert table_rows(emulator_org, "emt_gadget") is None
    history = emulator_org.get(
        "msdyn_solutionhistories?$select=msdyn_operation,msdyn_result&$filter=msdyn_operation eq 1"
    ).json()
    assert [h["msdyn_result"] for h in history["value"]] == [True]
    unknown = emulator_org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "Widget"})
    assert unknown.status_code == 404


def test_uninstalling_an_unmanaged_solution_keeps_its_components(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(make_solution("Loose", "1.0.0.0", managed=False, tables=("emt_loose",)))
    response = emulator_org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "Loose"})
    emulator_org.wait_for_operation(response.json()["AsyncOperationId"])
    assert solution(emulator_org, "Loose") is None
    assert table_rows(emulator_org, "emt_loose")


# --- export --------------------------------------------------------------------------------------------
def _zip(encoded: str) -> bytes:
    return base64.b64decode(encoded)


def test_export_returns_the_stored_package_with_managed_flag_and_version(emulator_org: EmulatorOrg) -> None:
    source = corpus("IncidentReporting_1_0_0_4.zip")
    emulator_org.install(source)
    unmanaged = _zip(
        emulator_org.post("ExportSolution", json={"SolutionName": "IncidentReporting", "Managed": False}).json()[
            "ExportSolutionFile"
        ]
    )
    managed = _zip(
        emulator_org.post("ExportSolution", json={"SolutionName": "incidentreporting", "Managed": True}).json()[
            "ExportSolutionFile"
        ]
    )
    assert "<Managed>0</Managed>" in manifest_of(unmanaged)
    assert "<Managed>1</Managed>" in manifest_of(managed)
    with zipfile.ZipFile(io.BytesIO(managed)) as exported, zipfile.ZipFile(io.BytesIO(source)) as original:
        assert exported.namelist() == original.namelist()
        assert exported.read("customizations.xml") == original.read("customizations.xml")

    solution_id = solution(emulator_org, "IncidentReporting")["solutionid"]  # type: ignore[index]
    assert emulator_org.patch(f"solutions({solution_id})", json={"version": "1.0.0.9"}).status_code == 204
    bumped = _zip(
        emulator_org.post("ExportSolution", json={"SolutionName": "IncidentReporting", "Managed": True}).json()[
            "ExportSolutionFile"
        ]
    )
    assert "<Version>1.0.0.9</Version>" in manifest_of(bumped)


def test_export_history_and_lock(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=30.0)
    emulator_org.install(make_solution("Exported", "1.0.0.0", managed=False))
    response = emulator_org.post("ExportSolutionAsync", json={"SolutionName": "Exported", "Managed": True})
    handles = response.json()
    too_early = emulator_org.post("DownloadSolutionExportData", json={"ExportJobId": handles["ExportJobId"]})
    assert too_early.status_code == 400
    busy = emulator_org.post("ExportSolution", json={"SolutionName": "Exported", "Managed": True})
    assert busy.status_code == 429
    emulator_org.complete_operation(handles["AsyncOperationId"])
    ready = emulator_org.post("DownloadSolutionExportData", json={"ExportJobId": handles["ExportJobId"]})
    assert "<Managed>1</Managed>" in manifest_of(_zip(ready.json()["ExportSolutionFile"]))
    rows = emulator_org.get(
        "msdyn_solutionhistories?$select=msdyn_operation,msdyn_status&$filter=msdyn_operation eq 2"
    ).json()
    assert [r["msdyn_status"] for r in rows["value"]] == [1]


def test_exported_managed_package_imports_elsewhere(emulator: object, emulator_org: EmulatorOrg) -> None:
    emulator_org.install(corpus("IncidentReporting_1_0_0_4.zip"))
    managed = emulator_org.post("ExportSolution", json={"SolutionName": "IncidentReporting", "Managed": True}).json()[
        "ExportSolutionFile"
    ]
    target = emulator_org.server.new_org()
    handles = target.post("ImportSolutionAsync", json={"CustomizationFile": managed}).json()
    operation = target.wait_for_operation(handles["AsyncOperationId"])
    assert operation["statuscode"] == 30, operation
    assert solution(target, "IncidentReporting")["ismanaged"] is True  # type: ignore[index]


# --- version changes, staging, parameters ------------------------------------------------------------------
def test_patch_version_of_unmanaged_but_not_managed(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(make_solution("Editable", "1.0.0.0", managed=False))
    emulator_org.install(make_solution("Locked", "1.0.0.0", managed=True))
    editable = solution(emulator_org, "Editable")["solutionid"]  # type: ignore[index]
    response = emulator_org.patch(
        f"solutions({editable})", json={"version": "1.2.0.0"}, headers={"Prefer": "return=representation"}
    )
    assert response.status_code == 200
    assert response.json()["version"] == "1.2.0.0"
    assert emulator_org.patch(f"solutions({editable})", json={"version": "not.a.version"}).status_code == 400
    assert emulator_org.patch(f"solutions({editable})", json={"ismanaged": True}).status_code == 400
    stale = emulator_org.patch(f"solutions({editable})", json={"version": "1.3.0.0"}, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    locked = solution(emulator_org, "Locked")["solutionid"]  # type: ignore[index]
    assert emulator_org.patch(f"solutions({locked})", json={"version": "1.2.0.0"}).status_code == 400
    assert emulator_org.patch(f"solutions({uuid.uuid4()})", json={"version": "1.2.0.0"}).status_code == 404


def test_stage_solution_validates_without_installing_and_feeds_an_import(emulator_org: EmulatorOrg) -> None:
    staged = emulator_org.post("StageSolution", json={"CustomizationFile": b64(V1)}).json()["StageSolutionResults"]
    assert staged["StageSolutionStatus"] == "Passed"
    assert staged["SolutionDetails"]["SolutionUniqueName"] == "Widget"
    assert staged["SolutionDetails"]["SolutionVersion"] == "1.0.0.0"
    assert solution(emulator_org, "Widget") is None
    upload = staged["StageSolutionUploadId"]
    response = emulator_org.post("ImportSolutionAsync", json={"SolutionParameters": {"StageSolutionUploadId": upload}})
    assert emulator_org.wait_for_operation(response.json()["AsyncOperationId"])["statuscode"] == 30
    assert solution(emulator_org, "Widget") is not None
    lower = emulator_org.post("StageSolution", json={"CustomizationFile": b64(V1)}).json()["StageSolutionResults"]
    assert lower["StageSolutionStatus"] == "Failed"
    assert lower["SolutionValidationResults"][0]["Message"].startswith("The import solution must have a higher version")


def test_import_job_id_switch(emulator: object, emulator_org: EmulatorOrg) -> None:
    """Both sides of unconfirmed.IMPORT_JOB_ID_ON_ASYNC_DEFAULT over HTTPS: "reject" as observed on-premises,
    "honour" (the default) as the ImportSolutionAsync reference lists the parameter:
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/importsolutionasync"""
    chosen = str(uuid.uuid4())
    emulator_org.settings(import_job_id_on_async="reject")
    rejected = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(V1), "ImportJobId": chosen})
    assert rejected.status_code == 400
    assert emulator_org.import_count("Widget") == 0
    emulator_org.settings(import_job_id_on_async="honour")
    honoured = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(V1), "ImportJobId": chosen})
    assert honoured.json()["ImportJobKey"] == chosen
    emulator_org.wait_for_operation(honoured.json()["AsyncOperationId"])
    duplicate = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(V2), "ImportJobId": chosen})
    assert duplicate.status_code == 400
    assert "duplicate import job id" in duplicate.json()["error"]["message"]


def test_sync_import_honours_import_job_id(emulator_org: EmulatorOrg) -> None:
    chosen = str(uuid.uuid4())
    assert import_sync(emulator_org, V1, ImportJobId=chosen).status_code == 204
    job = emulator_org.get(f"importjobs({chosen})?$select=solutionname,progress").json()
    assert (job["solutionname"], job["progress"]) == ("Widget", 100.0)


def test_required_and_unknown_parameters(emulator_org: EmulatorOrg) -> None:
    assert emulator_org.post("ImportSolution", json={}).status_code == 400
    assert emulator_org.post("ExportSolution", json={"SolutionName": "Default"}).status_code == 400  # Managed missing
    unknown = emulator_org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "x", "Force": True})
    assert unknown.status_code == 400
    assert "'Force'" in unknown.json()["error"]["message"]
    assert emulator_org.post("NoSuchAction", json={}).status_code == 404


def test_component_parameters_are_accepted(emulator_org: EmulatorOrg) -> None:
    response = emulator_org.post(
        "ImportSolutionAsync",
        json={
            "CustomizationFile": b64(corpus("Contoso_sample_1_0_0_1_managed.zip")),
            "ComponentParameters": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.environmentvariablevalue",
                    "schemaname": "sample_ev",
                    "value": "x",
                },
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.connectionreference",
                    "connectionreferencelogicalname": "sample_cr",
                    "connectionid": "ef3d1cbb2c3b4e7987e02486584689d3",
                    "connectorid": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
                },
            ],
        },
    )
    assert emulator_org.wait_for_operation(response.json()["AsyncOperationId"])["statuscode"] == 30
    state = emulator_org.server.admin("GET", "/state")["orgs"][emulator_org.name]
    assert state["environment_variable_values"] == {"sample_ev": "x"}
    assert state["connection_reference_bindings"]["sample_cr"]["connectionid"] == "ef3d1cbb2c3b4e7987e02486584689d3"


def test_import_counters_count_accepted_imports(emulator_org: EmulatorOrg) -> None:
    import_async(emulator_org, V1)
    import_sync(emulator_org, V1)  # refused by the rules after it was accepted: still an import attempt
    counts = emulator_org.counters()["imports"]
    assert [(c["solution"], c["version"], c["count"]) for c in counts] == [("Widget", "1.0.0.0", 2)]
    assert len(counts[0]["sha256"]) == 64
    emulator_org.install(V2)  # admin installs are not client imports
    assert emulator_org.import_count("Widget") == 2


def test_publish_all_writes_history(emulator_org: EmulatorOrg) -> None:
    assert emulator_org.post("PublishAllXml", json={}).status_code == 204
    rows = emulator_org.get("msdyn_solutionhistories?$select=msdyn_operation,msdyn_result").json()["value"]
    assert [(r["msdyn_operation"], r["msdyn_result"]) for r in rows] == [(4, True)]
