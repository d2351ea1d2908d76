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


def _caller(app: Emulator, roles: list[str] | None = None) -> str:
    """A bearer token of an application user of the org (``roles``: its security roles)."""
    client = app.admin.register_client({"tenant_id": "t1", "orgs": ["switches"], "roles": roles})
    return app.entra.access_token(
        tenant_id="t1",
        audience=app.org_url("switches"),
        app_id=client["client_id"],
        object_id=client["object_id"],
        lifetime=600,
        extra={"idtyp": "app"},
    )


def _call(app: Emulator, token: str, method: str, resource: str, query: str = "", body: dict | None = None) -> int:
    request = Request(
        method,
        f"/switches/api/data/v9.2/{resource}",
        query,
        {"authorization": [f"Bearer {token}"]},
        json.dumps(body).encode() if body is not None else b"",
    )
    return app.dispatch(request).status


def test_unknown_custom_query_options_refused_or_ignored(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """REFUSE_UNKNOWN_CUSTOM_QUERY_OPTIONS: OData lets a service ignore custom options; the emulator refuses
    them by default so no client is answered as if its option applied. ``sql`` is refused either way."""
    token = _caller(app)
    assert _call(app, token, "GET", "solutions", "$select=uniquename&foo=1") == 400
    assert _call(app, token, "GET", "solutions", "$select=uniquename&sql=select+1") == 400
    monkeypatch.setattr(unconfirmed, "REFUSE_UNKNOWN_CUSTOM_QUERY_OPTIONS", False)
    assert _call(app, token, "GET", "solutions", "$select=uniquename&foo=1") == 200
    assert _call(app, token, "GET", "solutions", "$select=uniquename&sql=select+1") == 400
    assert _call(app, token, "GET", "solutions", "$select=uniquename&$skip=1") == 400  # system options always


def test_documented_privileges_all_or_by_component(app: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHECK_EVERY_DOCUMENTED_PRIVILEGE: by default ImportSolution needs the privileges every import needs plus
    those of the package's component types; switched on, every privilege "ImportSolution message privileges"
    lists (https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8))."""
    everything = app.admin.add_role(org(app), {"name": "Probe", "privileges": []})  # ensures built-in roles
    assert everything["privileges"] == {}
    admin_role = next(r for r in org(app)["roles"].values() if r["name"] == "System Administrator")
    granted = [p for p in admin_role["emu_privileges"] if p != "prvReadArticleTemplate"]
    app.admin.add_role(org(app), {"name": "No article templates", "privileges": granted})
    token = _caller(app, ["No article templates"])
    body = {"CustomizationFile": b64(make_solution("Plain", "1.0.0.0"))}
    assert _call(app, token, "POST", "ImportSolution", body=body) == 204
    monkeypatch.setattr(unconfirmed, "CHECK_EVERY_DOCUMENTED_PRIVILEGE", True)
    body = {"CustomizationFile": b64(make_solution("Plainer", "1.0.0.0"))}
    assert _call(app, token, "POST", "ImportSolution", body=body) == 403
