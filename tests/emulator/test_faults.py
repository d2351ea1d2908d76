"""Fault injection per org: throttling, 5xx bursts, slow responses, dropped connections, failing and
never-ending imports."""

from __future__ import annotations

import time

import pytest
import requests

from tests.emulator.packages import b64, make_solution
from tests.support.emulator import EmulatorOrg

PACKAGE = make_solution(
    "Faulty", "1.0.0.0", tables=("emt_faulty",), workflows=(("3c4d5e6f-1111-4222-8333-944445555777", "Flow"),)
)


@pytest.mark.parametrize(
    ("code", "hex_code"),
    [("requests", "0x80072322"), ("execution_time", "0x80072321"), ("concurrency", "0x80072326")],
)
def test_throttling_for_n_requests(emulator_org: EmulatorOrg, code: str, hex_code: str) -> None:
    emulator_org.set_faults(throttle={"code": code, "retry_after": 4, "count": 2})
    for _ in range(2):
        response = emulator_org.get("WhoAmI()")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "4"
        assert response.json()["error"]["code"] == hex_code
    assert emulator_org.get("WhoAmI()").status_code == 200


def test_throttling_for_t_seconds(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(throttle={"code": "0x80072322", "retry_after": 1, "seconds": 1.5})
    assert emulator_org.get("WhoAmI()").status_code == 429
    assert emulator_org.get("WhoAmI()").status_code == 429
    time.sleep(1.6)
    assert emulator_org.get("WhoAmI()").status_code == 200


def test_server_error_burst(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(server_errors={"count": 2, "status": 503})
    assert [emulator_org.get("WhoAmI()").status_code for _ in range(3)] == [503, 503, 200]
    emulator_org.set_faults(server_errors={"count": 1, "status": 500})
    response = emulator_org.get("WhoAmI()")
    assert response.status_code == 500
    assert set(response.json()["error"]) == {"code", "message"}


def test_slow_responses(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(delay={"seconds": 0.4, "count": 1})
    started = time.monotonic()
    assert emulator_org.get("WhoAmI()").status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    emulator_org.get("WhoAmI()")
    assert time.monotonic() - started < 0.4
    emulator_org.set_faults(delay={"seconds": 1.0})
    with pytest.raises(requests.exceptions.ReadTimeout):
        emulator_org.http.get(emulator_org.api_url + "WhoAmI()", headers=emulator_org.headers(), timeout=0.3)
    emulator_org.clear_faults()


def test_connection_dropped_after_the_import_was_accepted(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(drop_after_import={"count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)})
    assert emulator_org.import_count("Faulty") == 1
    running = emulator_org.get("asyncoperations?$select=asyncoperationid&$filter=operationtype eq 203").json()["value"]
    assert len(running) == 1
    assert emulator_org.wait_for_operation(running[0]["asyncoperationid"])["statuscode"] == 30
    assert emulator_org.get("solutions?$select=uniquename&$filter=uniquename eq 'Faulty'").json()["value"]


def test_sync_import_can_be_dropped_too(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(drop_after_import={"count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        emulator_org.post("ImportSolution", json={"CustomizationFile": b64(PACKAGE)})
    assert emulator_org.get("solutions?$select=uniquename&$filter=uniquename eq 'Faulty'").json()["value"]


def test_import_failing_with_a_given_error(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(
        import_failure={"code": "0x8004F039", "message": "The component could not be imported.", "count": 1}
    )
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    operation = emulator_org.wait_for_operation(handles["AsyncOperationId"])
    assert (operation["statecode"], operation["statuscode"]) == (3, 31)
    assert operation["message"] == operation["friendlymessage"] == "The component could not be imported."
    assert operation["errorcode"] == 0x8004F039 - (1 << 32)
    data = emulator_org.get(f"importjobs({handles['ImportJobKey']})?$select=data").json()["data"]
    assert 'result="failure" errorcode="0x8004F039" errortext="The component could not be imported."' in data
    assert "<solutionManifest" in data and 'result="success"' in data  # the manifest was fine, a component failed
    assert not emulator_org.get("solutions?$filter=uniquename eq 'Faulty'").json()["value"]
    again = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    assert emulator_org.wait_for_operation(again["AsyncOperationId"])["statuscode"] == 30


def test_sync_import_failing_with_a_given_error(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(import_failure={"code": "0x80048033", "message": "Injected.", "count": 1})
    response = emulator_org.post("ImportSolution", json={"CustomizationFile": b64(PACKAGE)})
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "0x80048033", "message": "Injected."}


def test_import_that_never_finishes_until_cancelled(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(import_never_finishes={"count": 1})
    handles = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": b64(PACKAGE)}).json()
    time.sleep(0.8)  # longer than the org's operation duration
    row = emulator_org.get(f"asyncoperations({handles['AsyncOperationId']})?$select=statecode,statuscode").json()
    assert (row["statecode"], row["statuscode"]) == (2, 20)
    job = emulator_org.get(f"importjobs({handles['ImportJobKey']})?$select=progress,completedon").json()
    assert job["completedon"] is None and 0 < job["progress"] < 100
    assert emulator_org.post("PublishAllXml", json={}).status_code == 429
    cancelled = emulator_org.server.admin(
        "POST", f"/orgs/{emulator_org.name}/operations/{handles['AsyncOperationId']}/cancel"
    )
    assert (cancelled["statecode"], cancelled["statuscode"]) == (3, 32)
    assert emulator_org.post("PublishAllXml", json={}).status_code == 204


def test_faults_are_per_org(emulator_org: EmulatorOrg) -> None:
    other = emulator_org.server.new_org()
    emulator_org.set_faults(server_errors={"count": 5})
    assert other.get("WhoAmI()").status_code == 200
    assert emulator_org.get("WhoAmI()").status_code == 503
    faults = emulator_org.server.admin("GET", f"/orgs/{emulator_org.name}/faults")
    assert faults["server_errors"]["remaining"] == 4
    emulator_org.clear_faults()
    assert emulator_org.get("WhoAmI()").status_code == 200


def test_request_counters(emulator_org: EmulatorOrg) -> None:
    before = emulator_org.counters()["requests"][emulator_org.name]
    for _ in range(3):
        emulator_org.get("WhoAmI()")
    assert emulator_org.counters()["requests"][emulator_org.name] == before + 3
