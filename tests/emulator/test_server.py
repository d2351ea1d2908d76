"""The emulator as a program: ready line, health, TLS, graceful stop, state across restarts, demo seed."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import ssl
from pathlib import Path

from tests.emulator.packages import b64, make_solution
from tests.support.emulator import EmulatorServer, start_emulator

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "dataverse_emulator"


def test_ready_line_health_and_free_port(emulator: EmulatorServer) -> None:
    assert emulator.base_url.startswith("https://127.0.0.1:")
    assert not emulator.base_url.endswith(":0")
    health = emulator.admin("GET", "/health")
    assert health["status"] == "ok"
    assert health["base_url"] == emulator.base_url
    assert Path(health["ca_file"]) == emulator.ca_file
    for name in ("ca.pem", "server.pem", "server-key.pem"):
        assert (emulator.state_file.parent / name).exists()


def test_tls_certificate_names_127_0_0_1_and_localhost(emulator: EmulatorServer) -> None:
    port = int(emulator.base_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    for hostname in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    untrusted = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            untrusted.wrap_socket(raw, server_hostname="127.0.0.1")
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("the emulator certificate must not be trusted without its CA")


def test_state_survives_a_restart_and_operations_finish_after_it(tmp_path: Path) -> None:
    with start_emulator(tmp_path) as first:
        org = first.new_org("restart-org")
        org.install(make_solution("Kept", "1.0.0.0", tables=("emt_kept",)))
        handles = org.post(
            "ImportSolutionAsync", json={"CustomizationFile": b64(make_solution("Later", "1.0.0.0"))}
        ).json()
        org.set_faults(server_errors={"count": 1})  # armed, not yet consumed
        port = first.base_url.rsplit(":", 1)[1]
        assert first.stop() == 0  # SIGTERM → graceful exit
    with start_emulator(tmp_path, "--port", port) as second:
        assert second.base_url == first.base_url
        assert second.admin("GET", "/orgs/restart-org")["url"] == org.url
        org.server = second
        org._session = None
        assert org.get("WhoAmI()").status_code == 503  # the fault survived the restart
        assert org.get("WhoAmI()").status_code == 200  # the token did too: same key, same audience
        operation = org.wait_for_operation(handles["AsyncOperationId"])
        assert operation["statuscode"] == 30  # due while the emulator was down, applied after the restart
        rows = org.get("solutions?$select=uniquename&$filter=uniquename eq 'Kept' or uniquename eq 'Later'").json()
        assert sorted(r["uniquename"] for r in rows["value"]) == ["Kept", "Later"]
        assert org.import_count("Later") == 1


def test_sigint_also_stops_gracefully(tmp_path: Path) -> None:
    with start_emulator(tmp_path) as server:
        os.killpg(server.process.pid, signal.SIGINT)
        assert server.process.wait(timeout=10) == 0


def test_demo_seed_is_idempotent_and_writes_credentials(tmp_path: Path) -> None:
    with start_emulator(tmp_path, "--seed", "demo") as server:
        credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert set(credentials["orgs"]) == {
            "contoso-dev",
            "contoso-test",
            "contoso-prod",
            "contoso-build",
            "fabrikam-dev",
        }
        assert credentials["authority"] == f"{server.idp_url}/{credentials['tenant_id']}"
        assert credentials["idp_url"] == server.idp_url != server.base_url
        # Each organisation at the root of its own origin, as https://<org>.crm.dynamics.com is.
        urls = {name: org["url"] for name, org in credentials["orgs"].items()}
        assert all(re.fullmatch(r"https://127\.0\.0\.1:\d+", url) for url in urls.values()), urls
        assert len(set(urls.values()) | {server.base_url, server.idp_url}) == 7
        assert Path(credentials["ca_file"]) == server.ca_file
        usernames = {i["username"].split("@")[0]: i for i in credentials["identities"]}
        assert {"admin", "maker", "approver", "approver2", "auditor", "maker2"} <= set(usernames)
        assert usernames["admin"]["roles"] == ["ALM.Admin"]
        assert usernames["auditor"]["roles"] == ["ALM.Auditor"]
        assert any(not identity["roles"] for identity in credentials["identities"])
        assert credentials["sso_client"]["redirect_uris"]

        dev = credentials["orgs"]["contoso-dev"]
        token = server.token(dev["url"], dev["client_id"], dev["client_secret"], credentials["tenant_id"])
        session = server.session()
        listed = session.get(
            dev["url"] + "/api/data/v9.2/solutions?$select=uniquename,version,ismanaged"
            "&$filter=ismanaged eq false and isvisible eq true",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["value"]
        assert {(r["uniquename"], r["version"]) for r in listed} >= {
            ("IncidentReporting", "1.0.0.4"),
            ("PodcastCopilotSolution", "1.0.0.5"),
            ("flowexcelgroupbyemailnotificationexample", "1.0.0.7"),
            ("UpdateCreatedBy", "1.0.0.1"),
        }
        test = credentials["orgs"]["contoso-test"]
        token = server.token(test["url"], test["client_id"], test["client_secret"], credentials["tenant_id"])
        custom = session.get(
            test["url"]
            + "/api/data/v9.2/solutions?$select=uniquename&$filter=ismanaged eq false and isvisible eq true",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["value"]
        assert [r["uniquename"] for r in custom] == ["Default"]
        secrets_before = {name: org["client_secret"] for name, org in credentials["orgs"].items()}
        solutions_before = len(server.admin("GET", "/state")["orgs"]["contoso-dev"]["solutions"])
    with start_emulator(tmp_path, "--seed", "demo") as server:
        credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert {name: org["client_secret"] for name, org in credentials["orgs"].items()} == secrets_before
        assert {name: org["url"] for name, org in credentials["orgs"].items()} == urls  # ports remembered
        assert credentials["idp_url"] == server.idp_url
        assert len(server.admin("GET", "/state")["orgs"]["contoso-dev"]["solutions"]) == solutions_before


def test_the_emulator_never_imports_the_portal() -> None:
    """The import-linter contract, checked here too so a plain pytest run catches it."""
    forbidden = {"alm_portal", "environments", "solutions", "deployments", "django"}
    for path in PACKAGE_ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in forbidden, f"{path.name} imports {module}"


def test_a_demo_laid_out_under_paths_moves_to_origins_and_gets_its_limited_identity(tmp_path: Path) -> None:
    """A demo state from before organisations had their own origin and application users held roles: the next
    --seed demo gives each demo organisation a port and fabrikam-dev's identity its custom role."""
    with start_emulator(tmp_path, "--seed", "demo") as server:
        main_port = server.base_url.rsplit(":", 1)[1]
    state = json.loads((tmp_path / "state.json").read_text())
    state["seeded"] = ["demo"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    for org_file in (tmp_path / "state.json.orgs").glob("*.json"):
        org = json.loads(org_file.read_text())
        org.pop("port", None)
        org.pop("roles", None)
        for user in org["systemusers"].values():
            user.pop("emu_roles", None)
        org_file.write_text(json.dumps(org))
    with start_emulator(tmp_path, "--port", main_port) as server:
        # Without --seed the state is served as it is: under the main port's path.
        assert server.admin("GET", "/orgs/contoso-dev")["url"] == f"{server.base_url}/contoso-dev"
    with start_emulator(tmp_path, "--port", main_port, "--seed", "demo") as server:
        credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert all(re.fullmatch(r"https://127\.0\.0\.1:\d+", org["url"]) for org in credentials["orgs"].values())
        limited = server.admin(
            "GET", f"/orgs/fabrikam-dev/users/{credentials['orgs']['fabrikam-dev']['client_id']}/roles"
        )
        assert limited["roles"] == ["Fabrikam solution maker"]
        assert "prvReadPublisher" not in limited["privileges"]
        contoso = server.admin(
            "GET", f"/orgs/contoso-prod/users/{credentials['orgs']['contoso-prod']['client_id']}/roles"
        )
        assert contoso["roles"] == ["System Administrator"]
