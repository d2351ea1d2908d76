"""Async operations (docs/dataverse.md §7, §8): state progression, import job progress and log, one operation at a
time."""

from __future__ import annotations

import time
from xml.etree import ElementTree

from tests.emulator.packages import b64, corpus, make_solution
from tests.support.emulator import EmulatorOrg

PACKAGE = make_solution(
    "Progress", "1.0.0.0", tables=("emt_progress",), workflows=(("7a2b3c4d-1111-4222-8333-944445555666", "Flow"),)
)


def test_operation_moves_through_the_documented_states(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=2.0)  # 0.4 s waiting, 1.6 s in progress: room for a busy CI box
    order = [(0, 0), (2, 20), (3, 30)]  # Waiting For Resources → In Progress → Succeeded (ENT-ASYNC)
    posted = time.monotonic()
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    op_id, job_id = handles["AsyncOperationId"], handles["ImportJobKey"]
    observations = []  # (seconds since the POST, state, progress)
    deadline = posted + 15
    while time.monotonic() < deadline:
        row = emulator_org.get(f"asyncoperations({op_id})?$select=statecode,statuscode,startedon,completedon").json()
        job = emulator_org.get(f"importjobs({job_id})?$select=progress,completedon").json()
        state = (row["statecode"], row["statuscode"])
        observations.append((time.monotonic() - posted, state, job["progress"]))
        if row["statecode"] == 3:
            assert row["startedon"] and row["completedon"] and job["completedon"]
            break
        assert row["completedon"] is None  # (the job may complete between the two reads)
        time.sleep(0.05)
    states = [state for _, state, _ in observations]
    assert states[-1] == (3, 30)
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)  # never goes back
    assert (2, 20) in states
    if observations[0][0] < 0.3:  # polled within the waiting window
        assert states[0] == (0, 0)
    progress = [p for _, _, p in observations]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert any(0 < p < 100 for p in progress)


def test_import_log_has_per_component_results(emulator_org: EmulatorOrg) -> None:
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    emulator_org.wait_for_operation(handles["AsyncOperationId"])
    data = emulator_org.get(f"importjobs({handles['ImportJobKey']})?$select=data").json()["data"]
    log = ElementTree.fromstring(data)
    assert log.findtext(".//solutionManifest/UniqueName") == "Progress"  # ALM-API documented paths
    assert log.find(".//solutionManifest/result").get("result") == "success"
    entity = log.find(".//entities/entity")
    assert entity.get("LocalizedName") == "emt_progress"
    assert entity[0].get("result") == "success" and entity[0].get("errorcode") == "0"
    assert log.find(".//workflows/workflow")[0].get("result") == "success"
    formatted = emulator_org.get(
        f"RetrieveFormattedImportJobResults(ImportJobId=@p)?@p={handles['ImportJobKey']}"
    ).json()
    assert "Progress" in formatted["FormattedResults"]


def test_one_solution_operation_at_a_time(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=30.0)  # finished below through the admin API, not by waiting
    first = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    for action, body in [
        ("ImportSolutionAsync", {"CustomizationFile": b64(make_solution("Other", "1.0.0.0"))}),
        ("ImportSolution", {"CustomizationFile": b64(make_solution("Other", "1.0.0.0"))}),
        ("StageAndUpgradeAsync", {"CustomizationFile": b64(make_solution("Other", "1.0.0.0"))}),
        ("ExportSolution", {"SolutionName": "Default", "Managed": False}),
        ("UninstallSolutionAsync", {"SolutionUniqueName": "Default"}),
        ("PublishAllXml", {}),
    ]:
        response = emulator_org.post(action, json=body)
        assert response.status_code == 429, (action, response.text)
        assert response.json()["error"]["code"] == "0x80071151"
        assert "because there is another [Import] running" in response.json()["error"]["message"]
    assert emulator_org.import_count("Other") == 0  # refused before acceptance
    emulator_org.complete_operation(first["AsyncOperationId"])
    assert emulator_org.post("PublishAllXml", json={}).status_code == 204


def test_reads_stay_possible_while_an_import_runs(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=30.0)
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    assert emulator_org.get("solutions?$select=uniquename").status_code == 200
    assert emulator_org.get("WhoAmI()").status_code == 200
    rows = emulator_org.get("asyncoperations?$select=operationtype,statecode&$filter=statecode ne 3").json()["value"]
    assert [r["operationtype"] for r in rows] == [203]
    emulator_org.complete_operation(handles["AsyncOperationId"])  # admin: make it due now
    assert emulator_org.get(f"asyncoperations({handles['AsyncOperationId']})").json()["statuscode"] == 30


def test_history_row_is_started_then_completed(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=30.0)
    handles = emulator_org.post(
        "ImportSolutionAsync", json={"CustomizationFile": b64(corpus("Success_1_0_0_0_managed.zip"))}
    ).json()
    started = emulator_org.get("msdyn_solutionhistories?$select=msdyn_status,msdyn_result,msdyn_endtime").json()[
        "value"
    ]
    assert [(h["msdyn_status"], h["msdyn_result"], h["msdyn_endtime"]) for h in started] == [(0, None, None)]
    emulator_org.complete_operation(handles["AsyncOperationId"])
    done = emulator_org.get("msdyn_solutionhistories?$select=msdyn_status,msdyn_result,msdyn_totaltime").json()["value"]
    assert [(h["msdyn_status"], h["msdyn_result"]) for h in done] == [(1, True)]
    assert isinstance(done[0]["msdyn_totaltime"], int)


def test_finding_an_operation_by_type_and_time(emulator_org: EmulatorOrg) -> None:
    """docs/states.md §3.6: a job that lost its handle looks for asyncoperations by type and createdon, importjobs by
    name."""
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    found = emulator_org.get(
        "asyncoperations?$select=asyncoperationid"
        "&$filter=operationtype eq 203 and createdon ge 2020-01-01T00:00:00Z&$orderby=createdon desc"
    ).json()
    assert [r["asyncoperationid"] for r in found["value"]] == [handles["AsyncOperationId"]]
    jobs = emulator_org.get("importjobs?$select=importjobid&$filter=solutionname eq 'Progress'").json()["value"]
    assert [j["importjobid"] for j in jobs] == [handles["ImportJobKey"]]
    emulator_org.wait_for_operation(handles["AsyncOperationId"])
