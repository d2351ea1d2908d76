"""Each UNCONFIRMED switch in dataverse_emulator/unconfirmed.py flips one behaviour (in-process, no HTTP).

When real Dataverse is observed, flip the default there; these tests show both sides keep working.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dataverse_emulator import unconfirmed
from dataverse_emulator.app import Emulator
from dataverse_emulator.errors import DataverseError
from dataverse_emulator.store import now
from dataverse_emulator.wire import Request
from tests.emulator.packages import make_solution


@pytest.fixture
def app(tmp_path: Path) -> Emulator:
    emulator = Emulator(tmp_path / "state.json", default_operation_duration=0.0)
    emulator.port = 1
    emulator.admin.create_tenant("t1")
    emulator.admin.create_org({"name": "switches", "tenant_id": "t1", "operation_duration": 0.0})
    return emulator


def org(app: Emulator) -> dict:
    found = app.store.org("switches")
    assert found is not None
    return found


def finish(app: Emulator, handles: dict) -> dict:
    app.solutions.finalize_due(org(app), now() + 1)
    return org(app)["asyncoperations"][handles["AsyncOperationId"]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_structural_errors_fail_the_request_or_the_job(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"CustomizationFile": b64(b"not a zip")}
    with pytest.raises(DataverseError) as refused:
        app.solutions.submit_import_async(org(app), body, "import", "c")
    assert refused.value.code == "0x80048060"
    monkeypatch.setattr(unconfirmed, "STRUCTURAL_ERRORS_FAIL_REQUEST", False)
    operation = finish(app, app.solutions.submit_import_async(org(app), body, "import", "c"))
    assert (operation["statecode"], operation["statuscode"]) == (3, 31)
    assert operation["errorcode"] == -2147188640  # 0x80048060


def test_stage_and_upgrade_of_a_new_solution(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"CustomizationFile": b64(make_solution("Fresh", "1.0.0.0"))}
    assert finish(app, app.solutions.submit_import_async(org(app), body, "stage_and_upgrade", "c"))["statuscode"] == 30
    monkeypatch.setattr(unconfirmed, "STAGE_AND_UPGRADE_INSTALLS_NEW", False)
    body = {"CustomizationFile": b64(make_solution("Fresher", "1.0.0.0"))}
    assert finish(app, app.solutions.submit_import_async(org(app), body, "stage_and_upgrade", "c"))["statuscode"] == 31


@pytest.mark.parametrize("keeps_id", [False, True])
def test_promoted_solution_id(app: Emulator, monkeypatch: pytest.MonkeyPatch, keeps_id: bool) -> None:
    monkeypatch.setattr(unconfirmed, "UPGRADE_KEEPS_SOLUTION_ID", keeps_id)
    app.admin.install(org(app), {"file": b64(make_solution("Promo", "1.0.0.0", tables=("emt_promo",)))})
    base_id = next(s["solutionid"] for s in org(app)["solutions"].values() if s["uniquename"] == "Promo")
    app.admin.install(
        org(app), {"file": b64(make_solution("Promo", "2.0.0.0", tables=("emt_promo",))), "mode": "holding"}
    )
    promoted = app.solutions.delete_and_promote(org(app), {"UniqueName": "Promo"}, "c")["SolutionId"]
    assert (promoted == base_id) is keeps_id
    assert "1:emt_promo" in org(app)["components"]
    assert promoted in org(app)["components"]["1:emt_promo"]["solutions"]


def test_export_async_of_a_managed_solution(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app.admin.install(org(app), {"file": b64(make_solution("Sealed", "1.0.0.0"))})
    with pytest.raises(DataverseError):
        app.solutions.export_solution_async(org(app), {"SolutionName": "Sealed", "Managed": True}, "c")
    monkeypatch.setattr(unconfirmed, "EXPORT_ASYNC_REFUSES_AT_REQUEST", False)
    handles = app.solutions.export_solution_async(org(app), {"SolutionName": "Sealed", "Managed": True}, "c")
    assert finish(app, handles)["statuscode"] == 31


def test_import_job_id_switch_default_is_honour(app: Emulator) -> None:
    """The ImportSolutionAsync reference lists ImportJobId, so a new org honours it by default:
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/importsolutionasync"""
    assert unconfirmed.IMPORT_JOB_ID_ON_ASYNC_DEFAULT == "honour"
    assert org(app)["settings"]["import_job_id_on_async"] == "honour"


def test_non_nullable_booleans_default_or_required(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.admin.register_client({"tenant_id": "t1", "orgs": ["switches"]})
    token = app.entra.access_token(
        tenant_id="t1",
        audience=app.org_url("switches"),
        app_id=client["client_id"],
        object_id=client["object_id"],
        lifetime=600,
        extra={"idtyp": "app"},
    )

    def import_without_booleans(name: str) -> int:
        body = json.dumps({"CustomizationFile": b64(make_solution(name, "1.0.0.0"))}).encode()
        request = Request(
            "POST", "/switches/api/data/v9.2/ImportSolution", "", {"authorization": [f"Bearer {token}"]}, body
        )
        return app.dispatch(request).status

    assert import_without_booleans("Lenient") == 204
    monkeypatch.setattr(unconfirmed, "LENIENT_NON_NULLABLE_BOOLEANS", False)
    assert import_without_booleans("Strict") == 400
